//! `stylize bench` and `cargo bench --bench kernels`: what each kernel and a whole iteration cost
//! on one adapter, next to what the adapter can do at best.
//!
//! Three parts, each optional:
//! - **kernels**: every kernel wrapper at the VGG19 layer shapes of a square `size` x `size`
//!   input (each distinct conv3x3 shape forward with fused ReLU and backward-data with the ReLU
//!   mask; ReLU; avg/max pool; Gram at the style taps; MSE at the content tap and on a Gram; TV;
//!   preprocess; Adam). Median over N runs after warm-up, then the napkin math: GFLOP/s for
//!   convs (2 cin cout 9 H W) and Gram (2 C^2 H W, forward and backward alike), GB/s (bytes
//!   read and written, each once) for the rest, and the fraction of the peak measured on the
//!   same adapter by `shaders/peak.wgsl` (a register-only FMA loop and a vec4 copy; best run).
//! - **e2e**: milliseconds per iteration of [`Graph::step`](crate::runner::Graph::step) (forward, losses, backward, Adam; one
//!   command buffer each) with the default layers and seeded random weights, wall clock over k
//!   iterations after warm-up, plus the bytes of GPU buffers the renderer holds.
//! - **memory**: those bytes alone (graph built, nothing run) at larger sizes.
//!
//! Kernel times come from GPU timestamp queries (pass `timestamp_writes`, resolved into a buffer,
//! scaled by `Queue::get_timestamp_period`) when the adapter has `TIMESTAMP_QUERY` and is not a
//! CPU driver, and only while they agree with the wall clock (checked on the peak kernel, and per
//! kernel against its warm-up); otherwise from the wall clock around submit + wait, whose
//! overhead (an empty dispatch) the report gives. lavapipe's timestamps fail that check badly
//! (see `Meter::new`). Runs are cut to fit a time budget per kernel (at least 3, or
//! `iterations` if fewer), so CPU drivers finish in minutes; each row says how many ran.
//!
//! With the kernels it lists the GPU kernel designs by construction (`designs`: work per
//! invocation, FMAs per workgroup-memory and per global load, workgroup memory, registers).
//!
//! One job per file: `designs` (the designs table), `meter` (timing), `peak` (the adapter's
//! ceilings), `kernels` (the kernel rows), `e2e` (whole iterations and memory), `report` (table and JSON); the public items are
//! re-exported here.

mod designs;
mod e2e;
mod kernels;
mod meter;
mod peak;
mod report;

pub use designs::{designs, designs_table, DesignRow};
pub use report::{print, table, to_json};

use crate::error::{Error, Result};
use crate::gpu::{AdapterChoice, Context};
use crate::runner::Net;
use crate::weights;
use e2e::{build_graph, default_settings, e2e_row};
use kernels::kernel_rows;
use meter::Meter;
use peak::measure_peak;
use report::{mib, utc_now};

/// What to measure; `Default` is `stylize bench` with no flags.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Square input sizes (px) whose VGG19 layer shapes the kernel benchmarks use. Empty: 256
    /// and 512 on a GPU, 64 on a CPU adapter (lavapipe).
    pub sizes: Vec<u32>,
    /// Sizes (longest side = both sides, px) of the end-to-end iteration timing; 0 stands for
    /// the largest size that fits the adapter. Empty: 128, 256, 512 and the largest on a GPU;
    /// 64 and 128 on a CPU adapter.
    pub e2e_sizes: Vec<u32>,
    /// Sizes whose GPU memory is reported without running anything. Empty: 512, 1024, 2048.
    pub memory_sizes: Vec<u32>,
    /// Timed runs per kernel (the median is reported) and iterations per end-to-end size, at
    /// most; fewer run when a time budget is reached. 0: 10.
    pub iterations: u32,
    /// Adapter, as `--adapter` (empty: the best one).
    pub adapter: String,
    /// Folder of the tuning tables: when set, the kernels are those a tuned render would use
    /// (the adapter's table, read only), else the fixed rules.
    pub tune_dir: Option<std::path::PathBuf>,
    /// Kernel choices forced instead of the adapter's defaults.
    pub overrides: crate::gpu::KernelOverrides,
    /// The network of the end-to-end and memory figures (random weights, default layers).
    pub model: crate::model::Model,
    /// What the network sees beyond the image's edges in the end-to-end and memory figures
    /// (default: the renderer's, a reflected margin).
    pub edge: crate::model::Edge,
    /// Print JSON instead of the table (used by [`print()`]; [`run`] ignores it).
    pub json: bool,
    /// Measure the peaks and every kernel.
    pub kernels: bool,
    /// Time whole iterations.
    pub e2e: bool,
    /// Report GPU memory at `memory_sizes`.
    pub memory: bool,
    /// Seconds one kernel's timed runs may take (runs are cut to fit, at least 3).
    pub kernel_budget_s: f64,
    /// Seconds one end-to-end size's timed iterations may take (at least 2 iterations).
    pub e2e_budget_s: f64,
    /// One line per measurement on stderr.
    pub progress: bool,
    /// Time kernels with the wall clock around submit + wait even where GPU timestamps exist
    /// (to cross-check the timestamps; includes submission overhead).
    pub wall_clock: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            sizes: vec![],
            e2e_sizes: vec![],
            memory_sizes: vec![],
            iterations: 0,
            adapter: String::new(),
            tune_dir: None,
            overrides: Default::default(),
            model: crate::model::Model::Vgg19,
            edge: crate::model::Edge::Reflect(crate::render::DEFAULT_EDGE_MARGIN),
            json: false,
            kernels: true,
            e2e: true,
            memory: true,
            kernel_budget_s: 2.0,
            e2e_budget_s: 30.0,
            progress: true,
            wall_clock: false,
        }
    }
}

/// A size list entry for the command line: a number of pixels, or `max` / `largest` (0).
pub fn parse_size(s: &str) -> std::result::Result<u32, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "max" | "largest" => Ok(0),
        t => match t.parse::<u32>() {
            Ok(v) if v >= 8 => Ok(v),
            _ => Err(format!("expected a size in pixels (at least 8) or `max`, got {s:?}")),
        },
    }
}

/// What the work of a kernel is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Floating-point operations: rate in GFLOP/s, against the FMA peak.
    Flop,
    /// Bytes read + written: rate in GB/s, against the copy peak.
    Byte,
}

/// One kernel at one shape.
#[derive(Clone, Debug)]
pub struct KernelRow {
    /// The wrapper (and WGSL entry point) name, e.g. `conv3x3_forward`.
    pub kernel: String,
    /// What the call fuses and which implementation ran, e.g. `relu tex`, `mask tiled`, `clamp`;
    /// may be empty.
    pub variant: String,
    /// Where in the network this shape occurs, e.g. `conv3_2 x3`, `relu4_2`, `image`.
    pub layer: String,
    /// The input size (px) the shape comes from.
    pub size: u32,
    /// The tensor shape, e.g. `64->64 @ 32x32` (conv) or `64x32x32` (C x H x W).
    pub shape: String,
    /// Timed runs (after warm-up).
    pub runs: u32,
    /// `gpu` (timestamps) or `wall` (clock around submit + wait, submission overhead included).
    pub timer: &'static str,
    /// Median time of the runs, ms.
    pub median_ms: f64,
    /// Fastest run, ms.
    pub min_ms: f64,
    /// FLOPs or bytes per run (see `unit`).
    pub work: f64,
    /// What `work` counts.
    pub unit: Unit,
    /// GFLOP/s or GB/s at the median time.
    pub rate: f64,
    /// rate / the measured peak of the same unit, in percent.
    pub peak_pct: f64,
}

/// The adapter's measured ceilings (best of the timed runs).
#[derive(Clone, Debug, Default)]
pub struct Peak {
    /// `peak_fma`: GFLOP/s.
    pub gflops: f64,
    /// `peak_copy`: GB/s (bytes read + written).
    pub gbps: f64,
    /// Bytes the copy kernel moved per run (how far it is out of the caches).
    pub copy_bytes: u64,
    /// Wall-clock ms to submit and wait for an empty dispatch (included in `wall` times).
    pub overhead_ms: f64,
}

/// GPU memory the renderer holds at one size.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Activations, gradients, losses, optimiser state and kernel scratch ([`Graph::gpu_bytes`](crate::runner::Graph::gpu_bytes)).
    pub graph_bytes: u64,
    /// Textures the graph's kernels bind ([`Graph::texture_bytes`](crate::runner::Graph::texture_bytes); 0 where the buffer kernels
    /// run, i.e. on real GPUs).
    pub texture_bytes: u64,
    /// Network weights, biases and backward weights up to the deepest tap.
    pub net_bytes: u64,
    /// Content activations and style Gram matrices.
    pub target_bytes: u64,
}

impl Memory {
    /// All of it, in bytes.
    pub fn total(&self) -> u64 {
        self.graph_bytes + self.texture_bytes + self.net_bytes + self.target_bytes
    }
}

/// One end-to-end size.
#[derive(Clone, Debug)]
pub struct E2eRow {
    /// The size asked for (0: the largest that fits).
    pub requested: u32,
    /// Width that ran, px.
    pub width: usize,
    /// Height that ran, px.
    pub height: usize,
    /// Timed iterations.
    pub iterations: u32,
    /// Wall-clock milliseconds per iteration.
    pub ms_per_iter: f64,
    /// GPU memory held at this size.
    pub memory: Memory,
}

/// One memory-only size: the bytes, or why it does not fit.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    /// The side (px) of the square input.
    pub size: u32,
    /// The bytes held, or why the graph could not be built here.
    pub memory: std::result::Result<Memory, String>,
    /// `tiled::graph_bytes`: what the graph's buffers come to without allocating (the figure
    /// for sizes this adapter cannot hold; tests/tiled.rs checks it against real graphs).
    pub estimated_graph_bytes: u64,
}

/// Everything one `stylize bench` measured, with the adapter it ran on.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Adapter name.
    pub adapter: String,
    /// wgpu backend, e.g. `Vulkan`.
    pub backend: String,
    /// wgpu device type, e.g. `DiscreteGpu` or `Cpu`.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// `gpu-timestamps` or `wall-clock`.
    pub timer: String,
    /// Why (e.g. the timestamps disagreed with the wall clock); may be empty.
    pub timer_note: String,
    /// UTC date and time of the run (ISO 8601).
    pub date: String,
    /// The network of the end-to-end and memory figures, e.g. `vgg19`.
    pub model: String,
    /// Its border handling, e.g. `reflect 16 px` or `zero`.
    pub edge: String,
    /// The measured ceilings (zero when kernels were not measured).
    pub peak: Peak,
    /// The storage-buffer kernel designs by construction (listed when kernels are measured).
    pub designs: Vec<DesignRow>,
    /// One row per kernel and shape.
    pub kernels: Vec<KernelRow>,
    /// One row per end-to-end size.
    pub e2e: Vec<E2eRow>,
    /// One row per memory-only size.
    pub memory: Vec<MemoryRow>,
    /// Sizes that were skipped, and why.
    pub errors: Vec<String>,
}

/// Runs the benchmarks `opts` asks for on its adapter.
pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    let mut ctx = Context::new(&AdapterChoice::parse(&opts.adapter))?;
    ctx.set_overrides(opts.overrides);
    if let Some(dir) = &opts.tune_dir {
        use crate::gpu::tune::{table_path, TuneMode, Tuner};
        let t = Tuner::new(&ctx, TuneMode::Cached, Some(table_path(dir, &ctx.info)), std::time::Duration::ZERO);
        ctx.set_tuner(t);
    }
    run_on(&ctx, opts)
}

/// [`run`] on an existing context (tests share theirs).
pub fn run_on(ctx: &Context, opts: &BenchOptions) -> Result<BenchReport> {
    let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
    let iterations = if opts.iterations == 0 { 10 } else { opts.iterations.min(1000) };
    let meter = Meter::new(ctx, iterations, opts.kernel_budget_s, opts.wall_clock);
    let progress = |s: &str| {
        if opts.progress {
            eprintln!("bench: {s}");
        }
    };
    progress(&ctx.describe());
    let mut report = BenchReport {
        adapter: ctx.info.name.clone(),
        backend: format!("{:?}", ctx.info.backend),
        device_type: format!("{:?}", ctx.info.device_type),
        driver: format!("{} {}", ctx.info.driver, ctx.info.driver_info).trim().to_string(),
        timer: meter.timer_name().to_string(),
        timer_note: String::new(),
        date: utc_now(),
        model: opts.model.name().to_string(),
        edge: match opts.edge {
            crate::model::Edge::Zero => "zero".to_string(),
            crate::model::Edge::Reflect(r) => format!("reflect {r} px"),
        },
        peak: Peak::default(),
        designs: vec![],
        kernels: vec![],
        e2e: vec![],
        memory: vec![],
        errors: vec![],
    };

    if opts.kernels {
        report.designs = designs();
        report.peak = measure_peak(ctx, &meter, cpu, true)?;
        report.timer = meter.timer_name().to_string();
        report.timer_note = meter.note.borrow().clone();
        progress(&format!("timer: {} ({})", report.timer, report.timer_note));
        progress(&format!("peak {:.1} GFLOP/s (FMA), {:.1} GB/s (copy)", report.peak.gflops, report.peak.gbps));
        let sizes = if opts.sizes.is_empty() {
            if cpu {
                vec![64]
            } else {
                vec![256, 512]
            }
        } else {
            opts.sizes.clone()
        };
        for &s in &sizes {
            if s < 8 {
                report.errors.push(format!("kernel size {s}: too small (at least 8)"));
                continue;
            }
            kernel_rows(ctx, &meter, s, &report.peak, &mut report.kernels, &progress)?;
        }
        // The peaks once more, after the kernels: a ceiling is the best seen (on a shared
        // machine one measurement can catch other load); the percentages follow.
        if !report.kernels.is_empty() {
            let again = measure_peak(ctx, &meter, cpu, false)?;
            report.peak.gflops = report.peak.gflops.max(again.gflops);
            report.peak.gbps = report.peak.gbps.max(again.gbps);
            progress(&format!("peak again {:.1} GFLOP/s, {:.1} GB/s", again.gflops, again.gbps));
            for k in &mut report.kernels {
                let p = if k.unit == Unit::Flop { report.peak.gflops } else { report.peak.gbps };
                k.peak_pct = if p > 0.0 { 100.0 * k.rate / p } else { f64::NAN };
            }
        }
    }

    let needs_net = opts.e2e || opts.memory;
    let settings = default_settings(opts.model);
    let net = if needs_net {
        let w = weights::random_for(opts.model, 0, settings.convs_needed());
        let mut net = Net::new(ctx, &w.layers)?;
        net.edge = opts.edge;
        Some(net)
    } else {
        None
    };

    if let (true, Some(net)) = (opts.e2e, &net) {
        let sizes = if opts.e2e_sizes.is_empty() {
            if cpu {
                vec![64, 128]
            } else {
                vec![128, 256, 512, 0]
            }
        } else {
            opts.e2e_sizes.clone()
        };
        for &s in &sizes {
            match e2e_row(ctx, net, &settings, s, iterations, opts.e2e_budget_s, &progress) {
                Ok(r) => report.e2e.push(r),
                Err(e @ (Error::TooLarge(_) | Error::Gpu(_) | Error::InvalidArgument(_))) => {
                    progress(&format!("e2e {s}: {e}"));
                    report.errors.push(format!("e2e size {s}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
    }

    if let (true, Some(net)) = (opts.memory, &net) {
        let sizes = if opts.memory_sizes.is_empty() { vec![512, 1024, 2048] } else { opts.memory_sizes.clone() };
        for &s in &sizes {
            let m = build_graph(ctx, net, &settings, s as usize, s as usize).map(|(_, m)| m);
            let m = match m {
                Ok(m) => Ok(m),
                Err(e @ (Error::TooLarge(_) | Error::Gpu(_) | Error::InvalidArgument(_))) => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            match &m {
                Ok(m) => progress(&format!("memory {s}x{s}: {:.1} MiB", mib(m.total()))),
                Err(e) => progress(&format!("memory {s}x{s}: {e}")),
            }
            let padded = s as usize + 2 * opts.edge.margin(&settings);
            let estimate = crate::tiled::graph_bytes(&settings, padded, padded).0;
            report.memory.push(MemoryRow { size: s, memory: m, estimated_graph_bytes: estimate });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("max"), Ok(0));
        assert!(parse_size("4").is_err());
        assert!(parse_size("big").is_err());
    }
}
