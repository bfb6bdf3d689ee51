//! The `stylize` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use stylize::model::Edge;
use stylize::render;

mod cli;
use cli::args::{options, EdgeArg, ModelArg, RenderArgs};
use stylize::{Error, Result};

#[derive(Parser)]
#[command(name = "stylize", version, about = "Neural style transfer (Gatys et al. 2016) on any GPU, through wgpu")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Render CONTENT in the style of STYLE (or a blend of several styles).
    #[command(allow_negative_numbers = true)]
    Render {
        #[command(flatten)]
        args: RenderArgs,
        #[command(flatten)]
        serve: cli::serve::ServeArgs,
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
    /// Draw the loss curves of a --log-json file (log-scale y, one colour per term) as a PNG.
    Plot {
        /// The JSON-lines log written by `stylize render --log-json`.
        log: PathBuf,
        /// Output image (.png or .jpg).
        #[arg(short, long, default_value = "curve.png")]
        output: PathBuf,
        /// Image width in pixels.
        #[arg(long, default_value_t = 800)]
        width: u32,
        /// Image height in pixels.
        #[arg(long, default_value_t = 500)]
        height: u32,
    },
    /// Check every kernel and one whole iteration on a GPU against the f64 CPU reference and
    /// print the errors (exits non-zero if any exceeds its tolerance).
    Check {
        /// GPU to check (as for render; default the best one, or $STYLIZE_ADAPTER).
        #[arg(long, default_value = "")]
        adapter: String,
        /// The network of the whole-iteration check (random weights, default layers).
        #[arg(long, value_enum, default_value = "vgg19")]
        model: ModelArg,
    },
    /// Measure which conv kernel is fastest for every VGG19 layer shape at the given sizes on a
    /// GPU and save the table that renders then use (see render --tune).
    Tune {
        /// Input sizes (longest side, px) whose layer shapes are tuned.
        #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
        sizes: Vec<u32>,
        /// GPU to tune (as for render; default the best one, or $STYLIZE_ADAPTER).
        #[arg(long, default_value = "")]
        adapter: String,
        /// Seconds it may spend measuring at most.
        #[arg(long, default_value_t = 120.0)]
        budget: f64,
    },
    /// Benchmark every kernel at the VGG19 layer shapes (median time, GFLOP/s or GB/s, % of the
    /// adapter's measured FMA and copy peaks), end-to-end ms per iteration, and GPU memory.
    Bench {
        /// Input sizes whose layer shapes the kernels are timed at [default: 256,512 on a GPU,
        /// 64 on a CPU adapter].
        #[arg(long, value_delimiter = ',', value_parser = stylize::bench::parse_size)]
        sizes: Vec<u32>,
        /// Sizes of the end-to-end iteration timing; `max` = the largest that fits [default:
        /// 128,256,512,max on a GPU; 64,128 on a CPU adapter].
        #[arg(long, value_delimiter = ',', value_parser = stylize::bench::parse_size)]
        e2e_sizes: Vec<u32>,
        /// Sizes whose GPU memory is reported [default: 512,1024,2048].
        #[arg(long, value_delimiter = ',', value_parser = stylize::bench::parse_size)]
        memory_sizes: Vec<u32>,
        /// Timed runs per kernel / iterations per end-to-end size, at most (0: the default, 10).
        #[arg(long, default_value_t = 0)]
        iterations: u32,
        /// GPU to benchmark (as for render).
        #[arg(long, default_value = "")]
        adapter: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Skip the per-kernel benchmarks.
        #[arg(long)]
        no_kernels: bool,
        /// The network of the end-to-end and memory figures (random weights, default layers).
        #[arg(long, value_enum, default_value = "vgg19")]
        model: ModelArg,
        /// Border handling of the end-to-end and memory figures, as render's --edge (reflect:
        /// the renderer's default margin of 16 px around the image).
        #[arg(long, value_enum, default_value = "reflect")]
        edge: EdgeArg,
        /// Skip the end-to-end timing.
        #[arg(long)]
        no_e2e: bool,
        /// Skip the memory report.
        #[arg(long)]
        no_memory: bool,
        /// Time with the wall clock even where GPU timestamps exist.
        #[arg(long)]
        wall_clock: bool,
    },
    /// List the GPU adapters wgpu can use, best first, with their key limits.
    Devices,
    /// VGG16/VGG19 weights: download them, or describe a file.
    Weights {
        #[command(subcommand)]
        cmd: WeightsCmd,
    },
}

#[derive(Subcommand)]
enum WeightsCmd {
    /// Download torchvision's VGG19 (or VGG16) weights into the cache (verifies the SHA-256).
    Fetch {
        /// Which network's weights: vgg19 (vgg19-dcbb9e9d.pth, 548 MB) or vgg16
        /// (vgg16-397923af.pth, 553 MB).
        #[arg(long, value_enum, default_value = "vgg19")]
        model: ModelArg,
    },
    /// Describe a weights file: format, model, layers, shapes, input convention, SHA-256.
    Info { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}{}", hint(&e));
            ExitCode::FAILURE
        }
    }
}

/// The command line's advice after an error (the library's messages name no flags).
fn hint(e: &Error) -> &'static str {
    match e {
        Error::AdapterNotFound { .. } => " (choose one with --adapter; see `stylize devices`)",
        Error::NonFinite { .. } => " (try a smaller --lr)",
        Error::Gpu(m) if m.contains("out of GPU memory") || m.contains("device was lost") => {
            " (try a smaller --size or another --adapter)"
        }
        _ => "",
    }
}

/// Kernel choices forced by $STYLIZE_CONV, $STYLIZE_GRAM, $STYLIZE_WINO_TUNE,
/// $STYLIZE_WINO4_TUNE and $STYLIZE_SHADER_CHECKS, passed to the command's options; an invalid
/// value is reported and ignored.
fn kernel_overrides_from_env() -> stylize::gpu::KernelOverrides {
    let mut o = stylize::gpu::KernelOverrides::default();
    let vars = [
        ("CONV", "conv"),
        ("GRAM", "gram"),
        ("WINO_TUNE", "wino_tune"),
        ("WINO4_TUNE", "wino4_tune"),
        ("SHADER_CHECKS", "shader_checks"),
    ];
    for (var, key) in vars {
        if let Ok(v) = std::env::var(format!("STYLIZE_{var}")) {
            if let Err(e) = o.set(key, &v) {
                eprintln!("warning: STYLIZE_{var}={e}; ignored");
            }
        }
    }
    o
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Render { args, serve } => {
            if serve.serve.is_some() {
                cli::serve::check_images(std::iter::once(&args.content).chain(&args.styles))?;
            }
            let o = options(args)?;
            let mut progress = cli::progress::CliProgress::new(o.quiet);
            let r = match &serve.serve {
                Some(addr) => cli::serve::render_served(&o, &mut progress, addr, serve.serve_linger)?,
                None => render::render_with(&o, &mut progress)?,
            };
            // Problems met while tuning (e.g. the table could not be saved), beyond those shown at the start.
            for w in r.tune_warnings.iter().skip(progress.warnings_shown()) {
                eprintln!("warning: {w}");
            }
            if !o.quiet && r.outputs.is_empty() {
                eprintln!("nothing to render: {} complete outputs skipped", r.skipped.len());
            } else if !o.quiet {
                let skipped = match r.skipped.len() {
                    0 => String::new(),
                    n => format!(" ({n} complete ones skipped)"),
                };
                let what = match r.outputs.as_slice() {
                    [one] => format!("{}{skipped} ({}x{}", one.display(), r.width, r.height),
                    many => format!(
                        "{} images to {}{skipped} (last {}x{}",
                        many.len(),
                        o.output.display(),
                        r.width,
                        r.height
                    ),
                };
                if r.tuning.1 > 0 {
                    let saved = !r.tune_warnings.iter().any(|w| w.contains("could not save"));
                    let note = if saved { " (saved for later runs)" } else { "" };
                    eprintln!("tuned {} kernel shapes in {:.1} s{note}", r.tuning.1, r.tuning.0);
                }
                eprintln!(
                    "wrote {what}, {} steps, {:.1} ms/iteration on {}); loss {:.4e} -> {:.4e}",
                    r.steps,
                    r.ms_per_iter,
                    r.adapter,
                    r.first.total(),
                    r.last.total()
                );
            }
            Ok(())
        }
        Cmd::Plot { log, output, width, height } => {
            cli::plot::plot_file(&log, &output, width, height)?;
            println!("{}", output.display());
            Ok(())
        }
        Cmd::Evaluate { mut args, grad_out } => {
            args.quiet = true;
            let mut o = options(args)?;
            o.output = PathBuf::new();
            let (l, g, w, h) = render::evaluate(&o)?;
            let list = |v: &[f32]| v.iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(", ");
            println!(
                "{{\"width\": {w}, \"height\": {h}, \"content\": [{}], \"style\": [{}], \"style_loss\": \"{}\", \"tv\": {:e}}}",
                list(&l.content),
                list(&l.style),
                o.style_loss.name(),
                l.tv
            );
            if let Some(p) = grad_out {
                write_npy(&p, &g, &[3, h as u64, w as u64])?;
            }
            Ok(())
        }
        Cmd::Bench {
            sizes,
            e2e_sizes,
            memory_sizes,
            iterations,
            adapter,
            json,
            no_kernels,
            model,
            edge,
            no_e2e,
            no_memory,
            wall_clock,
        } => {
            let adapter = adapter_or_env(adapter);
            let o = stylize::bench::BenchOptions {
                sizes,
                e2e_sizes,
                memory_sizes,
                iterations,
                adapter,
                json,
                kernels: !no_kernels,
                e2e: !no_e2e,
                memory: !no_memory,
                wall_clock,
                model: model.into(),
                edge: match edge {
                    EdgeArg::Reflect => Edge::Reflect(render::DEFAULT_EDGE_MARGIN),
                    EdgeArg::Zero => Edge::Zero,
                },
                overrides: kernel_overrides_from_env(),
                // The kernels a render would use: those of the adapter's tuning table, if any.
                tune_dir: Some(stylize::weights::cache_dir().join("tune")),
                ..Default::default()
            };
            let r = stylize::bench::run(&o)?;
            stylize::bench::print(&r, json);
            Ok(())
        }
        Cmd::Check { adapter, model } => {
            let (table, failed) =
                stylize::check::check(&adapter_or_env(adapter), kernel_overrides_from_env(), model.into())?;
            print!("{table}");
            if failed > 0 {
                return Err(Error::Gpu(format!("{failed} numerical checks failed")));
            }
            Ok(())
        }
        Cmd::Tune { sizes, adapter, budget } => {
            use stylize::gpu::tune::{table_path, tune_vgg19, TuneMode, Tuner};
            if !budget.is_finite() || budget < 0.0 {
                return Err(Error::InvalidArgument(format!("--budget must be a number of seconds >= 0, got {budget}")));
            }
            let mut ctx = stylize::gpu::Context::new(&stylize::gpu::AdapterChoice::parse(&adapter_or_env(adapter)))?;
            let path = table_path(&stylize::weights::cache_dir().join("tune"), &ctx.info);
            let budget = std::time::Duration::from_secs_f64(budget);
            let mut tuner = Tuner::new(&ctx, TuneMode::Full, Some(path.clone()), budget);
            // One line per shape as it is measured: a slow candidate shows where the time goes.
            tuner.set_progress(|line| eprintln!("  {line}"));
            ctx.set_tuner(tuner);
            let tuner_warnings = ctx.tuner().map(|t| t.warnings()).unwrap_or_default();
            for w in tuner_warnings {
                eprintln!("warning: {w}");
            }
            // A size given twice is tuned once, in the order given (the budget may end first).
            let mut sizes = sizes;
            let mut seen = std::collections::HashSet::new();
            sizes.retain(|s| seen.insert(*s));
            eprintln!("tuning the conv3x3 and Gram kernels on {} at {sizes:?} px ...", ctx.describe());
            let shapes = tune_vgg19(&ctx, &sizes);
            let t = ctx.tuner().expect("set above");
            for (shape, v) in t.entries() {
                println!("{shape:<28} {v}");
            }
            let (spent, measured) = t.spent();
            for w in t.warnings() {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "{shapes} shapes, {measured} measured in {:.1} s; table: {}",
                spent.as_secs_f64(),
                path.display()
            );
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
            WeightsCmd::Fetch { model } => {
                let p = stylize::weights::default_weights_of(model.into(), true)?;
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

/// `--adapter`, or `$STYLIZE_ADAPTER` when it is not given.
fn adapter_or_env(adapter: String) -> String {
    if adapter.is_empty() {
        std::env::var("STYLIZE_ADAPTER").unwrap_or_default()
    } else {
        adapter
    }
}

fn write_npy(path: &std::path::Path, data: &[f32], shape: &[u64]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
    let file = std::fs::File::create(path).map_err(io)?;
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    w.extend(data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(())
}
