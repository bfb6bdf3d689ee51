//! The `render` / `evaluate` command line: its arguments (clap) and their translation into
//! [`RenderOptions`].

use crate::{adapter_or_env, kernel_overrides_from_env};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use stylize::model::{Edge, Model, Pool, Preprocess, StyleLoss};
use stylize::render::{self, Init, Optimizer, RenderOptions, WeightsSource};
use stylize::{Error, Result};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PoolArg {
    Avg,
    Max,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StyleLossArg {
    /// Gatys et al.: the mean squared difference of the Gram matrices F F^T / (C H W).
    Gram,
    /// The Wasserstein-2 distance between Gaussians with the features' means and covariances
    /// (as crowsonkb/style-transfer-pytorch), per channel.
    MeanCov,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EdgeArg {
    /// Pad the image by reflection before the first conv (no line along the edges).
    Reflect,
    /// The convs' zero padding only (as PyTorch ports; a saturated line along the edges).
    Zero,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ModelArg {
    /// VGG16: 13 conv layers (conv1_1..conv5_3, 2, 2, 3, 3, 3 per block).
    Vgg16,
    /// VGG19: 16 conv layers (conv1_1..conv5_4, 2, 2, 4, 4, 4 per block).
    Vgg19,
}

impl From<ModelArg> for Model {
    fn from(m: ModelArg) -> Model {
        match m {
            ModelArg::Vgg16 => Model::Vgg16,
            ModelArg::Vgg19 => Model::Vgg19,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PreprocessArg {
    /// Recognise from the weights file (torchvision's convention if unknown).
    Auto,
    /// torchvision: RGB in [0,1], ImageNet mean/std normalisation.
    Torch,
    /// Caffe (original VGG release): BGR in [0,255], mean subtraction.
    Caffe,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OptimizerArg {
    /// Adam (crowsonkb/style-transfer-pytorch's choice); pixels clamped to [0,1] every step.
    Adam,
    /// L-BFGS without line search, as in the paper and jcjohnson/neural-style.
    Lbfgs,
}

#[derive(Args)]
pub(crate) struct RenderArgs {
    /// The photo whose layout is kept (PNG or JPEG; builtin:photo for a built-in sample), or a
    /// folder: then every .png/.jpg in it is rendered, in name order, into the folder -o, keeping
    /// the file names (video frames). With --content-list, leave CONTENT out: every positional
    /// argument is then a style image.
    pub(crate) content: PathBuf,
    /// One or more paintings whose style is transferred (PNG or JPEG; builtin:painting for a
    /// sample). Several styles are mixed: their Gram targets are blended with
    /// --style-blend-weights.
    #[arg(value_name = "STYLE")]
    pub(crate) styles: Vec<PathBuf>,
    /// Output image; .png (records the settings used) or .jpg. Written atomically. A folder
    /// when CONTENT is a folder or --content-list is given (created if missing).
    #[arg(short, long, default_value = "out.png")]
    output: PathBuf,
    /// Longest side of the output in pixels (aspect kept). The style image gets the same longest
    /// side times --style-scale.
    #[arg(long, default_value_t = 512)]
    size: u32,
    /// The style images' longest side is X times the output's (at every scale): below 1 the
    /// brush strokes get smaller, above 1 larger.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    style_scale: f32,
    /// Render coarse to fine at N sizes spaced geometrically from --initial-size to --size; each
    /// scale starts from the previous result upsampled (crowsonkb/style-transfer-pytorch).
    #[arg(long, default_value_t = 1, value_name = "N")]
    scales: u32,
    /// Longest side of the first scale when --scales > 1.
    #[arg(long, default_value_t = 128)]
    initial_size: u32,
    /// Optimisation steps (at each scale with --scales).
    #[arg(long, default_value_t = 500)]
    steps: u32,
    /// Steps at each scale, one value per scale (comma-separated); overrides --steps.
    #[arg(long, value_delimiter = ',')]
    scale_steps: Option<Vec<u32>>,
    /// The optimiser.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerArg,
    /// L-BFGS: the number of curvature pairs remembered.
    #[arg(long, default_value_t = 100, value_name = "N")]
    lbfgs_history: usize,
    /// L-BFGS: keep every iterate in [0,1] (projected L-BFGS: each step clamped, the curvature
    /// pair built from the step taken), so the optimiser minimises the image that is written;
    /// off: torch.optim.LBFGS's unconstrained update, whose iterates leave [0,1] and are clamped
    /// only on saving.
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    lbfgs_clamp: OnOff,
    /// Learning rate: Adam's in [0,1] pixel units (pixels are clamped to [0,1] after each step),
    /// or L-BFGS's step length [default: 0.02 for Adam, 1 for L-BFGS].
    #[arg(long)]
    lr: Option<f32>,
    /// Write the exponential moving average of the iterates (decay D, bias-corrected, updated on
    /// the GPU every step, on the host in tiled stages; crowsonkb uses 0.99) instead of the last
    /// iterate: smoother results. 0: off.
    #[arg(long, default_value_t = 0.0, value_name = "D")]
    avg_decay: f64,
    /// Weight of the content loss [default: 1 for torchvision weights, 5 for Caffe weights; 5 with
    /// --normalize-gradients].
    #[arg(long)]
    content_weight: Option<f32>,
    /// Weight of the style loss [default: 1e6 for torchvision weights, 100 for Caffe weights; 100
    /// with --normalize-gradients; with --style-loss mean-cov 0.2 torchvision, 1 Caffe].
    #[arg(long)]
    style_weight: Option<f32>,
    /// Weight of the total-variation (smoothness) loss [default: 100 torchvision, 1e5 Caffe].
    #[arg(long)]
    tv_weight: Option<f32>,
    /// jcjohnson/neural-style's -normalize_gradients: divide each content and style layer's
    /// gradient by its L1 norm before weighting and summing them, so every layer pulls with its
    /// weight whatever its scale (TV is not normalised; reported losses are unchanged). The
    /// weights then mean something else: start near --content-weight 5 --style-weight 100 and
    /// tune from there. Untiled renders only.
    #[arg(long)]
    normalize_gradients: bool,
    /// What the style loss compares at each style layer: `gram` (Gatys et al.) or `mean-cov`,
    /// the squared Wasserstein-2 distance between Gaussians fitted to the features (mean and
    /// covariance; crowsonkb/style-transfer-pytorch's loss), divided by the channels. mean-cov
    /// has its own default --style-weight (0.2 torchvision, 1 Caffe; 100 with --normalize-gradients);
    /// untiled renders only (a stage or style image that would be tiled is refused).
    #[arg(long, value_enum, default_value = "gram", value_name = "gram|mean-cov")]
    style_loss: StyleLossArg,
    /// Layers whose activations the content loss compares (comma-separated; conv1_1..conv5_4,
    /// relu1_1..relu5_4, pool1..pool5 for VGG19; up to conv5_3/relu5_3 for VGG16, which has
    /// 3 layers in blocks 3-5).
    #[arg(long, value_delimiter = ',', default_value = "relu4_2")]
    content_layers: Vec<String>,
    /// Layers whose Gram matrices the style loss compares (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")]
    style_layers: Vec<String>,
    /// One weight per style layer (comma-separated) [default: 1 each].
    #[arg(long, value_delimiter = ',')]
    style_layer_weights: Option<Vec<f32>>,
    /// One weight per style image (comma-separated), normalised to sum 1; the style targets are
    /// the blend sum_k w_k A_k of each style's Gram matrices, as jcjohnson/neural-style
    /// [default: equal weights]. With --style-mask nothing is blended: each weight multiplies
    /// its style's regional loss as given (not normalised; default 1 each).
    #[arg(long, value_delimiter = ',')]
    style_blend_weights: Option<Vec<f32>>,
    /// Regional styles: one mask image per style image, in the same order (repeat the option or
    /// separate with commas). Each style's loss applies only where its mask is white: the mask's
    /// luma in [0,1], resized by area averaging to each scale's working size and average-pooled
    /// to every style layer, weights the generated image's features before their Gram, which is
    /// normalised by the mask's area (sum of squared weights); the target is the style image's
    /// whole Gram. A mask black at some style layer's resolution is refused. Not with tiling (a
    /// stage that would be tiled is refused) nor --style-loss mean-cov; works with
    /// --normalize-gradients (each style's term is normalised on its own).
    #[arg(long = "style-mask", value_delimiter = ',', value_name = "MASK")]
    style_masks: Vec<PathBuf>,
    /// Weights the content loss per position by a mask image (luma in [0,1], resized as
    /// --style-mask's, average-pooled to each content layer): the loss is the mask-weighted mean
    /// of the squared differences over the white region, so black areas are free of the content.
    /// Not with tiling.
    #[arg(long, value_name = "MASK")]
    content_mask: Option<PathBuf>,
    /// Pooling: avg (Gatys et al.) or max (VGG's own).
    #[arg(long, value_enum, default_value = "avg")]
    pool: PoolArg,
    /// What the network sees beyond the image's edges. Every conv pads with zeros, so with
    /// `zero` the losses see a frame of the mean colour around the image and the optimiser
    /// paints a saturated line along the edges to compensate. `reflect` pads the image by
    /// reflection (numpy's 'reflect') by --edge-margin pixels before the first conv, takes the
    /// losses over the image's positions only and folds the margin's gradient back onto the
    /// pixels it mirrors: no line. Costs the graph at (h + 2m) x (w + 2m) (about 1.3x at 256 px).
    #[arg(long, value_enum, default_value = "reflect")]
    edge: EdgeArg,
    /// The reflected margin in pixels with --edge reflect, rounded up to a multiple of 2^pools
    /// (16 for the default layers).
    #[arg(long, default_value_t = render::DEFAULT_EDGE_MARGIN, value_name = "PIXELS")]
    edge_margin: usize,
    /// Starting image: content, noise (seeded by --seed), or a path to an image.
    #[arg(long, default_value = "content")]
    init: String,
    /// Seed of --init noise: a run is bit-for-bit repeatable on the same adapter.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep the content's colours: the output's luminance with the content's chrominance (YIQ),
    /// applied to every image written (output, snapshots, preview); the optimisation is unchanged.
    #[arg(long)]
    original_colors: bool,
    /// Before optimising, recolour each style image so that its RGB mean and covariance are the
    /// content's (mean-covariance matching), so the style brings its textures but not its palette.
    #[arg(long)]
    color_match: bool,
    /// Several content images (comma-separated or repeated), rendered in this order into the
    /// folder -o, keeping their file names.
    #[arg(long, value_delimiter = ',', value_name = "IMAGES")]
    content_list: Vec<PathBuf>,
    /// Frames after the first start from the previous frame's result (flicker-free video
    /// frames) instead of --init.
    #[arg(long)]
    temporal_init: bool,
    /// Frames after the first: weight W of the short-term temporal loss (Ruder et al. 2016), W
    /// times the mean squared difference to the previous output warped into this frame by optical
    /// flow (computed on the GPU between the content frames), on the pixels where the forward and
    /// backward flows agree and off motion boundaries. Each frame starts from that warped output
    /// (implies --temporal-init's chaining). 0: off. Not with tiled rendering. W scales with the
    /// content and style weights: ~1e3 held a test clip with torchvision weights, ~1e7 with
    /// Caffe-convention weights (README).
    #[arg(long, default_value_t = 0.0, value_name = "W")]
    temporal_weight: f32,
    /// --temporal-weight's optical flow (Horn-Schunck, coarse to fine): smoothness alpha for luma
    /// in [0,1]; larger gives smoother flow, smaller follows fine detail and noise.
    #[arg(long, default_value_t = 0.2, value_name = "A")]
    flow_smoothness: f64,
    /// --temporal-weight's optical flow: linearisations (warps) at each pyramid level.
    #[arg(long, default_value_t = 3, value_name = "N")]
    flow_warps: u32,
    /// --temporal-weight's optical flow: Jacobi iterations per warp.
    #[arg(long, default_value_t = 50, value_name = "N")]
    flow_iterations: u32,
    /// Batch renders: render only shard I of N (0-based), a contiguous, balanced range of the
    /// frames, so N machines can share a folder. `slurm`: from SLURM_ARRAY_TASK_ID (minus
    /// SLURM_ARRAY_TASK_MIN) and SLURM_ARRAY_TASK_COUNT; `k8s`: from a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX and $STYLIZE_SHARD_COUNT (set it to the Job's completions); `auto`:
    /// Slurm's if set, else Kubernetes'. With --temporal-init a shard starts from the previous
    /// shard's last frame if that output is complete, else from --init.
    #[arg(long, value_name = "I/N|auto|k8s|slurm")]
    shard: Option<String>,
    /// Batch renders: re-render every output. Without it an output an earlier run completed (its
    /// PNG, or a JPEG's NAME.jpg.stylize.json sidecar, records the same settings and the last
    /// step) is skipped, so an interrupted batch reruns only what is missing or incomplete.
    #[arg(long)]
    overwrite: bool,
    /// Print the losses every N steps (0: never; reading them back costs a little).
    #[arg(long, default_value_t = 50)]
    print_every: u32,
    /// Save a numbered snapshot (OUT_00100.png, ...) every N steps (0: never).
    #[arg(long, default_value_t = 0)]
    save_every: u32,
    /// Write the current image to PATH every --preview-every steps, atomically (an image viewer
    /// can watch it), and the final image at the end of each frame.
    #[arg(long, value_name = "PATH")]
    preview: Option<PathBuf>,
    /// Steps between --preview writes.
    #[arg(long, default_value_t = 10, value_name = "N")]
    preview_every: u32,
    /// Bits per channel of the PNG written (and of snapshots and previews): 8, or 16 for print
    /// work (no banding in smooth gradients). JPEG holds 8 only. The content image's ICC colour
    /// profile, if it has one, is carried into the output either way.
    #[arg(long, default_value_t = 8, value_name = "8|16")]
    bit_depth: u8,
    /// Write one JSON line per printed step (and the initial image, step 0) to PATH:
    /// {"frame","scale","width","height","step","content","style","tv","total","elapsed_s"}, and
    /// "temporal" on frames with a --temporal-weight term (it is part of "total").
    /// Step k holds the losses of the image after k updates of its scale; each scale's last line
    /// those of its result as written (clamped to [0,1]; the average with --avg-decay).
    /// `stylize plot PATH -o curve.png` draws it.
    #[arg(long, value_name = "PATH")]
    log_json: Option<PathBuf>,
    /// Write a checkpoint to OUT.ckpt (the output path with .ckpt appended) every N steps, and
    /// when the render is stopped (Ctrl-C, SIGTERM); 0: only when stopped. It holds the image,
    /// the optimiser's whole state (Adam moments, L-BFGS history), the --avg-decay average, the
    /// position (frame, scale, step) and a digest of the settings and inputs; --resume continues
    /// from it. Written atomically; removed once the frame is finished. A NaN stop or a lost GPU
    /// leaves the last periodic checkpoint in place.
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u32>,
    /// Continue the render from the checkpoint CKPT (see --checkpoint-every), with the same
    /// command line otherwise: the result is bit-identical to an uninterrupted render on the same
    /// adapter (the interrupted render's kernel choices are reused). Refused, naming what differs,
    /// when a setting, an input file's bytes or the adapter changed, or when the checkpoint's frame
    /// is not one this render (--shard) renders.
    #[arg(long, value_name = "CKPT")]
    resume: Option<PathBuf>,
    /// VGG16 or VGG19 weights: a .pth (torchvision) or .npz file, or random:SEED for random
    /// weights. Default: torchvision's vgg19-dcbb9e9d.pth (vgg16-397923af.pth with --model
    /// vgg16) from the cache, downloaded on first use.
    #[arg(long)]
    weights: Option<String>,
    /// The network [default: the one the weights file holds, recognised from its tensor names
    /// and shapes; vgg19 for random or default weights]. Given, it must agree with the file.
    #[arg(long, value_enum)]
    model: Option<ModelArg>,
    /// Input convention of the weights.
    #[arg(long, value_enum, default_value = "auto")]
    preprocess: PreprocessArg,
    /// GPU to use: auto, a backend (vulkan, metal, dx12, gl), a name substring, or
    /// BACKEND:NAME (see `stylize devices`). Also read from $STYLIZE_ADAPTER.
    #[arg(long, default_value = "")]
    adapter: String,
    /// Exact tiled rendering, for outputs larger than the GPU holds: auto (tile only when the
    /// untiled render would not fit the adapter's buffer limits or --max-gpu-memory), off, or
    /// the tile size in pixels. Tiles overlap by the deepest layer's receptive radius, so the
    /// result equals an untiled render's; each step then costs two passes over the tiles. Adam,
    /// L-BFGS and --avg-decay work tiled, their state in host memory (L-BFGS: 2 x
    /// --lbfgs-history x 12 bytes per pixel). Not with --normalize-gradients or --style-loss
    /// mean-cov (refused when a stage would be tiled).
    #[arg(long, default_value = "auto")]
    tile: String,
    /// GPU memory budget in MiB that --tile auto keeps the render within [default: only the
    /// adapter's limits].
    #[arg(long)]
    max_gpu_memory: Option<u64>,
    /// How conv kernels are chosen: off (fixed rules), cached (a table from earlier runs or
    /// `stylize tune`, fixed rules elsewhere), full (also measure shapes the table lacks, within
    /// --tune-budget, and save them), auto (full on GPUs, cached on CPU adapters). Tables live
    /// in the cache folder, one per adapter and driver.
    #[arg(long, default_value = "auto", value_parser = ["auto", "off", "cached", "full"])]
    tune: String,
    /// Seconds a render may spend measuring kernels (--tune full).
    #[arg(long, default_value_t = 3.0)]
    tune_budget: f64,
    /// No progress output.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

pub(crate) fn options(a: RenderArgs) -> Result<RenderOptions> {
    let adapter = adapter_or_env(a.adapter);
    // With --content-list every positional argument is a style image.
    let (content, styles) = if a.content_list.is_empty() {
        (a.content, a.styles)
    } else {
        (PathBuf::new(), std::iter::once(a.content).chain(a.styles).collect())
    };
    if styles.is_empty() {
        return Err(Error::InvalidArgument(
            "give at least one STYLE image after CONTENT: stylize render CONTENT STYLE [STYLE...] -o OUT".into(),
        ));
    }
    Ok(RenderOptions {
        content,
        content_list: a.content_list,
        styles,
        style_blend_weights: a.style_blend_weights,
        style_masks: a.style_masks,
        content_mask: a.content_mask,
        style_scale: a.style_scale,
        output: a.output,
        size: a.size,
        scales: a.scales,
        initial_size: a.initial_size,
        scale_steps: a.scale_steps,
        steps: a.steps,
        optimizer: match a.optimizer {
            OptimizerArg::Adam => Optimizer::Adam,
            OptimizerArg::Lbfgs => Optimizer::Lbfgs,
        },
        lbfgs_history: a.lbfgs_history,
        lbfgs_clamp: a.lbfgs_clamp == OnOff::On,
        lr: a.lr,
        content_weight: a.content_weight,
        style_weight: a.style_weight,
        tv_weight: a.tv_weight,
        normalize_gradients: a.normalize_gradients,
        style_loss: match a.style_loss {
            StyleLossArg::Gram => StyleLoss::Gram,
            StyleLossArg::MeanCov => StyleLoss::MeanCov,
        },
        content_layers: a.content_layers,
        style_layers: a.style_layers,
        style_layer_weights: a.style_layer_weights,
        pool: match a.pool {
            PoolArg::Avg => Pool::Avg,
            PoolArg::Max => Pool::Max,
        },
        edge: match a.edge {
            EdgeArg::Reflect => Edge::Reflect(a.edge_margin),
            EdgeArg::Zero => Edge::Zero,
        },
        init: Init::parse(&a.init),
        seed: a.seed,
        temporal_init: a.temporal_init,
        temporal_weight: a.temporal_weight,
        flow: stylize::gpu::flow::FlowSettings {
            alpha: a.flow_smoothness,
            warps: a.flow_warps,
            iterations: a.flow_iterations,
            ..Default::default()
        },
        shard: match &a.shard {
            Some(spec) => Some(render::Shard::resolve(spec, &|k| std::env::var(k).ok())?.0),
            None => None,
        },
        overwrite: a.overwrite,
        original_colors: a.original_colors,
        color_match: a.color_match,
        avg_decay: a.avg_decay,
        print_every: a.print_every,
        save_every: a.save_every,
        preview: a.preview,
        preview_every: a.preview_every,
        log_json: a.log_json,
        bit_depth: a.bit_depth,
        weights: match a.weights {
            Some(w) => WeightsSource::parse(&w)?,
            None => WeightsSource::Default,
        },
        model: a.model.map(Model::from),
        preprocess: match a.preprocess {
            PreprocessArg::Auto => None,
            PreprocessArg::Torch => Some(Preprocess::Torch),
            PreprocessArg::Caffe => Some(Preprocess::Caffe),
        },
        adapter,
        tile: render::TileMode::parse(&a.tile)?,
        max_gpu_memory: a.max_gpu_memory,
        quiet: a.quiet,
        tune: stylize::gpu::tune::TuneMode::parse(&a.tune),
        tune_budget_s: a.tune_budget,
        tune_dir: None,
        kernels: kernel_overrides_from_env(),
        // Fault injection for the tests of the non-finite guard.
        fault_nan_at: std::env::var("STYLIZE_FAULT_NAN_AT").ok().and_then(|v| v.parse().ok()),
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
    })
}
