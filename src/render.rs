//! `stylize render`: from files and options to stylised images on disk.
//!
//! A render is a list of *frames* (one content image, or every image of a folder / list) times a
//! list of *scales* (coarse to fine, `--scales`); each (frame, scale) pair is a *stage*: a
//! [`Graph`] at that size, optimised for that scale's steps, initialised from the previous
//! scale's result upsampled (or, for a frame's first scale, from `--init` or, with
//! `--temporal-init`, from the previous frame's result). The network is uploaded once per render
//! and the (blended) style targets once per style size, then reused by every frame.
//!
//! Post-processing (`--original-colors`) touches only the images written to disk, never the
//! optimisation; `--avg-decay` makes those images the running average of the iterates.

use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::ema::Ema;
use crate::gpu::pool::Pool;
use crate::gpu::{AdapterChoice, Context, Tensor};
use crate::image_io::{self, DecodeLimits, Planar};
use crate::runner::{compute_targets, ConvWeights, Graph, LbfgsConfig, LossSettings, Losses, Net, Targets};
use crate::vgg::{Preprocess, Tap};
use crate::weights;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Steps between checks of the losses for NaN/Inf when printing is rarer.
pub const NAN_CHECK_EVERY: u32 = 25;

/// Smallest input image side accepted.
pub const MIN_SIDE: u32 = 8;

/// Adam's default learning rate ([0,1]-pixel units; crowsonkb/style-transfer-pytorch's).
pub const ADAM_LR: f32 = 0.02;
/// L-BFGS's default step length (jcjohnson/neural-style's and torch.optim.LBFGS's).
pub const LBFGS_LR: f32 = 1.0;

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

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    Adam,
    /// L-BFGS without line search, as jcjohnson/neural-style (runner::Graph::set_lbfgs).
    Lbfgs,
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
    /// One weight per style image (normalised to sum 1); None: equal weights.
    pub style_blend_weights: Option<Vec<f32>>,
    /// The style image's longest side is this times the output's (at every scale).
    pub style_scale: f32,
    pub output: PathBuf,
    /// Longest side of the output (the last scale).
    pub size: u32,
    /// Number of scales, spaced geometrically from `initial_size` to `size` (1: just `size`).
    pub scales: u32,
    pub initial_size: u32,
    /// Steps at each scale (one value per scale); None: `steps` at every scale.
    pub scale_steps: Option<Vec<u32>>,
    pub steps: u32,
    pub optimizer: Optimizer,
    pub lbfgs_history: usize,
    /// None: [`ADAM_LR`] for Adam, [`LBFGS_LR`] for L-BFGS.
    pub lr: Option<f32>,
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
    /// Each frame after the first starts from the previous frame's result.
    pub temporal_init: bool,
    /// Keep the content's colours: the output's luminance with the content's chrominance (YIQ).
    pub original_colors: bool,
    /// Match the style images' colour mean and covariance to the content's before optimising.
    pub color_match: bool,
    /// Decay of the exponential moving average of the iterates that is written out (0: off).
    pub avg_decay: f64,
    pub print_every: u32,
    pub save_every: u32,
    /// Write the current image here (atomically) every `preview_every` steps.
    pub preview: Option<PathBuf>,
    pub preview_every: u32,
    /// Append one JSON line of losses per printed step here (the file is truncated first).
    pub log_json: Option<PathBuf>,
    pub weights: WeightsSource,
    /// None: recognised from the weights file (torchvision if unknown).
    pub preprocess: Option<Preprocess>,
    pub adapter: String,
    /// Exact tiled rendering for outputs that do not fit the GPU (see src/tiled.rs).
    pub tile: TileMode,
    /// GPU memory budget in MiB for `--tile auto` (None: only the adapter's buffer limits).
    pub max_gpu_memory: Option<u64>,
    /// Progress output on stderr.
    pub quiet: bool,
}

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

/// Host memory a tiled render may use for its image-sized buffers (image, gradient, Adam's
/// moments, the last good copy, content targets): beyond this, refuse rather than swap.
pub const MAX_HOST_BYTES: u64 = 32 << 30;

/// Whether (and with which tile size) an h x w image must be tiled on `ctx` under `o`.
pub fn decide_tile(ctx: &Context, s: &LossSettings, o: &RenderOptions, w: usize, h: usize) -> Result<Option<usize>> {
    let max_binding = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let budget = o.max_gpu_memory.map_or(u64::MAX, |m| m << 20);
    let t = match o.tile {
        TileMode::Off => {
            check_fits(ctx, w, h)?;
            return Ok(None);
        }
        TileMode::Size(n) => Some(n),
        TileMode::Auto => crate::tiled::choose_tile(s, h, w, budget, max_binding)?,
    };
    if t.is_some() {
        let host = 3 * w as u64 * h as u64 * 4 * 6 + crate::tiled::graph_bytes(s, h, w).0 / 4;
        if host > MAX_HOST_BYTES {
            return Err(Error::TooLarge(format!(
                "a {w}x{h} render needs about {} GiB of host memory even when tiled (limit {} GiB); use a smaller --size",
                host >> 30,
                MAX_HOST_BYTES >> 30
            )));
        }
    }
    Ok(t)
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            content: PathBuf::new(),
            content_list: vec![],
            styles: vec![],
            style_blend_weights: None,
            style_scale: 1.0,
            output: PathBuf::from("out.png"),
            size: 512,
            scales: 1,
            initial_size: 128,
            scale_steps: None,
            steps: 500,
            optimizer: Optimizer::Adam,
            lbfgs_history: 100,
            lr: None,
            content_weight: None,
            style_weight: None,
            tv_weight: None,
            content_layers: vec!["relu4_2".into()],
            style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
            style_layer_weights: None,
            pool: Pool::Avg,
            init: Init::Content,
            seed: 0,
            temporal_init: false,
            original_colors: false,
            color_match: false,
            avg_decay: 0.0,
            print_every: 50,
            save_every: 0,
            preview: None,
            preview_every: 10,
            log_json: None,
            weights: WeightsSource::Default,
            preprocess: None,
            adapter: String::new(),
            tile: TileMode::Auto,
            max_gpu_memory: None,
            quiet: false,
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
/// mean squared neighbour difference of [0,1] pixels), which is the PyTorch tutorial's and
/// jcjohnson/neural-style's normalisation for content and style.
/// - torchvision weights: content 1, style 1e6 (PyTorch's neural style tutorial).
/// - Caffe weights: content 5 (jcjohnson/neural-style), style 20 and TV 1e5, tuned by eye on
///   real renders with the Caffe layers available here (style relu1_1..relu3_1, content relu3_2;
///   with jcjohnson's style weight 100 the content's layout nearly vanished at 128 px).
/// - TV: see README ("Defaults").
pub fn default_weights_for(p: Preprocess) -> (f32, f32, f32) {
    match p {
        Preprocess::Torch => (1.0, 1e6, 1e2),
        Preprocess::Caffe => (5.0, 20.0, 1e5),
    }
}

/// One stage (one scale of one frame) of a render.
#[derive(Clone, Debug)]
pub struct StageReport {
    pub frame: usize,
    pub scale: usize,
    pub width: usize,
    pub height: usize,
    pub steps: u32,
    /// Losses of the stage's initial image.
    pub first: Losses,
    /// Losses of the stage's result (the average when `--avg-decay` is on), before any colour
    /// post-processing.
    pub last: Losses,
    pub ms_per_iter: f64,
    /// Tiles per step (1: untiled).
    pub tiles: usize,
}

/// What a finished render reports.
#[derive(Clone, Debug)]
pub struct RenderReport {
    pub adapter: String,
    /// Size of the last output.
    pub width: usize,
    pub height: usize,
    /// Optimiser steps in all, over every scale and frame.
    pub steps: u32,
    /// Losses at the start of the first stage and at the end of the last.
    pub first: Losses,
    pub last: Losses,
    pub ms_per_iter: f64,
    /// Every stage in order (frame-major).
    pub stages: Vec<StageReport>,
    /// The images written, one per frame.
    pub outputs: Vec<PathBuf>,
    /// Forward passes spent on style targets (one per style image and style size): the targets
    /// are computed once and reused by every frame unless `--color-match` ties them to a frame.
    pub style_target_passes: usize,
}

fn check_finite(name: &str, v: f32, positive: bool) -> Result<()> {
    if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
        let want = if positive { "> 0" } else { ">= 0" };
        return Err(Error::InvalidArgument(format!("{name} must be a finite number {want}, got {v}")));
    }
    Ok(())
}

fn parse_taps(names: &[String]) -> Result<Vec<Tap>> {
    names.iter().filter(|n| !n.trim().is_empty()).map(|n| Tap::parse(n)).collect::<Result<Vec<_>>>()
}

/// Loads the weights the layers need and decides the input convention.
pub fn load_weights(
    src: &WeightsSource,
    needed: usize,
    progress: bool,
) -> Result<(Vec<ConvWeights>, Option<Preprocess>, String)> {
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

/// The longest side at each of `n` scales, spaced geometrically from `initial` to `last`
/// (crowsonkb/style-transfer-pytorch spaces them by sqrt(2); here the count is chosen).
pub fn scale_sizes(initial: u32, last: u32, n: u32) -> Vec<u32> {
    if n <= 1 {
        return vec![last];
    }
    let r = last as f64 / initial as f64;
    (0..n)
        .map(|k| {
            if k == n - 1 {
                last
            } else {
                (initial as f64 * r.powf(k as f64 / (n - 1) as f64)).round().max(1.0) as u32
            }
        })
        .collect()
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

fn load_checked(p: &Path, limits: &DecodeLimits) -> Result<Planar> {
    let i = load_input(p, limits)?;
    if i.width < MIN_SIDE || i.height < MIN_SIDE {
        return Err(Error::InvalidArgument(format!(
            "{}: the image is {}x{}, too small to carry content or style (at least {MIN_SIDE}x{MIN_SIDE} pixels)",
            p.display(),
            i.width,
            i.height
        )));
    }
    Ok(i)
}

/// Seeded uniform noise in [0,1) (xorshift64): the same seed gives the same image everywhere.
pub fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn snapshot_path(out: &Path, step: u32) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let ext = out.extension().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "png".into());
    out.with_file_name(format!("{stem}_{step:05}.{ext}"))
}

// ---------------------------------------------------------------------------------------------
// Colour: luminance-only transfer and colour matching
// ---------------------------------------------------------------------------------------------

/// `--original-colors` (jcjohnson/neural-style's `-original_colors 1`): the luminance (Y of YIQ)
/// of `result` with the chrominance (I, Q) of `content` (same size), back to RGB, clamped to
/// [0,1] (a bright luminance under a saturated colour can leave the RGB gamut).
pub fn transfer_luminance(result: &Planar, content: &Planar) -> Planar {
    assert_eq!((result.width, result.height), (content.width, content.height), "transfer_luminance: sizes differ");
    let n = result.plane_len();
    let mut yiq = image_io::rgb_to_yiq(content);
    let y = image_io::rgb_to_yiq(result);
    yiq.data[..n].copy_from_slice(&y.data[..n]);
    let mut out = image_io::yiq_to_rgb(&yiq);
    for v in &mut out.data {
        *v = v.clamp(0.0, 1.0);
    }
    out
}

/// Mean (3) and covariance (3x3) of an image's RGB values, in f64.
pub fn color_stats(img: &Planar) -> ([f64; 3], [[f64; 3]; 3]) {
    let n = img.plane_len();
    let ch = |c: usize| &img.data[c * n..(c + 1) * n];
    let mut mean = [0.0; 3];
    for (c, m) in mean.iter_mut().enumerate() {
        *m = ch(c).iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    }
    let mut cov = [[0.0; 3]; 3];
    for a in 0..3 {
        for b in a..3 {
            let s: f64 = ch(a).iter().zip(ch(b)).map(|(&x, &y)| (x as f64 - mean[a]) * (y as f64 - mean[b])).sum();
            cov[a][b] = s / n as f64;
            cov[b][a] = cov[a][b];
        }
    }
    (mean, cov)
}

/// Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations: (eigenvalues,
/// eigenvectors as the columns of V), so that m = V diag(l) V^T.
pub fn symmetric_eigen3(m: &[[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = *m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        let scale = a[0][0].powi(2) + a[1][1].powi(2) + a[2][2].powi(2);
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for (p, q) in [(0usize, 1usize), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            // The rotation that zeroes a[p][q] (Golub & Van Loan, algorithm 8.5.1).
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // a = J^T a J with J the rotation in the (p, q) plane.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = [0, 1, 2].map(|k| c * rp[k] - s * rq[k]);
            a[q] = [0, 1, 2].map(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// V diag(f(l)) V^T for a symmetric m = V diag(l) V^T.
fn symmetric_fn3(m: &[[f64; 3]; 3], f: impl Fn(f64) -> f64) -> [[f64; 3]; 3] {
    let (l, v) = symmetric_eigen3(m);
    let fl = l.map(f);
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, o) in row.iter_mut().enumerate() {
            *o = (0..3).map(|k| v[i][k] * fl[k] * v[j][k]).sum();
        }
    }
    out
}

fn matmul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, o) in row.iter_mut().enumerate() {
            *o = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// `--color-match`: an affine recolouring of `style` whose RGB mean and covariance are
/// `content`'s (Gatys et al. 2017, "Controlling perceptual factors in neural style transfer",
/// colour histogram matching): x' = A (x - mu_s) + mu_c with A = Sigma_c^(1/2) Sigma_s^(-1/2),
/// the symmetric square roots taken by eigen-decomposition, so that A Sigma_s A^T = Sigma_c.
/// Directions in which the style has (almost) no colour variance are regularised (1e-6 of the
/// largest variance) rather than blown up; the result is not clamped, so the statistics match
/// exactly (the network takes any values).
pub fn color_match(style: &Planar, content: &Planar) -> Planar {
    let (ms, cs) = color_stats(style);
    let (mc, cc) = color_stats(content);
    let (ls, _) = symmetric_eigen3(&cs);
    let eps = 1e-6 * ls.iter().fold(0.0f64, |m, &v| m.max(v)) + 1e-12;
    let inv_sqrt_s = symmetric_fn3(&cs, |l| 1.0 / (l.max(0.0) + eps).sqrt());
    let sqrt_c = symmetric_fn3(&cc, |l| l.max(0.0).sqrt());
    let a = matmul3(&sqrt_c, &inv_sqrt_s);
    let n = style.plane_len();
    let mut data = vec![0.0f32; 3 * n];
    for i in 0..n {
        let d = [0, 1, 2].map(|c| style.data[c * n + i] as f64 - ms[c]);
        for c in 0..3 {
            data[c * n + i] = (a[c][0] * d[0] + a[c][1] * d[1] + a[c][2] * d[2] + mc[c]) as f32;
        }
    }
    Planar { width: style.width, height: style.height, data }
}

// ---------------------------------------------------------------------------------------------
// Progress and logs
// ---------------------------------------------------------------------------------------------

struct Progress {
    quiet: bool,
    tty: bool,
    start: Instant,
    total: u32,
    label: String,
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
        let mut line = format!("{}[{bar}] step {step}/{} {rate:.2} it/s", self.label, self.total);
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

/// `--log-json`: one JSON object per line, flushed as written (so it can be followed live).
struct JsonLog {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

/// A number as JSON (non-finite values have no JSON form: null).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:e}")
    } else {
        "null".into()
    }
}

impl JsonLog {
    fn create(path: &Path) -> Result<JsonLog> {
        let file =
            std::fs::File::create(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Ok(JsonLog { path: path.to_path_buf(), file: std::io::BufWriter::new(file) })
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        frame: usize,
        scale: usize,
        w: usize,
        h: usize,
        step: u32,
        l: &Losses,
        elapsed: f64,
    ) -> Result<()> {
        let s = format!(
            "{{\"frame\":{frame},\"scale\":{scale},\"width\":{w},\"height\":{h},\"step\":{step},\"content\":{},\"style\":{},\"tv\":{},\"total\":{},\"elapsed_s\":{elapsed:.4}}}\n",
            json_num(l.content_total() as f64),
            json_num(l.style_total() as f64),
            json_num(l.tv as f64),
            json_num(l.total() as f64),
        );
        let io = |e| Error::Io { path: self.path.display().to_string(), source: e };
        self.file.write_all(s.as_bytes()).map_err(io)?;
        self.file.flush().map_err(|e| Error::Io { path: self.path.display().to_string(), source: e })
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and planning
// ---------------------------------------------------------------------------------------------

/// One content image and where its result goes.
#[derive(Clone, Debug)]
pub struct Frame {
    pub content: PathBuf,
    pub output: PathBuf,
}

fn is_image_name(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// The frames of a render: one (CONTENT -> OUT), or every image of a folder / of
/// `--content-list` -> OUT/<same file name>. The second value says whether it is a batch.
pub fn plan_frames(o: &RenderOptions) -> Result<(Vec<Frame>, bool)> {
    let contents: Vec<PathBuf> = if !o.content_list.is_empty() {
        o.content_list.clone()
    } else if o.content.is_dir() {
        let rd = std::fs::read_dir(&o.content)
            .map_err(|e| Error::Io { path: o.content.display().to_string(), source: e })?;
        let mut v: Vec<PathBuf> =
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_image_name(p)).collect();
        v.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        if v.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: the folder holds no .png or .jpg images",
                o.content.display()
            )));
        }
        v
    } else {
        return Ok((vec![Frame { content: o.content.clone(), output: o.output.clone() }], false));
    };
    let out = &o.output;
    if out.exists() && !out.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "-o {}: with several content images the output must be a folder, and a file of that name exists",
            out.display()
        )));
    }
    if !out.exists() && is_image_name(out) {
        return Err(Error::InvalidArgument(format!(
            "-o {}: with several content images the output must be a folder (e.g. -o frames_out/), not an image file",
            out.display()
        )));
    }
    let mut frames = vec![];
    let mut seen = std::collections::HashSet::new();
    for c in contents {
        let Some(name) = c.file_name() else {
            return Err(Error::InvalidArgument(format!("{}: not an image file name", c.display())));
        };
        if !seen.insert(name.to_os_string()) {
            return Err(Error::InvalidArgument(format!(
                "two content images are named {}: their results would overwrite each other in {}",
                name.to_string_lossy(),
                out.display()
            )));
        }
        if !is_image_name(&c) {
            return Err(Error::InvalidArgument(format!("{}: content images must be .png or .jpg files", c.display())));
        }
        let output = out.join(name);
        if let (Ok(a), Ok(b)) = (c.canonicalize(), output.canonicalize()) {
            if a == b {
                return Err(Error::InvalidArgument(format!(
                    "-o {}: the results would overwrite the content images; choose another folder",
                    out.display()
                )));
            }
        }
        frames.push(Frame { content: c, output });
    }
    Ok((frames, true))
}

/// The cheap checks, before anything slow (images, weights, GPU) happens.
fn validate(o: &RenderOptions) -> Result<()> {
    if o.size == 0 {
        return Err(Error::InvalidArgument("--size must be at least 1".into()));
    }
    if o.styles.is_empty() {
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
    if let Some(b) = &o.style_blend_weights {
        if b.len() != o.styles.len() {
            return Err(Error::InvalidArgument(format!(
                "--style-blend-weights has {} values for {} style images",
                b.len(),
                o.styles.len()
            )));
        }
        for &v in b {
            check_finite("--style-blend-weights", v, false)?;
        }
        if b.iter().sum::<f32>() <= 0.0 {
            return Err(Error::InvalidArgument("--style-blend-weights must not all be 0".into()));
        }
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
    if o.optimizer == Optimizer::Lbfgs && o.lbfgs_history == 0 {
        return Err(Error::InvalidArgument("--lbfgs-history must be at least 1".into()));
    }
    if let Some(p) = &o.preview {
        if o.preview_every == 0 {
            return Err(Error::InvalidArgument("--preview-every must be at least 1".into()));
        }
        image_io::check_output_path(p)?;
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
fn steps_per_scale(o: &RenderOptions) -> Vec<u32> {
    match &o.scale_steps {
        Some(s) => s.clone(),
        None => vec![o.steps; o.scales as usize],
    }
}

// ---------------------------------------------------------------------------------------------
// The engine: device, network, settings, style targets
// ---------------------------------------------------------------------------------------------

/// What a render sets up once: device, network, loss settings, style images and the cache of
/// their (blended) Gram targets by style size.
pub struct Engine {
    pub ctx: Context,
    pub net: Net,
    pub settings: LossSettings,
    /// Where the weights came from (for the log and the PNG's settings).
    pub source: String,
    /// The style images as loaded.
    pub styles: Vec<Planar>,
    /// Blend weights, normalised to sum 1.
    pub blend: Vec<f32>,
    cache: HashMap<u32, Vec<Tensor>>,
    /// Forward passes spent on style targets so far.
    pub style_target_passes: usize,
}

/// One stage: the graph at one size, the optional running average, and the content at that size.
pub struct Stage {
    pub graph: Graph,
    pub ema: Option<Ema>,
    pub width: usize,
    pub height: usize,
    /// The content image at this stage's size (for `--original-colors`).
    pub content: Planar,
}

impl Stage {
    /// One optimiser step (first copying the current image into `save_to`), then the average's
    /// update; submitted, not waited for.
    pub fn step(&self, ctx: &Context, save_to: Option<&Tensor>) -> Result<()> {
        self.graph.step_copying(ctx, save_to)?;
        if let Some(e) = &self.ema {
            e.update(ctx)?;
        }
        Ok(())
    }

    /// The current iterate.
    pub fn read_iterate(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.graph.read_image(ctx)
    }

    /// The image this stage would output now: the bias-corrected average of the iterates with
    /// `--avg-decay`, else the current iterate (before colour post-processing).
    pub fn read_output(&self, ctx: &Context) -> Result<Vec<f32>> {
        match &self.ema {
            Some(e) => e.read(ctx),
            None => self.graph.read_image(ctx),
        }
    }
}

impl Engine {
    /// Validated options -> device, weights, network. Style images are loaded here too. With
    /// `first_content`, the output and style sizes are checked against the adapter's limits
    /// before the weights are loaded.
    pub fn new(o: &RenderOptions, first_content: Option<&Planar>) -> Result<Engine> {
        let content_layers = parse_taps(&o.content_layers)?;
        let style_layers = parse_taps(&o.style_layers)?;
        let style_layer_weights = match &o.style_layer_weights {
            Some(w) => w.clone(),
            None => vec![1.0; style_layers.len()],
        };
        let limits = DecodeLimits::default();
        let styles = o.styles.iter().map(|p| load_checked(p, &limits)).collect::<Result<Vec<_>>>()?;
        let raw = o.style_blend_weights.clone().unwrap_or_else(|| vec![1.0; styles.len()]);
        let sum: f32 = raw.iter().sum();
        let blend = raw.iter().map(|v| v / sum).collect();

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
        let ctx = Context::new(&AdapterChoice::parse(&o.adapter))?;
        // The adapter's limits decide the largest size: refuse before loading (or downloading)
        // the weights. Every stage checks its own sizes again.
        if let Some(c) = first_content {
            let (w, h) = working_size(c.width, c.height, o.size);
            decide_tile(&ctx, &settings, o, w, h)?;
            let longest = ((o.style_scale as f64 * o.size as f64).round() as u32).max(1);
            for s in &styles {
                let (sw, sh) = working_size(s.width, s.height, longest);
                decide_tile(&ctx, &settings, o, sw, sh)?;
            }
        }
        let (convs, recognised, source) = load_weights(&o.weights, needed, !o.quiet)?;
        settings.preprocess = o.preprocess.or(recognised).unwrap_or(Preprocess::Torch);
        let (dc, ds, dt) = default_weights_for(settings.preprocess);
        settings.content_weight = o.content_weight.unwrap_or(dc);
        settings.style_weight = o.style_weight.unwrap_or(ds);
        settings.tv_weight = o.tv_weight.unwrap_or(dt);
        settings.validate()?;
        let net = Net::new(&ctx, &convs)?;
        Ok(Engine { ctx, net, settings, source, styles, blend, cache: HashMap::new(), style_target_passes: 0 })
    }

    /// The blended Gram targets A = sum_k b_k A_k of the style images resized to longest side
    /// `longest` (each colour-matched to `match_to` first when given). Cached by `longest`
    /// unless colour-matched (then they depend on the content).
    pub fn style_targets(&mut self, o: &RenderOptions, longest: u32, match_to: Option<&Planar>) -> Result<Vec<Tensor>> {
        if match_to.is_none() {
            if let Some(t) = self.cache.get(&longest) {
                return Ok(t.clone());
            }
        }
        let mut per_style = vec![];
        for s in &self.styles {
            let (sw, sh) = working_size(s.width, s.height, longest);
            let tile = decide_tile(&self.ctx, &self.settings, o, sw, sh)?;
            let mut img = image_io::resize_exact(s, sw as u32, sh as u32);
            if let Some(c) = match_to {
                img = color_match(&img, c);
            }
            let t = match tile {
                Some(t) => crate::tiled::style_targets(&self.ctx, &self.net, &self.settings, &img.data, sh, sw, t)?,
                None => compute_targets(&self.ctx, &self.net, &self.settings, &img.data, sh, sw, false, true)?.style,
            };
            self.style_target_passes += 1;
            per_style.push(t);
        }
        let blended = if per_style.len() == 1 {
            per_style.pop().unwrap_or_default()
        } else {
            // One-time host-side mix (a few Gram matrices, outside the loop).
            let mut out = vec![];
            for l in 0..self.settings.style_layers.len() {
                let shape = per_style[0][l].shape;
                let mut acc = vec![0.0f32; per_style[0][l].len()];
                for (k, grams) in per_style.iter().enumerate() {
                    let g = grams[l].read(&self.ctx)?;
                    let b = self.blend[k];
                    for (a, v) in acc.iter_mut().zip(g) {
                        *a += b * v;
                    }
                }
                out.push(Tensor::from_slice(&self.ctx, shape, &acc, "blended style target")?);
            }
            out
        };
        if match_to.is_none() {
            self.cache.insert(longest, blended.clone());
        }
        Ok(blended)
    }

    /// A stage at longest side `size` for `content` (full resolution), starting from `init`
    /// (already at the stage's size) or, when None, from `o.init`.
    pub fn stage(&mut self, o: &RenderOptions, content: &Planar, size: u32, init: Option<Vec<f32>>) -> Result<Stage> {
        let (w, h) = working_size(content.width, content.height, size);
        check_fits(&self.ctx, w, h)?;
        let content = image_io::resize_exact(content, w as u32, h as u32);
        let longest = ((o.style_scale as f64 * size as f64).round() as u32).max(1);
        let style = self.style_targets(o, longest, o.color_match.then_some(&content))?;
        let tc = compute_targets(&self.ctx, &self.net, &self.settings, &content.data, h, w, true, false)?;
        let init = match init {
            Some(v) => v,
            None => match &o.init {
                Init::Content => content.data.clone(),
                Init::Noise => noise(o.seed, 3 * w * h),
                Init::Image(p) => {
                    let i = load_input(p, &DecodeLimits::default())?;
                    image_io::resize_exact(&i, w as u32, h as u32).data
                }
            },
        };
        let targets = Targets { content: tc.content, style };
        let adam = AdamConfig { lr: o.learning_rate(), clamp: Some((0.0, 1.0)), ..Default::default() };
        let mut graph = Graph::new(&self.ctx, &self.net, &self.settings, &targets, &init, h, w, adam)?;
        if o.optimizer == Optimizer::Lbfgs {
            graph.set_lbfgs(&self.ctx, LbfgsConfig { history: o.lbfgs_history, lr: o.learning_rate() })?;
        }
        let ema = if o.avg_decay > 0.0 {
            // As crowsonkb's EMA: the first value is the initial image itself.
            let e = Ema::new(&self.ctx, &graph.x, o.avg_decay)?;
            e.update(&self.ctx)?;
            Some(e)
        } else {
            None
        };
        Ok(Stage { graph, ema, width: w, height: h, content })
    }
}

// ---------------------------------------------------------------------------------------------
// The render
// ---------------------------------------------------------------------------------------------

/// State shared by the stages of a render.
struct Run<'a> {
    o: &'a RenderOptions,
    t0: Instant,
    log: Option<JsonLog>,
    tty: bool,
}

/// How one stage ended.
struct StageOut {
    report: StageReport,
    image: Vec<f32>,
}

/// Where a stage sits in the render, for labels, snapshots and previews.
struct StagePlace<'a> {
    frame: usize,
    frames: usize,
    scale: usize,
    scales: usize,
    /// Steps of this frame's earlier scales.
    step_offset: u32,
    /// Steps of this frame in all.
    frame_steps: u32,
    output: &'a Path,
    text: &'a [(String, String)],
}

impl Run<'_> {
    fn finish(&self, data: Vec<f32>, st: &Stage) -> Planar {
        self.finish_with(data, &st.content)
    }

    /// The output image from raw pixels at `content`'s size (colour post-processing applied).
    fn finish_with(&self, data: Vec<f32>, content: &Planar) -> Planar {
        let img = Planar { width: content.width, height: content.height, data };
        if self.o.original_colors {
            transfer_luminance(&img, content)
        } else {
            img
        }
    }

    /// A stage too large for one GPU graph: exact tiled optimisation (src/tiled.rs), the image
    /// and Adam's state in host memory, each step two passes over the tiles.
    #[allow(clippy::too_many_arguments)]
    fn run_tiled_stage(
        &mut self,
        eng: &mut Engine,
        content: &Planar,
        size: u32,
        init: Option<Vec<f32>>,
        tile: usize,
        steps: u32,
        at: &StagePlace,
    ) -> Result<StageOut> {
        let o = self.o;
        if o.optimizer == Optimizer::Lbfgs || o.avg_decay > 0.0 {
            return Err(Error::InvalidArgument(
                "tiled rendering supports Adam without --avg-decay; use --optimizer adam, or --tile off with a smaller --size".into(),
            ));
        }
        let (w, h) = working_size(content.width, content.height, size);
        let content = image_io::resize_exact(content, w as u32, h as u32);
        let longest = ((o.style_scale as f64 * size as f64).round() as u32).max(1);
        let style = eng.style_targets(o, longest, o.color_match.then_some(&content))?;
        let init = match init {
            Some(v) => v,
            None => match &o.init {
                Init::Content => content.data.clone(),
                Init::Noise => noise(o.seed, 3 * w * h),
                Init::Image(p) => {
                    let i = load_input(p, &DecodeLimits::default())?;
                    image_io::resize_exact(&i, w as u32, h as u32).data
                }
            },
        };
        let mut tg = crate::tiled::TiledGraph::new(
            &eng.ctx,
            &eng.net,
            &eng.settings,
            (&content.data, h, w),
            style,
            &init,
            tile,
        )?;
        let ctx = &eng.ctx;
        let adam = AdamConfig { lr: o.learning_rate(), clamp: Some((0.0, 1.0)), ..Default::default() };
        let mut label = format!("[{} tiles of {tile} px] ", tg.tiles.len());
        if at.frames > 1 {
            label = format!("[frame {}/{}] ", at.frame + 1, at.frames) + &label;
        }
        if at.scales > 1 {
            label += &format!("[scale {}/{} {w}x{h}] ", at.scale + 1, at.scales);
        }
        if !o.quiet && !self.tty {
            eprintln!("{label}tiled render of {w}x{h}");
        }
        let progress = Progress { quiet: o.quiet, tty: self.tty, start: Instant::now(), total: steps, label };
        tg.evaluate(ctx, &eng.net)?;
        let first = tg.read_losses(ctx)?;
        if let Some(log) = &mut self.log {
            log.line(at.frame, at.scale, w, h, 0, &first, self.t0.elapsed().as_secs_f64())?;
        }
        let mut last = first.clone();
        let mut good = (tg.image.clone(), at.step_offset);
        let t0 = Instant::now();
        for step in 1..=steps {
            let total_step = at.step_offset + step;
            if interrupt::requested() {
                save(at.output, &self.finish_with(tg.image.clone(), &content), at.text, total_step - 1)?;
                return Err(Error::Interrupted { step: total_step - 1, saved: Some(at.output.display().to_string()) });
            }
            if step > 1 {
                tg.evaluate(ctx, &eng.net)?;
                last = tg.read_losses(ctx)?;
            }
            // Every step's losses are at hand here (tiles are read back anyway): check each.
            if !last.total().is_finite() || tg.grad.iter().any(|v| !v.is_finite()) {
                save(at.output, &self.finish_with(good.0, &content), at.text, good.1)?;
                return Err(Error::NonFinite {
                    step: total_step,
                    saved: Some(format!("{} (step {})", at.output.display(), good.1)),
                });
            }
            good = (tg.image.clone(), total_step - 1);
            tg.adam_step(&adam);
            let print = o.print_every > 0 && (step % o.print_every == 0 || step == steps);
            if print || (self.log.is_some() && step == steps) {
                if let Some(log) = &mut self.log {
                    log.line(at.frame, at.scale, w, h, step, &last, self.t0.elapsed().as_secs_f64())?;
                }
            }
            progress.update(step, print.then_some(&last));
            if o.save_every > 0 && total_step.is_multiple_of(o.save_every) && total_step != at.frame_steps {
                save(
                    &snapshot_path(at.output, total_step),
                    &self.finish_with(tg.image.clone(), &content),
                    at.text,
                    total_step,
                )?;
            }
            if let Some(p) = &o.preview {
                if total_step.is_multiple_of(o.preview_every) {
                    save(p, &self.finish_with(tg.image.clone(), &content), at.text, total_step)?;
                }
            }
        }
        let ms_per_iter = t0.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64;
        if steps > 0 {
            tg.evaluate(ctx, &eng.net)?;
            last = tg.read_losses(ctx)?;
        }
        let report = StageReport {
            frame: at.frame,
            scale: at.scale,
            width: w,
            height: h,
            steps,
            first,
            last,
            ms_per_iter,
            tiles: tg.tiles.len(),
        };
        Ok(StageOut { report, image: tg.image })
    }

    fn run_stage(&mut self, ctx: &Context, st: &Stage, steps: u32, at: &StagePlace) -> Result<StageOut> {
        let o = self.o;
        let (w, h) = (st.width, st.height);
        let graph = &st.graph;
        let init_copy = graph.read_image(ctx)?;
        graph.evaluate(ctx)?;
        let first = graph.read_losses(ctx)?;
        if let Some(log) = &mut self.log {
            log.line(at.frame, at.scale, w, h, 0, &first, self.t0.elapsed().as_secs_f64())?;
        }
        let mut label = String::new();
        if at.frames > 1 {
            label += &format!("[frame {}/{}] ", at.frame + 1, at.frames);
        }
        if at.scales > 1 {
            label += &format!("[scale {}/{} {w}x{h}] ", at.scale + 1, at.scales);
        }
        let progress = Progress { quiet: o.quiet, tty: self.tty, start: Instant::now(), total: steps, label };
        let mut last = first.clone();
        // Non-finite guard: every `check` steps the losses are read (a few bytes) and, when
        // finite, the image they were computed from (copied on the GPU just before that step's
        // update) becomes the last good image; a NaN/Inf ends the render with that image saved.
        let check = match o.print_every {
            0 => NAN_CHECK_EVERY,
            p => p.min(NAN_CHECK_EVERY),
        };
        let mut candidate = Tensor::new(ctx, graph.x.shape, "candidate image")?;
        let mut good = Tensor::from_slice(ctx, graph.x.shape, &init_copy, "last good image")?;
        let mut good_step = at.step_offset;
        // Fault injection for the tests: poison the image with NaN before this step.
        let fault_at: Option<u32> = std::env::var("STYLIZE_FAULT_NAN_AT").ok().and_then(|v| v.parse().ok());
        let t0 = Instant::now();
        let mut done = at.step_offset;
        for step in 1..=steps {
            let total_step = at.step_offset + step;
            if interrupt::requested() {
                let mut data = st.read_output(ctx)?;
                if data.iter().any(|v| !v.is_finite()) {
                    data = good.read(ctx)?;
                }
                save(at.output, &self.finish(data, st), at.text, done)?;
                return Err(Error::Interrupted { step: done, saved: Some(at.output.display().to_string()) });
            }
            let print = o.print_every > 0 && (step % o.print_every == 0 || step == steps);
            let log_now = print || (self.log.is_some() && step == steps);
            let checking = log_now || step % check == 0 || step == steps;
            if fault_at == Some(total_step) {
                graph.x.fill(ctx, f32::NAN);
            }
            st.step(ctx, checking.then_some(&candidate))?;
            ctx.wait()?;
            done = total_step;
            if checking {
                last = graph.read_losses(ctx)?;
                if !last.total().is_finite() {
                    save(at.output, &self.finish(good.read(ctx)?, st), at.text, good_step)?;
                    return Err(Error::NonFinite {
                        step: total_step,
                        saved: Some(format!("{} (step {good_step})", at.output.display())),
                    });
                }
                std::mem::swap(&mut candidate, &mut good);
                good_step = total_step - 1;
            }
            if log_now {
                if let Some(log) = &mut self.log {
                    log.line(at.frame, at.scale, w, h, step, &last, self.t0.elapsed().as_secs_f64())?;
                }
            }
            progress.update(step, print.then_some(&last));
            if o.save_every > 0 && total_step.is_multiple_of(o.save_every) && total_step != at.frame_steps {
                let p = snapshot_path(at.output, total_step);
                save(&p, &self.finish(st.read_output(ctx)?, st), at.text, total_step)?;
            }
            if let Some(p) = &o.preview {
                if total_step.is_multiple_of(o.preview_every) {
                    save(p, &self.finish(st.read_output(ctx)?, st), at.text, total_step)?;
                }
            }
        }
        let ms_per_iter = t0.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64;
        if let Some(e) = &st.ema {
            // The losses of what is written out: the average.
            graph.x.write(ctx, &e.read(ctx)?);
        }
        if steps > 0 || st.ema.is_some() {
            // The losses of the final image (one more forward pass, no update).
            graph.evaluate(ctx)?;
            last = graph.read_losses(ctx)?;
        }
        let image = st.read_output(ctx)?;
        let report = StageReport {
            frame: at.frame,
            scale: at.scale,
            width: w,
            height: h,
            steps,
            first,
            last,
            ms_per_iter,
            tiles: 1,
        };
        Ok(StageOut { report, image })
    }
}

/// Runs a whole render (every frame, every scale) and writes the outputs atomically.
pub fn render(o: &RenderOptions) -> Result<RenderReport> {
    validate(o)?;
    let (frames, batch) = plan_frames(o)?;
    if !batch && !o.output.as_os_str().is_empty() {
        image_io::check_output_path(&o.output)?;
    }
    let limits = DecodeLimits::default();
    // Check the first content image before the slow setup (a typo should fail at once).
    let first_content = load_checked(&frames[0].content, &limits)?;
    if batch {
        std::fs::create_dir_all(&o.output)
            .map_err(|e| Error::Io { path: o.output.display().to_string(), source: e })?;
        image_io::check_output_path(&frames[0].output)?;
    }
    let mut eng = Engine::new(o, Some(&first_content))?;
    let sizes = scale_sizes(o.initial_size, o.size, o.scales);
    let steps = steps_per_scale(o);
    let frame_steps: u32 = steps.iter().sum();
    if !o.quiet {
        let (w, h) = working_size(first_content.width, first_content.height, o.size);
        let scales = if sizes.len() > 1 {
            format!(" | scales {}", sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" -> "))
        } else {
            String::new()
        };
        let frames_note = if batch { format!(" | {} frames", frames.len()) } else { String::new() };
        eprintln!(
            "stylize: {}x{} on {} | weights {} ({:?} preprocessing) | {} steps{scales}{frames_note}",
            w,
            h,
            eng.ctx.describe(),
            eng.source,
            eng.settings.preprocess,
            frame_steps
        );
    }
    let log = match &o.log_json {
        Some(p) => Some(JsonLog::create(p)?),
        None => None,
    };
    let mut run = Run { o, t0: Instant::now(), log, tty: std::io::stderr().is_terminal() };
    interrupt::install();
    let mut stages = vec![];
    let mut outputs = vec![];
    let mut previous: Option<Planar> = None;
    for (fi, frame) in frames.iter().enumerate() {
        let content = if fi == 0 { first_content.clone() } else { load_checked(&frame.content, &limits)? };
        let text = settings_text(o, &eng.settings, &eng.source, batch.then_some(&frame.content));
        let mut result: Option<Planar> = None;
        let mut offset = 0;
        let mut final_content: Option<Planar> = None;
        for (k, &size) in sizes.iter().enumerate() {
            let (w, h) = working_size(content.width, content.height, size);
            let init = match (&result, &previous) {
                (Some(r), _) => Some(image_io::resize_exact(r, w as u32, h as u32).data),
                (None, Some(p)) if o.temporal_init => Some(image_io::resize_exact(p, w as u32, h as u32).data),
                _ => None,
            };
            let place = StagePlace {
                frame: fi,
                frames: frames.len(),
                scale: k,
                scales: sizes.len(),
                step_offset: offset,
                frame_steps,
                output: &frame.output,
                text: &text,
            };
            let out = match decide_tile(&eng.ctx, &eng.settings, o, w, h)? {
                Some(tile) => run.run_tiled_stage(&mut eng, &content, size, init, tile, steps[k], &place)?,
                None => {
                    let st = eng.stage(o, &content, size, init)?;
                    run.run_stage(&eng.ctx, &st, steps[k], &place)?
                }
            };
            offset += steps[k];
            result = Some(Planar { width: w as u32, height: h as u32, data: out.image });
            stages.push(out.report);
            final_content = Some(image_io::resize_exact(&content, w as u32, h as u32));
        }
        let (Some(result), Some(fc)) = (result, final_content) else {
            return Err(Error::InvalidArgument("no scales to render".into()));
        };
        let img = run.finish_with(result.data.clone(), &fc);
        save(&frame.output, &img, &text, frame_steps)?;
        if let Some(p) = &o.preview {
            save(p, &img, &text, frame_steps)?;
        }
        outputs.push(frame.output.clone());
        previous = Some(result);
    }
    let total_steps = frame_steps * frames.len() as u32;
    // Optimisation loops only (not loading, targets or graph building), as for one stage.
    let ms_per_iter = stages.iter().map(|s| s.ms_per_iter * s.steps as f64).sum::<f64>() / total_steps.max(1) as f64;
    let (Some(f), Some(l)) = (stages.first(), stages.last()) else {
        return Err(Error::InvalidArgument("nothing to render".into()));
    };
    Ok(RenderReport {
        adapter: eng.ctx.describe(),
        width: l.width,
        height: l.height,
        steps: total_steps,
        first: f.first.clone(),
        last: l.last.clone(),
        ms_per_iter,
        outputs,
        style_target_passes: eng.style_target_passes,
        stages,
    })
}

fn save(path: &Path, img: &Planar, text: &[(String, String)], step: u32) -> Result<()> {
    let mut t: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = step.to_string();
    t.push(("stylize:step", &s));
    let size = format!("{}x{}", img.width, img.height);
    t.push(("stylize:size", &size));
    image_io::save_image(path, img, &t)?;
    Ok(())
}

/// The settings a PNG records so a result can be reproduced.
fn settings_text(o: &RenderOptions, s: &LossSettings, source: &str, frame: Option<&PathBuf>) -> Vec<(String, String)> {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let names = |t: &[Tap]| t.iter().map(|t| t.name()).collect::<Vec<_>>().join(",");
    let list = |v: &[f32]| v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let mut inputs = vec![];
    if o.content_list.is_empty() {
        inputs.push(q(&o.content));
    }
    inputs.extend(o.styles.iter().map(|p| q(p)));
    let mut cmd = format!(
        "stylize render {} -o {} --size {} --steps {} --lr {} --content-weight {} --style-weight {} \
         --tv-weight {} --content-layers {} --style-layers {} --style-layer-weights {} --pool {} --init {} \
         --seed {} --preprocess {}",
        inputs.join(" "),
        q(&o.output),
        o.size,
        o.steps,
        o.learning_rate(),
        s.content_weight,
        s.style_weight,
        s.tv_weight,
        names(&s.content_layers),
        names(&s.style_layers),
        list(&s.style_layer_weights),
        if s.pool == Pool::Avg { "avg" } else { "max" },
        match &o.init {
            Init::Content => "content".to_string(),
            Init::Noise => "noise".to_string(),
            Init::Image(p) => q(p),
        },
        o.seed,
        if s.preprocess == Preprocess::Torch { "torch" } else { "caffe" },
    );
    if !o.content_list.is_empty() {
        cmd += &format!(" --content-list {}", o.content_list.iter().map(|p| q(p)).collect::<Vec<_>>().join(","));
    }
    if let Some(b) = &o.style_blend_weights {
        cmd += &format!(" --style-blend-weights {}", list(b));
    }
    if o.style_scale != 1.0 {
        cmd += &format!(" --style-scale {}", o.style_scale);
    }
    if o.scales > 1 {
        cmd += &format!(" --scales {} --initial-size {}", o.scales, o.initial_size);
    }
    if let Some(st) = &o.scale_steps {
        cmd += &format!(" --scale-steps {}", st.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    }
    if o.optimizer == Optimizer::Lbfgs {
        cmd += &format!(" --optimizer lbfgs --lbfgs-history {}", o.lbfgs_history);
    }
    if o.avg_decay > 0.0 {
        cmd += &format!(" --avg-decay {}", o.avg_decay);
    }
    if o.original_colors {
        cmd += " --original-colors";
    }
    if o.color_match {
        cmd += " --color-match";
    }
    if o.temporal_init {
        cmd += " --temporal-init";
    }
    let mut v = vec![
        ("Software".into(), format!("stylize {}", env!("CARGO_PKG_VERSION"))),
        ("stylize:command".into(), cmd),
        ("stylize:weights".into(), source.to_string()),
    ];
    if let Some(f) = frame {
        v.push(("stylize:frame".into(), f.display().to_string()));
    }
    v
}

/// The device, network and first stage of a render at `--size` for a single content image (for
/// `stylize evaluate`).
pub fn prepare(o: &RenderOptions) -> Result<(Engine, Stage)> {
    validate(o)?;
    if o.content.is_dir() || !o.content_list.is_empty() {
        return Err(Error::InvalidArgument("evaluate takes one content image, not a folder or a list".into()));
    }
    let content = load_checked(&o.content, &DecodeLimits::default())?;
    let mut eng = Engine::new(o, Some(&content))?;
    let st = eng.stage(o, &content, o.size, None)?;
    Ok((eng, st))
}

/// Losses and image gradient at the initial image, without optimising (for comparisons with
/// other implementations: `stylize evaluate`, tools/torch_compare.py).
pub fn evaluate(o: &RenderOptions) -> Result<(Losses, Vec<f32>, usize, usize)> {
    let (eng, st) = prepare(o)?;
    st.graph.evaluate(&eng.ctx)?;
    let l = st.graph.read_losses(&eng.ctx)?;
    let g = st.graph.grad.read(&eng.ctx)?;
    Ok((l, g, st.width, st.height))
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
