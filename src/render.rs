//! `stylize render`: from files and options to a stylised image on disk.

use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::pool::Pool;
use crate::gpu::{AdapterChoice, Context, Tensor};
use crate::image_io::{self, DecodeLimits, Planar};
use crate::runner::{compute_targets, ConvWeights, Graph, LossSettings, Losses, Net, Targets};
use crate::vgg::{Preprocess, Tap};
use crate::weights;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Steps between checks of the losses for NaN/Inf when printing is rarer.
pub const NAN_CHECK_EVERY: u32 = 25;

/// Smallest input image side accepted.
pub const MIN_SIDE: u32 = 8;

/// How the image starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Content,
    Noise,
    Image(PathBuf),
}

impl Init {
    pub fn parse(s: &str) -> Init {
        match s {
            "content" => Init::Content,
            "noise" | "random" => Init::Noise,
            p => Init::Image(PathBuf::from(p)),
        }
    }
}

/// Where the network weights come from.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsSource {
    /// torchvision's VGG19, from the cache, downloaded on first use.
    Default,
    File(PathBuf),
    /// Seeded random weights (for tests and benchmarks; the output is not a real stylisation).
    Random(u64),
}

impl WeightsSource {
    pub fn parse(s: &str) -> Result<WeightsSource> {
        if s == "random" {
            return Ok(WeightsSource::Random(0));
        }
        if let Some(seed) = s.strip_prefix("random:") {
            return seed
                .parse()
                .map(WeightsSource::Random)
                .map_err(|_| Error::InvalidArgument(format!("--weights {s}: expected random:SEED with an integer seed")));
        }
        Ok(WeightsSource::File(PathBuf::from(s)))
    }
}

/// Every option of a render; `main.rs` fills it from the command line.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub content: PathBuf,
    pub style: PathBuf,
    pub output: PathBuf,
    pub size: u32,
    pub steps: u32,
    pub lr: f32,
    /// None: the default of the weights' convention (see [`default_weights_for`]).
    pub content_weight: Option<f32>,
    pub style_weight: Option<f32>,
    pub tv_weight: Option<f32>,
    pub content_layers: Vec<String>,
    pub style_layers: Vec<String>,
    pub style_layer_weights: Option<Vec<f32>>,
    pub pool: Pool,
    pub init: Init,
    pub seed: u64,
    pub print_every: u32,
    pub save_every: u32,
    pub weights: WeightsSource,
    /// None: recognised from the weights file (torchvision if unknown).
    pub preprocess: Option<Preprocess>,
    pub adapter: String,
    /// Progress output on stderr.
    pub quiet: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            content: PathBuf::new(),
            style: PathBuf::new(),
            output: PathBuf::from("out.png"),
            size: 512,
            steps: 500,
            lr: 0.02,
            content_weight: None,
            style_weight: None,
            tv_weight: None,
            content_layers: vec!["relu4_2".into()],
            style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
            style_layer_weights: None,
            pool: Pool::Avg,
            init: Init::Content,
            seed: 0,
            print_every: 50,
            save_every: 0,
            weights: WeightsSource::Default,
            preprocess: None,
            adapter: String::new(),
            quiet: false,
        }
    }
}

/// (content, style, tv) weights the peers use for each input convention, in our normalisation
/// (content: mean squared error; style: mean squared error of Grams normalised by C*H*W; TV:
/// mean squared neighbour difference of [0,1] pixels), which is the PyTorch tutorial's and
/// jcjohnson/neural-style's normalisation for content and style.
/// - torchvision weights: content 1, style 1e6 (PyTorch's neural style tutorial).
/// - Caffe weights: content 5, style 100 (jcjohnson/neural-style's defaults).
/// - TV: see README ("Defaults").
pub fn default_weights_for(p: Preprocess) -> (f32, f32, f32) {
    match p {
        Preprocess::Torch => (1.0, 1e6, 1e2),
        Preprocess::Caffe => (5.0, 100.0, 1e4),
    }
}

/// What a finished render reports.
#[derive(Clone, Debug)]
pub struct RenderReport {
    pub adapter: String,
    pub width: usize,
    pub height: usize,
    pub steps: u32,
    pub first: Losses,
    pub last: Losses,
    pub ms_per_iter: f64,
}

fn check_finite(name: &str, v: f32, positive: bool) -> Result<()> {
    if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
        let want = if positive { "> 0" } else { ">= 0" };
        return Err(Error::InvalidArgument(format!("{name} must be a finite number {want}, got {v}")));
    }
    Ok(())
}

fn parse_taps(names: &[String], what: &str) -> Result<Vec<Tap>> {
    let taps = names.iter().filter(|n| !n.trim().is_empty()).map(|n| Tap::parse(n)).collect::<Result<Vec<_>>>()?;
    let _ = what;
    Ok(taps)
}

/// Loads the weights the layers need and decides the input convention.
pub fn load_weights(src: &WeightsSource, needed: usize, progress: bool) -> Result<(Vec<ConvWeights>, Option<Preprocess>, String)> {
    let w = match src {
        WeightsSource::Random(seed) => weights::random(*seed, needed),
        WeightsSource::File(p) => weights::load(p, needed)?,
        WeightsSource::Default => {
            let p = weights::default_weights(progress)?;
            weights::load(&p, needed)?
        }
    };
    let conv = w
        .layers
        .into_iter()
        .map(|l| ConvWeights { cin: l.cin, cout: l.cout, weight: l.weight, bias: l.bias })
        .collect();
    let pre = w.convention.map(|c| match c {
        weights::Convention::Torch => Preprocess::Torch,
        weights::Convention::Caffe => Preprocess::Caffe,
    });
    Ok((conv, pre, w.source))
}

/// The working size: longest side `size`, aspect kept.
pub fn working_size(w: u32, h: u32, size: u32) -> (usize, usize) {
    let s = size as f64 / w.max(h) as f64;
    (((w as f64 * s).round().max(1.0)) as usize, ((h as f64 * s).round().max(1.0)) as usize)
}

/// Refuses early, with the largest size that fits, when the biggest activation (64 channels at
/// full resolution) would not fit one GPU buffer binding.
pub fn check_fits(ctx: &Context, w: usize, h: usize) -> Result<()> {
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let need = 64 * w as u64 * h as u64 * 4;
    if need > limit {
        let scale = (limit as f64 / need as f64).sqrt();
        let largest = ((w.max(h) as f64) * scale).floor() as u64;
        return Err(Error::TooLarge(format!(
            "a {w}x{h} render needs {} MiB per activation buffer but {} allows {} MiB; the largest \
             --size that fits this adapter is {largest}",
            need >> 20,
            ctx.info.name,
            limit >> 20
        )));
    }
    Ok(())
}

/// Loads an image file, or one of the built-in synthetic samples `builtin:photo` and
/// `builtin:painting` (768x512, so a first render needs no files at all).
pub fn load_input(p: &Path, limits: &DecodeLimits) -> Result<Planar> {
    match p.to_str() {
        Some("builtin:photo") => Ok(image_io::synthetic_photo(768, 512, 1)),
        Some("builtin:painting") => Ok(image_io::synthetic_painting(768, 512, 2)),
        _ => Ok(image_io::load_image(p, limits)?),
    }
}

fn planar_to_vec(p: &Planar) -> Vec<f32> {
    p.data.clone()
}

fn snapshot_path(out: &Path, step: u32) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let ext = out.extension().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "png".into());
    out.with_file_name(format!("{stem}_{step:05}.{ext}"))
}

struct Progress {
    quiet: bool,
    tty: bool,
    start: Instant,
    total: u32,
}

impl Progress {
    fn update(&self, step: u32, losses: Option<&Losses>) {
        if self.quiet {
            return;
        }
        let el = self.start.elapsed().as_secs_f64();
        let rate = if el > 0.0 { step as f64 / el } else { 0.0 };
        let width = 24usize;
        let filled = (width as u64 * step as u64 / self.total.max(1) as u64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let mut line = format!("[{bar}] step {step}/{} {rate:.2} it/s", self.total);
        if let Some(l) = losses {
            line += &format!(
                " | loss {:.4e} (content {:.3e}, style {:.3e}, tv {:.3e})",
                l.total(),
                l.content_total(),
                l.style_total(),
                l.tv
            );
        }
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}");
            if step == self.total {
                let _ = writeln!(e);
            }
        } else if losses.is_some() || step == self.total {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }
}

/// Everything set up for optimisation: device, network, targets, graph.
pub struct Session {
    pub ctx: Context,
    pub graph: Graph,
    pub settings: LossSettings,
    pub width: usize,
    pub height: usize,
    /// Where the weights came from (for the log and the PNG's settings).
    pub source: String,
    _net: Net,
}

/// Validates the options, loads images and weights, builds the graph. Cheap checks come first:
/// nothing slow happens before the arguments are known to be good.
pub fn prepare(o: &RenderOptions) -> Result<Session> {
    if o.size == 0 {
        return Err(Error::InvalidArgument("--size must be at least 1".into()));
    }
    check_finite("--lr", o.lr, true)?;
    for (n, v) in [("--content-weight", o.content_weight), ("--style-weight", o.style_weight), ("--tv-weight", o.tv_weight)] {
        if let Some(v) = v {
            check_finite(n, v, false)?;
        }
    }
    let content_layers = parse_taps(&o.content_layers, "content")?;
    let style_layers = parse_taps(&o.style_layers, "style")?;
    let style_layer_weights = match &o.style_layer_weights {
        Some(w) => w.clone(),
        None => vec![1.0; style_layers.len()],
    };
    if !o.output.as_os_str().is_empty() {
        image_io::check_output_path(&o.output)?;
    }
    let limits = DecodeLimits::default();
    let content = load_input(&o.content, &limits)?;
    let style = load_input(&o.style, &limits)?;
    for (p, i) in [(&o.content, &content), (&o.style, &style)] {
        if i.width < MIN_SIDE || i.height < MIN_SIDE {
            return Err(Error::InvalidArgument(format!(
                "{}: the image is {}x{}, too small to carry content or style (at least {MIN_SIDE}x{MIN_SIDE} pixels)",
                p.display(),
                i.width,
                i.height
            )));
        }
    }
    let (w, h) = working_size(content.width, content.height, o.size);
    let (sw, sh) = working_size(style.width, style.height, o.size);
    // The adapter's limits decide the largest size: refuse before any large allocation.
    let ctx = Context::new(&AdapterChoice::parse(&o.adapter))?;
    check_fits(&ctx, w, h)?;
    check_fits(&ctx, sw, sh)?;
    let content = image_io::resize_exact(&content, w as u32, h as u32);
    let style = image_io::resize_exact(&style, sw as u32, sh as u32);
    let init = match &o.init {
        Init::Content => planar_to_vec(&content),
        Init::Noise => {
            let mut s = o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..3 * w * h)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect()
        }
        Init::Image(p) => {
            let i = load_input(p, &limits)?;
            planar_to_vec(&image_io::resize_exact(&i, w as u32, h as u32))
        }
    };

    let mut settings = LossSettings {
        content_layers,
        style_layers,
        style_layer_weights,
        content_weight: 0.0,
        style_weight: 0.0,
        tv_weight: 0.0,
        pool: o.pool,
        preprocess: Preprocess::Torch,
    };
    settings.validate_layers()?;
    let needed = settings.convs_needed();

    let (convs, recognised, source) = load_weights(&o.weights, needed, !o.quiet)?;
    settings.preprocess = o.preprocess.or(recognised).unwrap_or(Preprocess::Torch);
    let (dc, ds, dt) = default_weights_for(settings.preprocess);
    settings.content_weight = o.content_weight.unwrap_or(dc);
    settings.style_weight = o.style_weight.unwrap_or(ds);
    settings.tv_weight = o.tv_weight.unwrap_or(dt);
    settings.validate()?;

    if !o.quiet {
        eprintln!(
            "stylize: {}x{} on {} | weights {} ({:?} preprocessing) | {} steps",
            w,
            h,
            ctx.describe(),
            source,
            settings.preprocess,
            o.steps
        );
    }
    let net = Net::new(&ctx, &convs)?;
    let tc = compute_targets(&ctx, &net, &settings, &content.data, h, w, true, false)?;
    let ts = compute_targets(&ctx, &net, &settings, &style.data, sh, sw, false, true)?;
    let targets = Targets { content: tc.content, style: ts.style };
    let adam = AdamConfig { lr: o.lr, clamp: Some((0.0, 1.0)), ..Default::default() };
    let graph = Graph::new(&ctx, &net, &settings, &targets, &init, h, w, adam)?;

    Ok(Session { ctx, graph, settings, width: w, height: h, source, _net: net })
}

/// Runs a whole render and writes the output atomically.
pub fn render(o: &RenderOptions) -> Result<RenderReport> {
    let Session { ctx, graph, settings, width: w, height: h, source, _net } = prepare(o)?;
    let init_copy = graph.read_image(&ctx)?;
    graph.evaluate(&ctx)?;
    let first = graph.read_losses(&ctx)?;
    let text = settings_text(o, &settings, w, h, &source);
    let progress = Progress { quiet: o.quiet, tty: std::io::stderr().is_terminal(), start: Instant::now(), total: o.steps };
    let mut last = first.clone();
    // Non-finite guard: every `check` steps the losses are read (a few bytes) and, when finite,
    // the image they were computed from (copied on the GPU just before that step's update)
    // becomes the last good image; a NaN/Inf ends the render with that image saved.
    let check = match o.print_every {
        0 => NAN_CHECK_EVERY,
        p => p.min(NAN_CHECK_EVERY),
    };
    let mut candidate = Tensor::new(&ctx, graph.x.shape, "candidate image")?;
    let mut good = Tensor::from_slice(&ctx, graph.x.shape, &init_copy, "last good image")?;
    let mut good_step = 0;
    interrupt::install();
    // Fault injection for the tests: poison the image with NaN before this step.
    let fault_at: Option<u32> = std::env::var("STYLIZE_FAULT_NAN_AT").ok().and_then(|v| v.parse().ok());
    let t0 = Instant::now();
    let mut done = 0;
    for step in 1..=o.steps {
        if interrupt::requested() {
            let mut data = graph.read_image(&ctx)?;
            if data.iter().any(|v| !v.is_finite()) {
                data = good.read(&ctx)?;
            }
            save(&o.output, data, w, h, &text, done)?;
            return Err(Error::Interrupted { step: done, saved: Some(o.output.display().to_string()) });
        }
        let print = o.print_every > 0 && (step % o.print_every == 0 || step == o.steps);
        let checking = print || step % check == 0 || step == o.steps;
        if fault_at == Some(step) {
            graph.x.fill(&ctx, f32::NAN);
        }
        graph.step_copying(&ctx, checking.then_some(&candidate))?;
        ctx.wait()?;
        done = step;
        if checking {
            last = graph.read_losses(&ctx)?;
            if !last.total().is_finite() {
                save(&o.output, good.read(&ctx)?, w, h, &text, good_step)?;
                return Err(Error::NonFinite { step, saved: Some(format!("{} (step {good_step})", o.output.display())) });
            }
            std::mem::swap(&mut candidate, &mut good);
            good_step = step - 1;
        }
        progress.update(step, print.then_some(&last));
        if o.save_every > 0 && step % o.save_every == 0 && step != o.steps {
            let p = snapshot_path(&o.output, step);
            save(&p, graph.read_image(&ctx)?, w, h, &text, step)?;
        }
    }
    let ms_per_iter = t0.elapsed().as_secs_f64() * 1000.0 / o.steps.max(1) as f64;
    if o.steps > 0 {
        // The losses of the final image (one more forward pass, no update).
        graph.evaluate(&ctx)?;
        last = graph.read_losses(&ctx)?;
    }
    save(&o.output, graph.read_image(&ctx)?, w, h, &text, o.steps)?;
    Ok(RenderReport { adapter: ctx.describe(), width: w, height: h, steps: o.steps, first, last, ms_per_iter })
}

fn save(path: &Path, data: Vec<f32>, w: usize, h: usize, text: &[(String, String)], step: u32) -> Result<()> {
    let img = Planar { width: w as u32, height: h as u32, data };
    let mut t: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = step.to_string();
    t.push(("stylize:step", &s));
    image_io::save_image(path, &img, &t)?;
    Ok(())
}

/// The settings a PNG records so a result can be reproduced.
fn settings_text(o: &RenderOptions, s: &LossSettings, w: usize, h: usize, source: &str) -> Vec<(String, String)> {
    let names = |t: &[Tap]| t.iter().map(|t| t.name()).collect::<Vec<_>>().join(",");
    let cmd = format!(
        "stylize render {:?} {:?} -o {:?} --size {} --steps {} --lr {} --content-weight {} --style-weight {} \
         --tv-weight {} --content-layers {} --style-layers {} --style-layer-weights {} --pool {} --init {} \
         --seed {} --preprocess {}",
        o.content.display().to_string(),
        o.style.display().to_string(),
        o.output.display().to_string(),
        o.size,
        o.steps,
        o.lr,
        s.content_weight,
        s.style_weight,
        s.tv_weight,
        names(&s.content_layers),
        names(&s.style_layers),
        s.style_layer_weights.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","),
        if s.pool == Pool::Avg { "avg" } else { "max" },
        match &o.init {
            Init::Content => "content".to_string(),
            Init::Noise => "noise".to_string(),
            Init::Image(p) => format!("{:?}", p.display().to_string()),
        },
        o.seed,
        if s.preprocess == Preprocess::Torch { "torch" } else { "caffe" },
    );
    vec![
        ("Software".into(), format!("stylize {}", env!("CARGO_PKG_VERSION"))),
        ("stylize:command".into(), cmd),
        ("stylize:weights".into(), source.to_string()),
        ("stylize:size".into(), format!("{w}x{h}")),
    ]
}

/// Losses and image gradient at the initial image, without optimising (for comparisons with
/// other implementations: `stylize evaluate`, tools/torch_compare.py).
pub fn evaluate(o: &RenderOptions) -> Result<(Losses, Vec<f32>, usize, usize)> {
    let sess = prepare(o)?;
    sess.graph.evaluate(&sess.ctx)?;
    let l = sess.graph.read_losses(&sess.ctx)?;
    let g = sess.graph.grad.read(&sess.ctx)?;
    Ok((l, g, sess.width, sess.height))
}

/// Ctrl-C / SIGTERM: the first one asks the render loop to save and stop; the loop only starts
/// listening once optimisation begins, so earlier (e.g. during a download) they stop at once.
pub mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};
    static REQUESTED: AtomicBool = AtomicBool::new(false);
    static INSTALLED: AtomicBool = AtomicBool::new(false);

    pub fn install() {
        if !INSTALLED.swap(true, Ordering::SeqCst) {
            // If a handler cannot be installed the default behaviour (terminate) remains.
            let _ = ctrlc::set_handler(|| {
                if REQUESTED.swap(true, Ordering::SeqCst) {
                    // A second signal: the user insists; stop without saving.
                    std::process::exit(130);
                }
            });
        }
    }

    pub fn requested() -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }
}
