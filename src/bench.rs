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
//! - **e2e**: milliseconds per iteration of [`Graph::step`] (forward, losses, backward, Adam; one
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

use crate::error::{Error, Result};
use crate::gpu::adam::{Adam, AdamConfig};
use crate::gpu::pool::Pool;
use crate::gpu::{conv, gram, image, pool, reduce, relu, AdapterChoice, Context, Op, Tensor};
use crate::runner::{ConvWeights, Graph, LossSettings, Net, Targets};
use crate::vgg::{self, Preprocess, Tap};
use crate::weights;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::Instant;

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
    /// Adapter, as `--adapter` (empty: the best one, or `$STYLIZE_ADAPTER`).
    pub adapter: String,
    /// Print JSON instead of the table (used by [`print()`]; [`run`] ignores it).
    pub json: bool,
    pub kernels: bool,
    pub e2e: bool,
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
    pub shape: String,
    pub runs: u32,
    /// `gpu` (timestamps) or `wall` (clock around submit + wait, submission overhead included).
    pub timer: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    /// FLOPs or bytes per run (see `unit`).
    pub work: f64,
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
    /// Activations, gradients, losses, optimiser state and kernel scratch ([`Graph::gpu_bytes`]).
    pub graph_bytes: u64,
    /// Textures the graph's kernels bind ([`Graph::texture_bytes`]; 0 where the buffer kernels
    /// run, i.e. on real GPUs).
    pub texture_bytes: u64,
    /// Network weights, biases and backward weights up to the deepest tap.
    pub net_bytes: u64,
    /// Content activations and style Gram matrices.
    pub target_bytes: u64,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.graph_bytes + self.texture_bytes + self.net_bytes + self.target_bytes
    }
}

/// One end-to-end size.
#[derive(Clone, Debug)]
pub struct E2eRow {
    /// The size asked for (0: the largest that fits).
    pub requested: u32,
    pub width: usize,
    pub height: usize,
    pub iterations: u32,
    pub ms_per_iter: f64,
    pub memory: Memory,
}

/// One memory-only size: the bytes, or why it does not fit.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    pub size: u32,
    pub memory: std::result::Result<Memory, String>,
    /// `tiled::graph_bytes`: what the graph's buffers come to without allocating (the figure
    /// for sizes this adapter cannot hold; tests/tiled.rs checks it against real graphs).
    pub estimated_graph_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// `gpu-timestamps` or `wall-clock`.
    pub timer: String,
    /// Why (e.g. the timestamps disagreed with the wall clock); may be empty.
    pub timer_note: String,
    /// UTC date and time of the run (ISO 8601).
    pub date: String,
    pub peak: Peak,
    pub kernels: Vec<KernelRow>,
    pub e2e: Vec<E2eRow>,
    pub memory: Vec<MemoryRow>,
    /// Sizes that were skipped, and why.
    pub errors: Vec<String>,
}

/// Runs the benchmarks `opts` asks for on its adapter.
pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    let choice = if opts.adapter.is_empty() { AdapterChoice::from_env() } else { AdapterChoice::parse(&opts.adapter) };
    let ctx = Context::new(&choice)?;
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
        peak: Peak::default(),
        kernels: vec![],
        e2e: vec![],
        memory: vec![],
        errors: vec![],
    };

    if opts.kernels {
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
    let settings = default_settings();
    let net = if needs_net {
        let w = weights::random(0, settings.convs_needed());
        let convs: Vec<ConvWeights> = w
            .layers
            .into_iter()
            .map(|l| ConvWeights { cin: l.cin, cout: l.cout, weight: l.weight, bias: l.bias })
            .collect();
        Some(Net::new(ctx, &convs)?)
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
            let estimate = crate::tiled::graph_bytes(&settings, s as usize, s as usize).0;
            report.memory.push(MemoryRow { size: s, memory: m, estimated_graph_bytes: estimate });
        }
    }
    Ok(report)
}

// ------------------------------------------------------------------------------------------
// Timing

/// Times an [`Op`]: warm-up, then timed runs with GPU timestamps or the wall clock.
struct Meter<'a> {
    ctx: &'a Context,
    /// Whether kernel times come from GPU timestamps; switched off by [`Meter::check_timestamps`]
    /// when they disagree with the wall clock.
    timestamps: Cell<bool>,
    /// Why the timer is what it is, when that is not obvious.
    note: RefCell<String>,
    /// Wall-clock milliseconds of submitting and waiting for an empty dispatch.
    overhead_ms: Cell<f64>,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    iterations: u32,
    budget_ms: f64,
}

impl<'a> Meter<'a> {
    fn new(ctx: &'a Context, iterations: u32, budget_s: f64, wall_clock: bool) -> Meter<'a> {
        let has = ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        let timestamps = has && !wall_clock && !cpu;
        let note = if wall_clock {
            "wall clock requested".to_string()
        } else if !has {
            "the adapter has no timestamp queries".to_string()
        } else if cpu {
            // Measured on lavapipe (Mesa 22.3): a 64x64x64 Gram took 0.24 ms by its timestamps
            // and 54 ms by the clock (33.5 MFLOP: the clock is right); a ReLU 0.05 vs 0.6 ms.
            "a CPU driver's timestamps are not ordered with its compute work (lavapipe's \
             understate a Gram 200x), so the wall clock is used"
                .to_string()
        } else {
            String::new()
        };
        Meter {
            ctx,
            timestamps: Cell::new(timestamps && period_ns > 0.0),
            note: RefCell::new(note),
            overhead_ms: Cell::new(0.0),
            period_ns,
            iterations,
            budget_ms: budget_s.max(0.0) * 1e3,
        }
    }

    fn timer_name(&self) -> &'static str {
        if self.timestamps.get() {
            "gpu-timestamps"
        } else {
            "wall-clock"
        }
    }

    /// One run in its own command buffer, waited for; wall-clock milliseconds.
    fn run_once(&self, op: &Op) -> Result<f64> {
        let t = Instant::now();
        self.ctx.scoped("running a benchmark kernel", || {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                op.record(&mut pass);
            }
            self.ctx.queue.submit([enc.finish()]);
        })?;
        self.ctx.wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    /// Milliseconds of each timed run, after two warm-up runs (the first builds the pipeline on
    /// drivers that compile lazily; the second sets how many runs fit the budget).
    ///
    /// Timestamps are used only when they are plausible against the warm-up's wall clock: not
    /// under half of what the clock saw beyond the submission overhead, not over twice the
    /// clock. Otherwise (or with zeros from a driver) the runs are timed by the wall clock. The
    /// flag says which timer the times come from (true: GPU timestamps).
    fn measure(&self, op: &Op) -> Result<(Vec<f64>, bool)> {
        let first = self.run_once(op)?;
        let warm = if first > self.budget_ms { first } else { self.run_once(op)? };
        let min_runs = self.iterations.min(3);
        let fit = if warm > 0.0 { (self.budget_ms / warm).floor() } else { f64::from(self.iterations) };
        let runs = (fit.min(f64::from(self.iterations)) as u32).max(min_runs).max(1);
        if self.timestamps.get() {
            let t = self.timestamped(op, runs)?;
            let m = median(&t);
            let beyond_overhead = warm - self.overhead_ms.get();
            let plausible =
                t.iter().all(|&v| v > 0.0 && v.is_finite()) && m >= 0.5 * beyond_overhead && m <= 2.0 * warm;
            if plausible {
                return Ok((t, true));
            }
        }
        Ok(((0..runs).map(|_| self.run_once(op)).collect::<Result<Vec<_>>>()?, false))
    }

    /// `runs` passes in one command buffer, each bracketed by timestamps.
    fn timestamped(&self, op: &Op, runs: u32) -> Result<Vec<f64>> {
        let ctx = self.ctx;
        let n = 2 * runs;
        let size = u64::from(n) * 8;
        let (qs, resolve, read) = ctx.scoped("creating timestamp queries", || {
            let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: n,
            });
            let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps resolved"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (qs, resolve, read)
        })?;
        ctx.scoped("running a timed benchmark kernel", || {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            for r in 0..runs {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("bench"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &qs,
                        beginning_of_pass_write_index: Some(2 * r),
                        end_of_pass_write_index: Some(2 * r + 1),
                    }),
                });
                op.record(&mut pass);
            }
            enc.resolve_query_set(&qs, 0..n, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, size);
            ctx.queue.submit([enc.finish()]);
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("reading the timestamps failed: {e}"))),
            Err(_) => return Err(Error::Gpu("reading the timestamps: the map callback never ran".into())),
        }
        let view = read.get_mapped_range(..).map_err(|e| Error::Gpu(format!("mapping the timestamps failed: {e}")))?;
        let ticks: Vec<u64> = bytemuck::cast_slice::<u8, u64>(&view).to_vec();
        drop(view);
        read.unmap();
        Ok(ticks.chunks(2).map(|p| p[1].wrapping_sub(p[0]) as f64 * self.period_ns / 1e6).collect())
    }
}

impl Meter<'_> {
    /// Trusts the GPU timestamps only if they agree with the wall clock on `op`, a kernel long
    /// enough (tens of ms) that submission overhead is noise. lavapipe (Mesa 22.3) fails this:
    /// its timestamps are not ordered with compute dispatches (measured: a 64x64x64 ReLU "took"
    /// 0.05 ms by timestamps and 0.6 ms by the clock; a Gram 0.24 vs 54 ms).
    fn check_timestamps(&self, op: &Op, name: &str) -> Result<()> {
        if !self.timestamps.get() {
            return Ok(());
        }
        let wall = median(&(0..3).map(|_| self.run_once(op)).collect::<Result<Vec<_>>>()?);
        let ts = median(&self.timestamped(op, 3)?);
        let ratio = ts / wall;
        if !(0.75..=1.1).contains(&ratio) {
            self.timestamps.set(false);
            *self.note.borrow_mut() = format!(
                "GPU timestamps disagree with the wall clock on {name} ({ts:.2} ms vs {wall:.2} ms), so kernels are \
                 timed by the wall clock around submit + wait"
            );
        } else {
            *self.note.borrow_mut() =
                format!("GPU timestamps agree with the wall clock on {name} ({ts:.2} ms vs {wall:.2} ms)");
        }
        Ok(())
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

// ------------------------------------------------------------------------------------------
// Peaks

const PEAK_FILE: &str = "peak.wgsl";

fn measure_peak(ctx: &Context, meter: &Meter, cpu: bool, check_timer: bool) -> Result<Peak> {
    // FMA: enough invocations to fill the device, rounds grown until one run takes ~target_ms.
    let groups: u32 = if cpu { 256 } else { 16384 };
    let n = groups * 64;
    let out = Tensor::new(ctx, [n as usize * 4, 1, 1], "peak out")?;
    let (gx, gy) = ctx.grid(groups);
    let fma = |iters: u32| {
        let p = crate::gpu::peak::PeakParams { n, gx, iters, ..Default::default() };
        ctx.op(ctx.dispatch(PEAK_FILE, "peak_fma", &p, &[("Out", &out.buf)], (gx, gy, 1)))
    };
    // Submission overhead: one workgroup doing nothing.
    let empty = ctx.op(ctx.dispatch(
        PEAK_FILE,
        "peak_fma",
        &crate::gpu::peak::PeakParams { n: 64, gx: 1, iters: 0, ..Default::default() },
        &[("Out", &out.buf)],
        (1, 1, 1),
    ));
    meter.run_once(&empty)?;
    meter.overhead_ms.set(median(&(0..5).map(|_| meter.run_once(&empty)).collect::<Result<Vec<_>>>()?));
    let target_ms = if cpu { 50.0 } else { 10.0 };
    let mut iters = 64u32;
    meter.run_once(&fma(iters))?; // builds the pipeline
    loop {
        let t = meter.run_once(&fma(iters))?;
        if t >= target_ms || iters >= 1 << 22 {
            break;
        }
        let grow = (target_ms / t.max(1e-3)).clamp(2.0, 64.0);
        iters = ((f64::from(iters) * grow) as u32).min(1 << 22);
    }
    let op = fma(iters);
    if check_timer {
        meter.check_timestamps(&op, "peak_fma")?;
    }
    // A ceiling is the best run, not the typical one.
    let t = min(&meter.measure(&op)?.0);
    let gflops = 64.0 * f64::from(iters) * f64::from(n) / (t * 1e6);

    // Copy: a buffer well past the caches (within the binding limit).
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let want: u64 = if cpu { 64 << 20 } else { 512 << 20 };
    let bytes = want.min(limit) / 16 * 16;
    let nv = (bytes / 16) as u32;
    let a = Tensor::new(ctx, [bytes as usize / 4, 1, 1], "peak copy in")?;
    let b = Tensor::new(ctx, [bytes as usize / 4, 1, 1], "peak copy out")?;
    let (gx, gy) = ctx.grid(nv.div_ceil(256));
    let p = crate::gpu::peak::PeakParams { n: nv, gx, ..Default::default() };
    let copy = ctx.op(ctx.dispatch(PEAK_FILE, "peak_copy", &p, &[("In", &a.buf), ("Out", &b.buf)], (gx, gy, 1)));
    let t = min(&meter.measure(&copy)?.0);
    let gbps = 2.0 * bytes as f64 / (t * 1e6);
    Ok(Peak { gflops, gbps, copy_bytes: bytes, overhead_ms: meter.overhead_ms.get() })
}

// ------------------------------------------------------------------------------------------
// Kernels

/// splitmix64 for benchmark data (values only need to be ordinary, not checked).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

fn rand_tensor(ctx: &Context, rng: &mut Rng, shape: [usize; 3], lo: f32, hi: f32, label: &str) -> Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_slice(ctx, shape, &rng.vec(n, lo, hi), label)
}

/// Collects measured rows at one input size.
struct Rows<'a, 'b> {
    meter: &'a Meter<'a>,
    peak: &'a Peak,
    size: u32,
    out: &'b mut Vec<KernelRow>,
    progress: &'a dyn Fn(&str),
}

impl Rows<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kernel: &str,
        variant: &str,
        layer: &str,
        shape: String,
        unit: Unit,
        work: f64,
        op: Op,
    ) -> Result<()> {
        let (t, ts) = self.meter.measure(&op)?;
        drop(op);
        let med = median(&t);
        let min = min(&t);
        let rate = work / (med * 1e6);
        let peak = match unit {
            Unit::Flop => self.peak.gflops,
            Unit::Byte => self.peak.gbps,
        };
        let row = KernelRow {
            kernel: kernel.into(),
            variant: variant.into(),
            layer: layer.into(),
            size: self.size,
            shape,
            runs: t.len() as u32,
            timer: if ts { "gpu" } else { "wall" },
            median_ms: med,
            min_ms: min,
            work,
            unit,
            rate,
            peak_pct: if peak > 0.0 { 100.0 * rate / peak } else { f64::NAN },
        };
        (self.progress)(&format!(
            "{:<22} {:<10} {:<12} {:<20} {:>10.3} ms {:>9.2} {}",
            row.kernel,
            row.variant,
            row.layer,
            row.shape,
            row.median_ms,
            row.rate,
            unit_name(unit)
        ));
        self.out.push(row);
        Ok(())
    }
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Flop => "GFLOP/s",
        Unit::Byte => "GB/s",
    }
}

/// The conv3x3 variant the public wrappers select for a shape (see `gpu::conv`).
fn variant_name(v: conv::Variant) -> String {
    format!("{v:?}").to_ascii_lowercase()
}

fn chw(c: usize, h: usize, w: usize) -> String {
    format!("{c}x{h}x{w}")
}

/// Every kernel at the layer shapes of an `s` x `s` input.
fn kernel_rows(
    ctx: &Context,
    meter: &Meter,
    s: u32,
    peak: &Peak,
    out: &mut Vec<KernelRow>,
    progress: &dyn Fn(&str),
) -> Result<()> {
    let mut rng = Rng(0x5EED ^ u64::from(s));
    let mut rows = Rows { meter, peak, size: s, out, progress };
    let s = s as usize;
    let f4 = |n: usize| 4.0 * n as f64;

    // conv3x3: each distinct (cin, cout, side) of the 16 layers, forward (bias + fused ReLU) and
    // backward-data (ReLU mask fused), as the renderer records them.
    let mut shapes: Vec<(usize, usize, usize, Vec<&str>)> = vec![];
    for (i, &(name, cin, cout)) in vgg::CONVS.iter().enumerate() {
        let side = s >> vgg::block_of(i).0;
        if side == 0 {
            continue;
        }
        match shapes.iter_mut().find(|(a, b, c, _)| (*a, *b, *c) == (cin, cout, side)) {
            Some(e) => e.3.push(name),
            None => shapes.push((cin, cout, side, vec![name])),
        }
    }
    for (cin, cout, h, names) in &shapes {
        let (cin, cout, h) = (*cin, *cout, *h);
        let layer = if names.len() > 1 { format!("{} x{}", names[0], names.len()) } else { names[0].to_string() };
        let shape = format!("{cin}->{cout} @ {h}x{h}");
        let flops = 2.0 * (cin * cout * 9 * h * h) as f64;
        let std = (2.0 / (9.0 * cin as f32)).sqrt();
        {
            let x = rand_tensor(ctx, &mut rng, [cin, h, h], -1.0, 1.0, "bench x")?;
            let w = rand_tensor(ctx, &mut rng, [cout, cin, 9], -std, std, "bench w")?;
            let b = rand_tensor(ctx, &mut rng, [cout, 1, 1], -0.01, 0.01, "bench b")?;
            let y = Tensor::new(ctx, [cout, h, h], "bench y")?;
            let op = conv::conv3x3_forward(ctx, &x, &w, &b, &y, true);
            let v = format!("relu {}", variant_name(conv::select_variant(ctx, cin, cout, h, h)));
            rows.add("conv3x3_forward", &v, &layer, shape.clone(), Unit::Flop, flops, op)?;
        }
        {
            let dy = rand_tensor(ctx, &mut rng, [cout, h, h], -1.0, 1.0, "bench dy")?;
            let signs: Vec<f64> = rng.vec(cout * h * h, -1.0, 1.0).iter().map(|&v| v as f64).collect();
            let mask =
                relu::Mask::from_words(ctx, [cout, h, h], &crate::reference::relu_mask_pack(&signs), "bench mask")?;
            let wt = rand_tensor(ctx, &mut rng, [cin, cout, 9], -std, std, "bench wt")?;
            let dx = Tensor::new(ctx, [cin, h, h], "bench dx")?;
            let op = conv::conv3x3_backward_input(ctx, &dy, Some(&mask), &wt, &dx);
            let v = format!("mask {}", variant_name(conv::select_variant(ctx, cout, cin, h, h)));
            rows.add("conv3x3_backward_input", &v, &layer, shape, Unit::Flop, flops, op)?;
        }
    }

    // Per block: the activation after its first ReLU (a style tap by default) and the pool that
    // ends it.
    let style_taps = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];
    let pools = ["pool1", "pool2", "pool3", "pool4"];
    for b in 0..5 {
        let c = vgg::CONVS[vgg::BLOCKS[..b].iter().sum::<usize>()].2;
        let h = s >> b;
        if h == 0 {
            continue;
        }
        let n = c * h * h;
        let shape = chw(c, h, h);
        let x = rand_tensor(ctx, &mut rng, [c, h, h], -1.0, 1.0, "bench act")?;
        let g = rand_tensor(ctx, &mut rng, [c, h, h], -1.0, 1.0, "bench grad")?;
        let y = Tensor::new(ctx, [c, h, h], "bench out")?;
        let layer = style_taps[b];
        rows.add("relu_forward", "", layer, shape.clone(), Unit::Byte, f4(2 * n), relu::relu_forward(ctx, &x, &y))?;
        rows.add(
            "relu_backward",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(3 * n),
            relu::relu_backward(ctx, &x, &g, &y),
        )?;
        let m = relu::Mask::new(ctx, [c, h, h], "bench mask")?;
        rows.add(
            "relu_mask_pack",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(n) + n.div_ceil(8) as f64,
            relu::relu_mask_pack(ctx, &x, &m),
        )?;

        // Gram at the style tap: G = F F^T / (C H W), and its backward (not accumulating).
        let gm = Tensor::new(ctx, [c, c, 1], "bench gram")?;
        let flops = 2.0 * (c * c * h * h) as f64;
        rows.add("gram_forward", "", layer, shape.clone(), Unit::Flop, flops, gram::gram_forward(ctx, &x, &gm))?;
        let dg = rand_tensor(ctx, &mut rng, [c, c, 1], -1.0, 1.0, "bench dgram")?;
        rows.add(
            "gram_backward",
            "",
            layer,
            shape.clone(),
            Unit::Flop,
            flops,
            gram::gram_backward(ctx, &x, &dg, &y, false),
        )?;

        if b < pools.len() && h >= 2 {
            let p = Tensor::new(ctx, [c, h / 2, h / 2], "bench pooled")?;
            let dp = rand_tensor(ctx, &mut rng, [c, h / 2, h / 2], -1.0, 1.0, "bench dpool")?;
            let np = p.len();
            let layer = pools[b];
            for (kind, name) in [(Pool::Avg, "avgpool2x2"), (Pool::Max, "maxpool2x2")] {
                let fwd = format!("{name}_forward");
                let bwd = format!("{name}_backward");
                rows.add(
                    &fwd,
                    "",
                    layer,
                    shape.clone(),
                    Unit::Byte,
                    f4(n + np),
                    pool::pool_forward(ctx, kind, &x, &p),
                )?;
                // avg backward reads dy only; max backward also reads the forward input.
                let read = if kind == Pool::Max { n + np } else { np };
                rows.add(
                    &bwd,
                    "",
                    layer,
                    shape.clone(),
                    Unit::Byte,
                    f4(read + n),
                    pool::pool_backward(ctx, kind, &x, &dp, &y),
                )?;
            }
        }
    }

    // MSE at the content tap (relu4_2) and on the largest style Gram (relu4_1, 512 x 512).
    let losses = Tensor::new(ctx, [4, 1, 1], "bench losses")?;
    let h4 = s >> 3;
    let mse_shapes: Vec<(&str, [usize; 3])> =
        [("relu4_2", [512, h4, h4]), ("gram relu4_1", [512, 512, 1])].into_iter().filter(|(_, sh)| sh[1] > 0).collect();
    for (layer, sh) in mse_shapes {
        let n = sh.iter().product::<usize>();
        let x = rand_tensor(ctx, &mut rng, sh, -1.0, 1.0, "bench mse x")?;
        let t = rand_tensor(ctx, &mut rng, sh, -1.0, 1.0, "bench mse t")?;
        let dx = Tensor::new(ctx, sh, "bench mse dx")?;
        let shape = chw(sh[0], sh[1], sh[2]);
        rows.add(
            "mse_forward",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(2 * n),
            reduce::mse_forward(ctx, &x, &t, &losses, 0, 1.0),
        )?;
        rows.add(
            "mse_backward",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(3 * n),
            reduce::mse_backward(ctx, &x, &t, &dx, 1.0, false),
        )?;
        // What the renderer runs: loss and gradient in one pass.
        let op = reduce::mse_forward_backward(ctx, &x, &t, &losses, 0, 1.0, &dx, false);
        rows.add("mse_forward_backward", "", layer, shape, Unit::Byte, f4(3 * n), op)?;
    }

    // The image: TV, preprocess, Adam.
    let n = 3 * s * s;
    let shape = chw(3, s, s);
    let x = rand_tensor(ctx, &mut rng, [3, s, s], 0.0, 1.0, "bench image")?;
    let g = rand_tensor(ctx, &mut rng, [3, s, s], -1.0, 1.0, "bench image grad")?;
    let y = Tensor::new(ctx, [3, s, s], "bench image out")?;
    rows.add(
        "tv_forward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(n),
        reduce::tv_forward(ctx, &x, &losses, 1, 1.0),
    )?;
    rows.add(
        "tv_backward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(2 * n),
        reduce::tv_backward(ctx, &x, &y, 1.0, false),
    )?;
    let affine = Preprocess::Torch.affine();
    rows.add(
        "preprocess_forward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(2 * n),
        image::preprocess_forward(ctx, &affine, &x, &y),
    )?;
    rows.add(
        "preprocess_backward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(2 * n),
        image::preprocess_backward(ctx, &affine, &g, &y),
    )?;
    let adam = Adam::new(ctx, &x, &g, AdamConfig { clamp: Some((0.0, 1.0)), ..Default::default() })?;
    // Reads g, x, m, v; writes x, m, v.
    rows.add("adam_step", "clamp", "image", shape, Unit::Byte, f4(7 * n), adam.op)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// End to end and memory

/// The renderer's defaults (README "Defaults", torchvision convention).
fn default_settings() -> LossSettings {
    let style: Vec<Tap> = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
        .iter()
        .map(|n| Tap::parse(n).expect("valid layer name"))
        .collect();
    let (cw, sw, tw) = crate::render::default_weights_for(Preprocess::Torch);
    LossSettings {
        content_layers: vec![Tap::parse("relu4_2").expect("valid layer name")],
        style_layer_weights: vec![1.0; style.len()],
        style_layers: style,
        content_weight: cw,
        style_weight: sw,
        tv_weight: tw,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    }
}

/// (channels, height, width) of a tap's activation for an h x w input.
fn tap_shape(t: Tap, h: usize, w: usize) -> [usize; 3] {
    match t {
        Tap::Conv(i) | Tap::Relu(i) => {
            let (a, b) = vgg::conv_size(i, h, w);
            [t.channels(), a, b]
        }
        Tap::Pool(b) => [t.channels(), (h >> b) / 2, (w >> b) / 2],
    }
}

/// Net bytes: weights, biases and backward weights.
fn net_bytes(net: &Net) -> u64 {
    net.layers.iter().map(|(w, b, wt, _, _)| w.buf.size() + b.buf.size() + wt.buf.size()).sum()
}

/// The graph at h x w with random image and targets (the values do not change the work: no
/// kernel branches on data except max pooling's argmax).
fn build_graph(ctx: &Context, net: &Net, s: &LossSettings, h: usize, w: usize) -> Result<(Graph, Memory)> {
    crate::render::check_fits(ctx, w, h)?;
    let mut rng = Rng(0xE2E ^ (h * 65_537 + w) as u64);
    let mut targets = Targets { content: vec![], style: vec![] };
    for &t in &s.content_layers {
        targets.content.push(rand_tensor(ctx, &mut rng, tap_shape(t, h, w), 0.0, 1.0, "content target")?);
    }
    for &t in &s.style_layers {
        let c = t.channels();
        targets.style.push(rand_tensor(ctx, &mut rng, [c, c, 1], 0.0, 1e-2, "style target")?);
    }
    let init = rng.vec(3 * h * w, 0.0, 1.0);
    let adam = AdamConfig { lr: 0.02, clamp: Some((0.0, 1.0)), ..Default::default() };
    let graph = Graph::new(ctx, net, s, &targets, &init, h, w, adam)?;
    let target_bytes = targets.content.iter().chain(&targets.style).map(|t| t.buf.size()).sum();
    let mem = Memory {
        graph_bytes: graph.gpu_bytes(),
        texture_bytes: graph.texture_bytes(),
        net_bytes: net_bytes(net),
        target_bytes,
    };
    // The graph binds the targets' buffers (wgpu keeps them alive), so they may be dropped here.
    Ok((graph, mem))
}

/// The largest square size whose biggest activation fits one buffer binding.
fn largest_side(ctx: &Context) -> usize {
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    ((limit / (64 * 4)) as f64).sqrt().floor() as usize
}

fn e2e_row(
    ctx: &Context,
    net: &Net,
    s: &LossSettings,
    size: u32,
    iterations: u32,
    budget_s: f64,
    progress: &dyn Fn(&str),
) -> Result<E2eRow> {
    let largest = size == 0;
    let mut side = if largest { largest_side(ctx) } else { size as usize };
    // The largest that fits: shrink by 10% on an allocation failure (device memory, not only the
    // binding limit, decides).
    let (graph, memory) = loop {
        match build_graph(ctx, net, s, side, side) {
            Ok(g) => break g,
            Err(e @ (Error::TooLarge(_) | Error::Gpu(_))) if largest && side > 64 => {
                progress(&format!("e2e {side}x{side} does not fit ({e}); trying smaller"));
                side = side * 9 / 10;
            }
            Err(e) => return Err(e),
        }
    };
    let budget_ms = budget_s.max(0.0) * 1e3;
    let time = |k: u32| -> Result<f64> {
        let t = Instant::now();
        graph.step(ctx, k)?;
        ctx.wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let first = time(1)?; // builds pipelines lazily compiled by the driver
    let warm = if first > budget_ms { first } else { time(1)? };
    let max_k = if largest { iterations.min(3) } else { iterations };
    let fit = if warm > 0.0 { (budget_ms / warm).floor() } else { f64::from(max_k) };
    let k = (fit.min(f64::from(max_k)) as u32).max(max_k.min(2)).max(1);
    let ms = time(k)? / f64::from(k);
    let l = graph.read_losses(ctx)?;
    if !l.total().is_finite() {
        return Err(Error::Gpu(format!("e2e {side}x{side}: the loss became {} (a kernel is broken)", l.total())));
    }
    progress(&format!(
        "e2e {side}x{side}: {ms:.1} ms/iteration over {k}, {:.1} MiB of GPU buffers",
        mib(memory.total())
    ));
    Ok(E2eRow { requested: size, width: side, height: side, iterations: k, ms_per_iter: ms, memory })
}

// ------------------------------------------------------------------------------------------
// Output

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// The human-readable report.
pub fn table(r: &BenchReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "stylize bench, {}", r.date);
    let _ = writeln!(o, "adapter: {} ({}, {}), driver {}", r.adapter, r.backend, r.device_type, r.driver);
    if !r.kernels.is_empty() {
        let note = if r.timer_note.is_empty() { String::new() } else { format!(" ({})", r.timer_note) };
        let _ = writeln!(o, "kernel timer: {}{note}", r.timer);
    }
    if !r.kernels.is_empty() {
        let _ = writeln!(
            o,
            "peak: {:.1} GFLOP/s (peak_fma), {:.1} GB/s (peak_copy of {} MiB); submit + wait of an empty dispatch {:.3} ms\n",
            r.peak.gflops,
            r.peak.gbps,
            r.peak.copy_bytes >> 20,
            r.peak.overhead_ms
        );
        let _ = writeln!(
            o,
            "{:>5}  {:<22} {:<10} {:<13} {:<20} {:>4} {:<5} {:>11} {:>10} {:<7} {:>7}",
            "size", "kernel", "notes", "layer", "shape", "runs", "timer", "median ms", "rate", "", "% peak"
        );
        for k in &r.kernels {
            let _ = writeln!(
                o,
                "{:>5}  {:<22} {:<10} {:<13} {:<20} {:>4} {:<5} {:>11.4} {:>10.2} {:<7} {:>6.1}%",
                k.size,
                k.kernel,
                k.variant,
                k.layer,
                k.shape,
                k.runs,
                k.timer,
                k.median_ms,
                k.rate,
                unit_name(k.unit),
                k.peak_pct
            );
        }
        // Conv totals per size: what the convs of one iteration would cost at these rates.
        let mut sizes: Vec<u32> = r.kernels.iter().map(|k| k.size).collect();
        sizes.dedup();
        for s in sizes {
            let conv: Vec<&KernelRow> =
                r.kernels.iter().filter(|k| k.size == s && k.kernel.starts_with("conv3x3")).collect();
            let (fl, ms) = conv.iter().fold((0.0, 0.0), |(f, t), k| (f + k.work, t + k.median_ms));
            if ms > 0.0 {
                let _ =
                    writeln!(o, "{s:>5}  conv3x3 (distinct shapes, fwd + bwd): {:.1} GFLOP/s overall", fl / (ms * 1e6));
            }
        }
    }
    if !r.e2e.is_empty() {
        let _ = writeln!(o, "\nend to end: Graph::step (default layers, avg pool, random weights, Adam), wall clock");
        let _ = writeln!(
            o,
            "{:>11}  {:>6} {:>12} {:>10} {:>8} {:>9} {:>11} {:>10}",
            "size", "iters", "ms/iter", "graph MiB", "tex MiB", "net MiB", "target MiB", "total MiB"
        );
        for e in &r.e2e {
            let size = format!("{}x{}{}", e.width, e.height, if e.requested == 0 { "*" } else { "" });
            let _ = writeln!(
                o,
                "{size:>11}  {:>6} {:>12.2} {:>10.1} {:>8.1} {:>9.1} {:>11.2} {:>10.1}",
                e.iterations,
                e.ms_per_iter,
                mib(e.memory.graph_bytes),
                mib(e.memory.texture_bytes),
                mib(e.memory.net_bytes),
                mib(e.memory.target_bytes),
                mib(e.memory.total())
            );
        }
        if r.e2e.iter().any(|e| e.requested == 0) {
            let _ = writeln!(o, "  * the largest size that fits this adapter");
        }
    }
    if !r.memory.is_empty() {
        let _ = writeln!(o, "\nGPU buffers held by a render (graph built, nothing run)");
        for m in &r.memory {
            match &m.memory {
                Ok(b) => {
                    let _ = writeln!(
                        o,
                        "{:>11}  {:>10.1} MiB (graph {:.1} [estimated {:.1}], textures {:.1}, net {:.1}, targets {:.2})",
                        format!("{0}x{0}", m.size),
                        mib(b.total()),
                        mib(b.graph_bytes),
                        mib(m.estimated_graph_bytes),
                        mib(b.texture_bytes),
                        mib(b.net_bytes),
                        mib(b.target_bytes)
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        o,
                        "{:>11}  graph estimated at {:.1} MiB; does not fit here: {e}",
                        format!("{0}x{0}", m.size),
                        mib(m.estimated_graph_bytes)
                    );
                }
            }
        }
    }
    for e in &r.errors {
        let _ = writeln!(o, "skipped: {e}");
    }
    o
}

fn js(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn jn(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_memory(m: &Memory) -> String {
    format!(
        "{{\"graph_bytes\": {}, \"texture_bytes\": {}, \"net_bytes\": {}, \"target_bytes\": {}, \"total_bytes\": {}}}",
        m.graph_bytes,
        m.texture_bytes,
        m.net_bytes,
        m.target_bytes,
        m.total()
    )
}

/// The report as one JSON object (for scripts: tools/compare_bench.py).
pub fn to_json(r: &BenchReport) -> String {
    let mut o = String::from("{\n");
    let _ = writeln!(
        o,
        "  \"adapter\": {}, \"backend\": {}, \"device_type\": {}, \"driver\": {},",
        js(&r.adapter),
        js(&r.backend),
        js(&r.device_type),
        js(&r.driver)
    );
    let _ =
        writeln!(o, "  \"timer\": {}, \"timer_note\": {}, \"date\": {},", js(&r.timer), js(&r.timer_note), js(&r.date));
    let _ = writeln!(
        o,
        "  \"peak\": {{\"gflops\": {}, \"gbps\": {}, \"copy_bytes\": {}, \"overhead_ms\": {}}},",
        jn(r.peak.gflops),
        jn(r.peak.gbps),
        r.peak.copy_bytes,
        jn(r.peak.overhead_ms)
    );
    o.push_str("  \"kernels\": [");
    for (i, k) in r.kernels.iter().enumerate() {
        let _ = write!(
            o,
            "{}\n    {{\"size\": {}, \"kernel\": {}, \"variant\": {}, \"layer\": {}, \"shape\": {}, \"runs\": {}, \"timer\": {}, \"median_ms\": {}, \"min_ms\": {}, \"{}\": {}, \"{}\": {}, \"peak_pct\": {}}}",
            if i > 0 { "," } else { "" },
            k.size,
            js(&k.kernel),
            js(&k.variant),
            js(&k.layer),
            js(&k.shape),
            k.runs,
            js(k.timer),
            jn(k.median_ms),
            jn(k.min_ms),
            if k.unit == Unit::Flop { "flops" } else { "bytes" },
            jn(k.work),
            if k.unit == Unit::Flop { "gflops" } else { "gbps" },
            jn(k.rate),
            jn(k.peak_pct)
        );
    }
    o.push_str("\n  ],\n  \"e2e\": [");
    for (i, e) in r.e2e.iter().enumerate() {
        let _ = write!(
            o,
            "{}\n    {{\"size\": {}, \"requested\": {}, \"width\": {}, \"height\": {}, \"iterations\": {}, \"ms_per_iter\": {}, \"memory\": {}}}",
            if i > 0 { "," } else { "" },
            e.width.max(e.height),
            e.requested,
            e.width,
            e.height,
            e.iterations,
            jn(e.ms_per_iter),
            json_memory(&e.memory)
        );
    }
    o.push_str("\n  ],\n  \"memory\": [");
    for (i, m) in r.memory.iter().enumerate() {
        let body = match &m.memory {
            Ok(b) => json_memory(b),
            Err(e) => format!("{{\"error\": {}}}", js(e)),
        };
        let _ = write!(
            o,
            "{}\n    {{\"size\": {}, \"estimated_graph_bytes\": {}, \"memory\": {body}}}",
            if i > 0 { "," } else { "" },
            m.size,
            m.estimated_graph_bytes
        );
    }
    o.push_str("\n  ],\n  \"errors\": [");
    o.push_str(&r.errors.iter().map(|e| js(e)).collect::<Vec<_>>().join(", "));
    o.push_str("]\n}\n");
    o
}

/// Prints the report to stdout: JSON when `json`, else the table.
pub fn print(r: &BenchReport, json: bool) {
    if json {
        print!("{}", to_json(r));
    } else {
        print!("{}", table(r));
    }
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
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

    #[test]
    fn median_and_json_strings() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(js("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(jn(f64::NAN), "null");
        assert_eq!(utc_now().len(), 20);
    }

    #[test]
    fn tap_shapes() {
        assert_eq!(tap_shape(Tap::parse("relu4_2").unwrap(), 64, 48), [512, 8, 6]);
        assert_eq!(tap_shape(Tap::parse("pool1").unwrap(), 64, 48), [64, 32, 24]);
    }
}
