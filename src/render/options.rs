//! Every option of a render, its defaults and the cheap checks made before anything slow.

use crate::error::{Error, Result};
use crate::gpu::tune::TuneMode;
use crate::gpu::KernelOverrides;
use crate::image_io;
use crate::model::{Edge, Model, Pool, Preprocess, StyleLoss, Tap};
use std::path::{Path, PathBuf};

/// Steps between checks of the losses for NaN/Inf when printing is rarer.
pub const NAN_CHECK_EVERY: u32 = 25;

/// Smallest input image side accepted.
pub const MIN_SIDE: u32 = 8;

/// Adam's default learning rate (\[0,1\]-pixel units; crowsonkb/style-transfer-pytorch's).
pub const ADAM_LR: f32 = 0.02;
/// L-BFGS's default step length (jcjohnson/neural-style's and torch.optim.LBFGS's).
pub const LBFGS_LR: f32 = 1.0;

/// How the image starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// Start from the content image.
    Content,
    /// Start from seeded uniform noise.
    Noise,
    /// Start from this image file (resized).
    Image(PathBuf),
}

impl Init {
    /// `content`, `noise` (or `random`), or a file path.
    pub fn parse(s: &str) -> Init {
        match s {
            "content" => Init::Content,
            "noise" | "random" => Init::Noise,
            p => Init::Image(PathBuf::from(p)),
        }
    }
}

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// Adam (crowsonkb/style-transfer-pytorch's choice).
    Adam,
    /// L-BFGS without line search, as jcjohnson/neural-style (runner::Graph::set_lbfgs).
    Lbfgs,
}

/// Where the network weights come from.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsSource {
    /// torchvision's VGG19, from the cache, downloaded on first use.
    Default,
    /// A .pth or .npz file.
    File(PathBuf),
    /// Seeded random weights (for tests and benchmarks; the output is not a real stylisation).
    Random(u64),
}

impl WeightsSource {
    /// `random`, `random:SEED`, or a file path.
    pub fn parse(s: &str) -> Result<WeightsSource> {
        if s == "random" {
            return Ok(WeightsSource::Random(0));
        }
        if let Some(seed) = s.strip_prefix("random:") {
            return seed.parse().map(WeightsSource::Random).map_err(|_| {
                Error::InvalidArgument(format!("--weights {s}: expected random:SEED with an integer seed"))
            });
        }
        Ok(WeightsSource::File(PathBuf::from(s)))
    }
}

/// Every option of a render; `main.rs` fills it from the command line.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// A content image, or a folder whose .png/.jpg images are rendered in name order (then
    /// `output` is a folder). Ignored when `content_list` is not empty.
    pub content: PathBuf,
    /// Several content images rendered in this order into the folder `output`.
    pub content_list: Vec<PathBuf>,
    /// One or more style images.
    pub styles: Vec<PathBuf>,
    /// One weight per style image (normalised to sum 1); None: equal weights. With
    /// `style_masks`, each style's regional terms are weighted by its value as given.
    pub style_blend_weights: Option<Vec<f32>>,
    /// `--style-mask`: one mask image per style (same order), or none. Each style's loss then
    /// applies where its mask is white ([`crate::regional`]); untiled stages, Gram loss only.
    pub style_masks: Vec<PathBuf>,
    /// `--content-mask`: weights the content loss per position ([`crate::regional::ContentMask`]);
    /// untiled stages only.
    pub content_mask: Option<PathBuf>,
    /// The style image's longest side is this times the output's (at every scale).
    pub style_scale: f32,
    /// The output image (or folder, for several content images).
    pub output: PathBuf,
    /// Longest side of the output (the last scale).
    pub size: u32,
    /// Number of scales, spaced geometrically from `initial_size` to `size` (1: just `size`).
    pub scales: u32,
    /// Longest side of the first scale when `scales` > 1.
    pub initial_size: u32,
    /// Steps at each scale (one value per scale); None: `steps` at every scale.
    pub scale_steps: Option<Vec<u32>>,
    /// Steps at every scale unless `scale_steps` is set.
    pub steps: u32,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// L-BFGS curvature pairs kept.
    pub lbfgs_history: usize,
    /// Projected L-BFGS: iterates kept in \[0,1\] (see [`crate::gpu::lbfgs::LbfgsConfig::bounds`]).
    pub lbfgs_clamp: bool,
    /// None: [`ADAM_LR`] for Adam, [`LBFGS_LR`] for L-BFGS.
    pub lr: Option<f32>,
    /// None: the default of the weights' convention (see [`default_weights_for`]), or
    /// [`NORMALIZED_WEIGHTS`] with `normalize_gradients`.
    pub content_weight: Option<f32>,
    /// None: as `content_weight`.
    pub style_weight: Option<f32>,
    /// None: the default of the weights' convention.
    pub tv_weight: Option<f32>,
    /// jcjohnson/neural-style's `-normalize_gradients`: each content and style term's gradient
    /// divided by its L1 norm before it is weighted and summed (TV untouched; the losses
    /// reported are unchanged). Untiled stages only.
    pub normalize_gradients: bool,
    /// What the style loss compares (Gram matrices, or means and covariances). With
    /// [`StyleLoss::MeanCov`] and no `style_weight`, [`meancov_style_weight`]; untiled stages only.
    pub style_loss: StyleLoss,
    /// Taps of the content loss, e.g. `relu4_2`.
    pub content_layers: Vec<String>,
    /// Taps of the style loss.
    pub style_layers: Vec<String>,
    /// One weight per style layer (None: 1 each).
    pub style_layer_weights: Option<Vec<f32>>,
    /// Pooling kind of the network.
    pub pool: Pool,
    /// What the network sees beyond the image's edges (`--edge`, `--edge-margin`): a margin
    /// mirroring the image (default, 16 px) or the convs' zero padding alone.
    pub edge: Edge,
    /// The initial image.
    pub init: Init,
    /// Seed of the noise init.
    pub seed: u64,
    /// Each frame after the first starts from the previous frame's result.
    pub temporal_init: bool,
    /// Frames after the first: weight of the short-term temporal loss (Ruder et al. 2016) toward
    /// the previous output warped by optical flow, on the pixels the flow is trusted (0: off).
    /// Implies the chaining of `temporal_init`; the frame starts from the warped previous output.
    pub temporal_weight: f32,
    /// The optical flow solver of `temporal_weight`.
    pub flow: crate::gpu::flow::FlowSettings,
    /// Batch renders only: render this shard's contiguous range of the frames (None: all).
    pub shard: Option<super::Shard>,
    /// Batch renders only: re-render outputs an earlier run completed with the same settings
    /// (false: skip them; see [`super::check_existing`]).
    pub overwrite: bool,
    /// Keep the content's colours: the output's luminance with the content's chrominance (YIQ).
    pub original_colors: bool,
    /// Match the style images' colour mean and covariance to the content's before optimising.
    pub color_match: bool,
    /// Decay of the exponential moving average of the iterates that is written out (0: off).
    pub avg_decay: f64,
    /// Print (and log) the losses every this many steps (0: only at the end of a stage).
    pub print_every: u32,
    /// Write a numbered snapshot every this many steps (0: never).
    pub save_every: u32,
    /// Write the current image here (atomically) every `preview_every` steps.
    pub preview: Option<PathBuf>,
    /// Steps between previews.
    pub preview_every: u32,
    /// Append one JSON line of losses per printed step here (the file is truncated first).
    pub log_json: Option<PathBuf>,
    /// Where the network weights come from.
    pub weights: WeightsSource,
    /// The network, VGG16 or VGG19. None: the weights file's (recognised from its tensor names
    /// and shapes; a truncated conv1_1..conv3_3 file is read as VGG19 unless only VGG16 serves
    /// the taps), VGG19 for random or default weights. Given, it must agree with the file, and
    /// random or default weights are made or downloaded for it.
    pub model: Option<Model>,
    /// None: recognised from the weights file (torchvision if unknown).
    pub preprocess: Option<Preprocess>,
    /// Adapter choice, `BACKEND:NAME` (empty: the best one).
    pub adapter: String,
    /// Exact tiled rendering for outputs that do not fit the GPU (see src/tiled.rs).
    pub tile: TileMode,
    /// GPU memory budget in MiB for `--tile auto` (None: only the adapter's buffer limits).
    pub max_gpu_memory: Option<u64>,
    /// Bits per channel of PNG outputs, snapshots and previews: 8 or 16 (JPEG: 8 only).
    pub bit_depth: u8,
    /// No progress output (the weights download's progress bar; the command line tool's
    /// observer reads it too).
    pub quiet: bool,
    /// How conv variants are chosen: None (auto) measures new shapes on GPUs ([`TuneMode::Full`])
    /// and uses only an existing table on CPU adapters ([`TuneMode::Cached`]).
    pub tune: Option<TuneMode>,
    /// Seconds a render may spend measuring conv variants.
    pub tune_budget_s: f64,
    /// Folder of the tuning tables (None: `tune/` in [`crate::weights::cache_dir`]).
    pub tune_dir: Option<PathBuf>,
    /// Kernel choices forced instead of the adapter's defaults (the command line tool reads them
    /// from `$STYLIZE_CONV`, `$STYLIZE_GRAM`, `$STYLIZE_WINO_TUNE`, `$STYLIZE_WINO4_TUNE`,
    /// `$STYLIZE_SHADER_CHECKS`).
    pub kernels: KernelOverrides,
    /// For tests of the non-finite guard: poison the image with NaN after this frame step
    /// (the command line tool reads it from `$STYLIZE_FAULT_NAN_AT`).
    pub fault_nan_at: Option<u32>,
    /// Checkpoints (see [`checkpoint_path`](super::checkpoint_path)): None, none; Some(n), one
    /// every n frame steps (n > 0; a stage's last step excepted) and one when the render is
    /// stopped (Some(0): only then). A NaN/Inf stop or a lost GPU leaves the last one in place.
    pub checkpoint_every: Option<u32>,
    /// Continue the render from this checkpoint; refused when its digest (settings, inputs,
    /// adapter) differs from this render's.
    pub resume: Option<PathBuf>,
}

/// `--edge-margin`'s default: with the shared VGG16 weights at 256 px the edge rows then differ
/// from the next rows no more than interior rows differ from each other (README "Borders").
pub const DEFAULT_EDGE_MARGIN: usize = 16;

/// `--tile auto|off|N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileMode {
    /// Tile only when the untiled graph would not fit the adapter's limits or the budget.
    Auto,
    /// Never tile (a too-large size is refused with the largest size that fits).
    Off,
    /// Always tile, with interiors of this many pixels (rounded up to the layers' alignment).
    Size(usize),
}

impl TileMode {
    /// `auto`, `off` (or `none`), or a tile size in pixels.
    pub fn parse(s: &str) -> Result<TileMode> {
        match s {
            "auto" => Ok(TileMode::Auto),
            "off" | "none" => Ok(TileMode::Off),
            n => match n.parse::<usize>() {
                Ok(v) if v > 0 => Ok(TileMode::Size(v)),
                _ => Err(Error::InvalidArgument(format!(
                    "--tile {s}: expected auto, off or a tile size in pixels (> 0)"
                ))),
            },
        }
    }
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            content: PathBuf::new(),
            content_list: vec![],
            styles: vec![],
            style_blend_weights: None,
            style_masks: vec![],
            content_mask: None,
            style_scale: 1.0,
            output: PathBuf::from("out.png"),
            size: 512,
            scales: 1,
            initial_size: 128,
            scale_steps: None,
            steps: 500,
            optimizer: Optimizer::Adam,
            lbfgs_history: 100,
            lbfgs_clamp: true,
            lr: None,
            content_weight: None,
            style_weight: None,
            tv_weight: None,
            normalize_gradients: false,
            style_loss: StyleLoss::Gram,
            content_layers: vec!["relu4_2".into()],
            style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
            style_layer_weights: None,
            pool: Pool::Avg,
            edge: Edge::Reflect(DEFAULT_EDGE_MARGIN),
            init: Init::Content,
            seed: 0,
            temporal_init: false,
            temporal_weight: 0.0,
            flow: Default::default(),
            shard: None,
            overwrite: false,
            original_colors: false,
            color_match: false,
            avg_decay: 0.0,
            print_every: 50,
            save_every: 0,
            preview: None,
            preview_every: 10,
            log_json: None,
            weights: WeightsSource::Default,
            model: None,
            preprocess: None,
            adapter: String::new(),
            tile: TileMode::Auto,
            max_gpu_memory: None,
            bit_depth: 8,
            quiet: false,
            tune: None,
            tune_budget_s: 3.0,
            tune_dir: None,
            kernels: KernelOverrides::default(),
            fault_nan_at: None,
            checkpoint_every: None,
            resume: None,
        }
    }
}

impl RenderOptions {
    /// The learning rate in use (explicit, or the optimiser's default).
    pub fn learning_rate(&self) -> f32 {
        self.lr.unwrap_or(match self.optimizer {
            Optimizer::Adam => ADAM_LR,
            Optimizer::Lbfgs => LBFGS_LR,
        })
    }
}

/// (content, style, tv) weights the peers use for each input convention, in our normalisation
/// (content: mean squared error; style: mean squared error of Grams normalised by C*H*W; TV:
/// mean squared neighbour difference of \[0,1\] pixels), which is the PyTorch tutorial's and
/// jcjohnson/neural-style's normalisation for content and style.
/// - torchvision weights: content 1, style 1e6 (PyTorch's neural style tutorial).
/// - Caffe weights: content 5 and style 100 (jcjohnson/neural-style's), TV 1e5; chosen by eye on
///   real photos and paintings with the full-depth ImageNet VGG16 at the default (paper) layers,
///   256 px (README "Losses and defaults"): 100 gives more coherent strokes than 20 and keeps
///   the layout. (With shallow layers only, e.g. style relu1_1..relu3_1, 20 suits better.)
/// - TV: see README ("Defaults").
pub fn default_weights_for(p: Preprocess) -> (f32, f32, f32) {
    match p {
        Preprocess::Torch => (1.0, 1e6, 1e2),
        Preprocess::Caffe => (5.0, 100.0, 1e5),
    }
}

/// (content, style) weights used with `--normalize-gradients` when not given, for either
/// convention: jcjohnson/neural-style's defaults, which its users pair with `-normalize_gradients`.
/// Each normalised term's gradient has L1 norm equal to its weight, so these say how hard each
/// layer pulls, whatever the weights' scale (README "Normalised gradients").
pub const NORMALIZED_WEIGHTS: (f32, f32) = (5.0, 100.0);

/// The style weight used with `--style-loss mean-cov` when none is given (without
/// `--normalize-gradients`, which brings its own). Caffe: 1, chosen by eye with the full-depth
/// ImageNet VGG16 on real photos and paintings at 128 and 256 px (README "Mean-covariance style
/// loss"). Both the content MSE and the mean-covariance loss scale as the features squared, so
/// their balance does not depend on the convention's feature scale: torchvision's is Caffe's
/// times the ratio of the content weights (1 / 5).
pub fn meancov_style_weight(p: Preprocess) -> f32 {
    let (content, _, _) = default_weights_for(p);
    let (caffe_content, _, _) = default_weights_for(Preprocess::Caffe);
    MEANCOV_CAFFE_STYLE_WEIGHT * content / caffe_content
}

/// `--style-loss mean-cov`'s default style weight with Caffe-convention weights.
const MEANCOV_CAFFE_STYLE_WEIGHT: f32 = 1.0;

pub(super) fn check_finite(name: &str, v: f32, positive: bool) -> Result<()> {
    if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
        let want = if positive { "> 0" } else { ">= 0" };
        return Err(Error::InvalidArgument(format!("{name} must be a finite number {want}, got {v}")));
    }
    Ok(())
}

pub(super) fn parse_taps(model: Model, names: &[String]) -> Result<Vec<Tap>> {
    names.iter().filter(|n| !n.trim().is_empty()).map(|n| Tap::parse(model, n)).collect::<Result<Vec<_>>>()
}

/// The checks of the settings alone (no files), for `styles` style images.
pub(super) fn validate_settings(o: &RenderOptions, styles: usize) -> Result<()> {
    if o.size == 0 {
        return Err(Error::InvalidArgument("--size must be at least 1".into()));
    }
    if styles == 0 {
        return Err(Error::InvalidArgument("give at least one STYLE image".into()));
    }
    check_finite("--lr", o.learning_rate(), true)?;
    for (n, v) in
        [("--content-weight", o.content_weight), ("--style-weight", o.style_weight), ("--tv-weight", o.tv_weight)]
    {
        if let Some(v) = v {
            check_finite(n, v, false)?;
        }
    }
    check_finite("--style-scale", o.style_scale, true)?;
    if !o.tune_budget_s.is_finite() || o.tune_budget_s < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "--tune-budget must be a number of seconds >= 0, got {}",
            o.tune_budget_s
        )));
    }
    if let Some(b) = &o.style_blend_weights {
        if b.len() != styles {
            return Err(Error::InvalidArgument(format!(
                "--style-blend-weights has {} values for {} style images",
                b.len(),
                styles
            )));
        }
        for &v in b {
            check_finite("--style-blend-weights", v, false)?;
        }
        if b.iter().sum::<f32>() <= 0.0 {
            return Err(Error::InvalidArgument("--style-blend-weights must not all be 0".into()));
        }
    }
    if !o.style_masks.is_empty() && o.style_masks.len() != styles {
        return Err(Error::InvalidArgument(format!(
            "--style-mask: {} masks for {} style images (give one mask per style, in the same order)",
            o.style_masks.len(),
            styles
        )));
    }
    if !o.style_masks.is_empty() && o.style_loss != StyleLoss::Gram {
        return Err(Error::InvalidArgument(format!(
            "--style-mask works with --style-loss gram only, not {}",
            o.style_loss.name()
        )));
    }
    if o.scales == 0 {
        return Err(Error::InvalidArgument("--scales must be at least 1".into()));
    }
    if o.scales > 1 && (o.initial_size == 0 || o.initial_size >= o.size) {
        return Err(Error::InvalidArgument(format!(
            "--initial-size ({}) must be at least 1 and smaller than --size ({}) with --scales {}",
            o.initial_size, o.size, o.scales
        )));
    }
    if let Some(s) = &o.scale_steps {
        if s.len() != o.scales as usize {
            return Err(Error::InvalidArgument(format!(
                "--scale-steps has {} values for {} scales",
                s.len(),
                o.scales
            )));
        }
    }
    if !(0.0..1.0).contains(&o.avg_decay) || !o.avg_decay.is_finite() {
        return Err(Error::InvalidArgument(format!("--avg-decay must be in [0, 1), got {}", o.avg_decay)));
    }
    if !(o.temporal_weight >= 0.0 && o.temporal_weight.is_finite()) {
        return Err(Error::InvalidArgument(format!("--temporal-weight must be >= 0, got {}", o.temporal_weight)));
    }
    if o.temporal_weight > 0.0 {
        o.flow.validate()?;
    }
    if o.optimizer == Optimizer::Lbfgs && o.lbfgs_history == 0 {
        return Err(Error::InvalidArgument("--lbfgs-history must be at least 1".into()));
    }
    Ok(())
}

/// The cheap checks, before anything slow (images, weights, GPU) happens.
pub(super) fn validate(o: &RenderOptions) -> Result<()> {
    validate_settings(o, o.styles.len())?;
    if !matches!(o.bit_depth, 8 | 16) {
        return Err(Error::InvalidArgument(format!("--bit-depth {}: 8 or 16", o.bit_depth)));
    }
    // A folder output (batch) names its files after the frames, checked when they are planned.
    if !o.output.as_os_str().is_empty() && !o.output.is_dir() && o.output.extension().is_some() {
        image_io::check_bit_depth(&o.output, o.bit_depth)?;
    }
    if let Some(p) = &o.preview {
        if o.preview_every == 0 {
            return Err(Error::InvalidArgument("--preview-every must be at least 1".into()));
        }
        image_io::check_output_path(p)?;
        image_io::check_bit_depth(p, o.bit_depth)?;
    }
    if let Some(p) = &o.log_json {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() || p.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "--log-json {}: the folder {} does not exist",
                p.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Steps at each scale.
pub(super) fn steps_per_scale(o: &RenderOptions) -> Vec<u32> {
    match &o.scale_steps {
        Some(s) => s.clone(),
        None => vec![o.steps; o.scales as usize],
    }
}
