//! The `stylize` command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use stylize::gpu::pool::Pool;
use stylize::render::{self, Init, RenderOptions, WeightsSource};
use stylize::vgg::Preprocess;
use stylize::{Error, Result};

#[derive(Parser)]
#[command(name = "stylize", version, about = "Neural style transfer (Gatys et al. 2016) on any GPU, through wgpu")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolArg {
    Avg,
    Max,
}

#[derive(Clone, Copy, ValueEnum)]
enum PreprocessArg {
    /// Recognise from the weights file (torchvision's convention if unknown).
    Auto,
    /// torchvision: RGB in [0,1], ImageNet mean/std normalisation.
    Torch,
    /// Caffe (original VGG release): BGR in [0,255], mean subtraction.
    Caffe,
}

#[derive(Args)]
struct RenderArgs {
    /// The photo whose layout is kept (PNG or JPEG; builtin:photo for a built-in sample).
    content: PathBuf,
    /// The painting whose style is transferred (PNG or JPEG; builtin:painting for a sample).
    style: PathBuf,
    /// Output image; .png (records the settings used) or .jpg. Written atomically.
    #[arg(short, long, default_value = "out.png")]
    output: PathBuf,
    /// Longest side of the output in pixels (aspect kept). The style image is resized to the
    /// same longest side.
    #[arg(long, default_value_t = 512)]
    size: u32,
    /// Optimisation steps.
    #[arg(long, default_value_t = 500)]
    steps: u32,
    /// Adam learning rate, in [0,1] pixel units (pixels are clamped to [0,1] after each step).
    #[arg(long, default_value_t = 0.02)]
    lr: f32,
    /// Weight of the content loss [default: 1 for torchvision weights, 5 for Caffe weights].
    #[arg(long)]
    content_weight: Option<f32>,
    /// Weight of the style loss [default: 1e6 for torchvision weights, 100 for Caffe weights].
    #[arg(long)]
    style_weight: Option<f32>,
    /// Weight of the total-variation (smoothness) loss [default: 100 torchvision, 1e4 Caffe].
    #[arg(long)]
    tv_weight: Option<f32>,
    /// Layers whose activations the content loss compares (comma-separated; conv1_1..conv5_4,
    /// relu1_1..relu5_4, pool1..pool5).
    #[arg(long, value_delimiter = ',', default_value = "relu4_2")]
    content_layers: Vec<String>,
    /// Layers whose Gram matrices the style loss compares (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")]
    style_layers: Vec<String>,
    /// One weight per style layer (comma-separated) [default: 1 each].
    #[arg(long, value_delimiter = ',')]
    style_layer_weights: Option<Vec<f32>>,
    /// Pooling: avg (Gatys et al.) or max (VGG's own).
    #[arg(long, value_enum, default_value = "avg")]
    pool: PoolArg,
    /// Starting image: content, noise (seeded), or a path to an image.
    #[arg(long, default_value = "content")]
    init: String,
    /// Seed for --init noise (a run is repeatable on the same adapter).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the losses every N steps (0: never; reading them back costs a little).
    #[arg(long, default_value_t = 50)]
    print_every: u32,
    /// Save a numbered snapshot (OUT_00100.png, ...) every N steps (0: never).
    #[arg(long, default_value_t = 0)]
    save_every: u32,
    /// VGG19 weights: a .pth (torchvision) or .npz file, or random:SEED for random weights.
    /// Default: torchvision's vgg19-dcbb9e9d.pth from the cache, downloaded on first use.
    #[arg(long)]
    weights: Option<String>,
    /// Input convention of the weights.
    #[arg(long, value_enum, default_value = "auto")]
    preprocess: PreprocessArg,
    /// GPU to use: auto, a backend (vulkan, metal, dx12, gl), a name substring, or
    /// BACKEND:NAME (see `stylize devices`). Also read from $STYLIZE_ADAPTER.
    #[arg(long, default_value = "")]
    adapter: String,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Render CONTENT in the style of STYLE.
    #[command(allow_negative_numbers = true)]
    Render {
        #[command(flatten)]
        args: RenderArgs,
    },
    /// Evaluate the losses and the image gradient at the initial image without optimising, and
    /// print them as JSON (for cross-checks with other implementations, e.g.
    /// tools/torch_compare.py).
    #[command(allow_negative_numbers = true)]
    Evaluate {
        #[command(flatten)]
        args: RenderArgs,
        /// Write the image gradient here as .npy (float32, shape (3, H, W)).
        #[arg(long)]
        grad_out: Option<PathBuf>,
    },
    /// List the GPU adapters wgpu can use, best first, with their key limits.
    Devices,
    /// VGG19 weights: download them, or describe a file.
    Weights {
        #[command(subcommand)]
        cmd: WeightsCmd,
    },
}

#[derive(Subcommand)]
enum WeightsCmd {
    /// Download torchvision's VGG19 weights into the cache (verifies the SHA-256).
    Fetch,
    /// Describe a weights file: format, layers, shapes, input convention, SHA-256.
    Info { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Render { args } => {
            let o = options(args)?;
            let r = render::render(&o)?;
            if !o.quiet {
                eprintln!(
                    "wrote {} ({}x{}, {} steps, {:.1} ms/iteration on {}); loss {:.4e} -> {:.4e}",
                    o.output.display(),
                    r.width,
                    r.height,
                    r.steps,
                    r.ms_per_iter,
                    r.adapter,
                    r.first.total(),
                    r.last.total()
                );
            }
            Ok(())
        }
        Cmd::Evaluate { mut args, grad_out } => {
            args.quiet = true;
            let mut o = options(args)?;
            o.output = PathBuf::new();
            let (l, g, w, h) = render::evaluate(&o)?;
            let list = |v: &[f32]| v.iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(", ");
            println!(
                "{{\"width\": {w}, \"height\": {h}, \"content\": [{}], \"style\": [{}], \"tv\": {:e}}}",
                list(&l.content),
                list(&l.style),
                l.tv
            );
            if let Some(p) = grad_out {
                write_npy(&p, &g, &[3, h as u64, w as u64])?;
            }
            Ok(())
        }
        Cmd::Devices => {
            let all = stylize::gpu::enumerate();
            if all.is_empty() {
                return Err(Error::NoAdapter("wgpu sees no adapter".into()));
            }
            for (i, a) in all.iter().enumerate() {
                let info = a.get_info();
                let l = a.limits();
                println!(
                    "{i}: {}\n   backend {:?}, type {:?}, driver {} {}\n   max buffer {} MiB, max storage binding {} MiB, max workgroups/dim {}, workgroup storage {} KiB",
                    info.name,
                    info.backend,
                    info.device_type,
                    info.driver,
                    info.driver_info,
                    l.max_buffer_size >> 20,
                    l.max_storage_buffer_binding_size >> 20,
                    l.max_compute_workgroups_per_dimension,
                    l.max_compute_workgroup_storage_size >> 10
                );
            }
            Ok(())
        }
        Cmd::Weights { cmd } => match cmd {
            WeightsCmd::Fetch => {
                let p = stylize::weights::default_weights(true)?;
                println!("{}", p.display());
                Ok(())
            }
            WeightsCmd::Info { path } => {
                println!("{}", stylize::weights::info(&path)?);
                Ok(())
            }
        },
    }
}

fn options(a: RenderArgs) -> Result<RenderOptions> {
    let adapter = if a.adapter.is_empty() { std::env::var("STYLIZE_ADAPTER").unwrap_or_default() } else { a.adapter };
    Ok(RenderOptions {
        content: a.content,
        style: a.style,
        output: a.output,
        size: a.size,
        steps: a.steps,
        lr: a.lr,
        content_weight: a.content_weight,
        style_weight: a.style_weight,
        tv_weight: a.tv_weight,
        content_layers: a.content_layers,
        style_layers: a.style_layers,
        style_layer_weights: a.style_layer_weights,
        pool: match a.pool {
            PoolArg::Avg => Pool::Avg,
            PoolArg::Max => Pool::Max,
        },
        init: Init::parse(&a.init),
        seed: a.seed,
        print_every: a.print_every,
        save_every: a.save_every,
        weights: match a.weights {
            Some(w) => WeightsSource::parse(&w)?,
            None => WeightsSource::Default,
        },
        preprocess: match a.preprocess {
            PreprocessArg::Auto => None,
            PreprocessArg::Torch => Some(Preprocess::Torch),
            PreprocessArg::Caffe => Some(Preprocess::Caffe),
        },
        adapter,
        quiet: a.quiet,
    })
}

fn write_npy(path: &std::path::Path, data: &[f32], shape: &[u64]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
    let file = std::fs::File::create(path).map_err(io)?;
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new().default_dtype().shape(shape).writer(std::io::BufWriter::new(file)).begin_nd().map_err(io)?;
    w.extend(data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(())
}
