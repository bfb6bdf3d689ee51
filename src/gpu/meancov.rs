//! The mean-covariance (Wasserstein-2) style loss on the GPU (`shaders/meancov.wgsl` and the
//! Gram kernels); CPU twin in `reference::meancov` (by eigendecomposition, not Newton-Schulz).
//!
//! Per style tap with features F (c, n): S = F F^T / n (`gram_forward_scaled`), mu = F 1 / n,
//! C = S - mu mu^T + eps I, M = R C R with the target's R = C_t^{1/2} (computed once on the
//! host, [`MeanCovTarget::new`]). A coupled Newton-Schulz iteration (Y0 = M / s, Z0 = I, s =
//! |M|_F; T = (3I - Z Y) / 2, Y <- Y T, Z <- T Z) gives M^{1/2} = sqrt(s) Y and M^{-1/2} =
//! Z / sqrt(s) together; then loss = mean((mu - mu_t)^2) + (tr C + tr C_t - 2 tr M^{1/2}) / c,
//! dL/dC = D = (I - R M^{-1/2} R) / c, dL/dmu = 2 (mu - mu_t) / c - 2 D mu and
//! dL/dF = 2 D F / n + dL/dmu 1^T / n. Every c x c product is a Gram backward
//! ([`gram::gram_backward_scaled`] with scale 1/2 computes (A + A^T) B / 2 = A B for symmetric
//! A; all matrices here are symmetric in exact arithmetic, polynomials in M, R or C), so it runs
//! on the adapter's fastest Gram variant. No readback: it all records into the caller's pass.
//!
//! Iterations: [`NS_ITERATIONS`] = 13, from a float32 study of realistic spectra
//! (`tools/meancov_ns_study.py`: rectified features of rank 8..256 at c = 64..512, n = 16..4096,
//! cond(M) up to 2e13). At 13 the loss is within 4e-3 and the feature gradient within 1e-2 of the
//! f64 eigendecomposition in every case (2e-3 where the covariances have full rank). Fewer leave
//! full-rank taps unconverged (3e-2 at 11); more let float32 rounding grow in M's near-null
//! directions (eigenvalues ~eps^2, which the coupled iteration amplifies ~2.25x per step until
//! they converge): 1e-1..1e+3 by 15-17 iterations on rank-deficient taps. Those directions carry
//! almost no centred feature energy, so what is left unconverged there moves the gradient little.

use super::gram;
use super::kernel::uniform;
use super::{Context, Op, Tensor};
use crate::error::Result;
use crate::model::{LossSettings, MEANCOV_EPS};
use crate::reference::meancov as rm;
use std::sync::{Arc, Mutex};

const FILE: &str = "meancov.wgsl";

/// Newton-Schulz iterations per evaluation (see the module's doc for how it was chosen).
pub const NS_ITERATIONS: usize = 13;

uniform! {
    /// `shaders/meancov.wgsl`'s `Params`.
    pub struct MeanCovParams { c: u32, n: u32, gx: u32, slot: u32, eps: f32, weight: f32, gweight: f32, trace_t: f32 }
}

/// A style tap's target on the GPU: mu_t, R = C_t^{1/2} and tr C_t.
pub struct MeanCovTarget {
    /// R (c, c, 1).
    pub root: Tensor,
    /// mu_t (c, 1, 1).
    pub mean: Tensor,
    /// tr C_t (C_t with the ridge).
    pub trace: f32,
}

impl MeanCovTarget {
    /// From the raw moments [S (c x c); mu (c)] (`model::StyleLoss::target_len`), in f64 on the
    /// host by a Jacobi eigendecomposition (once per target; ~4 s at c = 512 on one core).
    pub fn new(ctx: &Context, moments: &[f32], c: usize) -> Result<MeanCovTarget> {
        let m: Vec<f64> = moments.iter().map(|&v| v as f64).collect();
        MeanCovTarget::upload(ctx, &rm::meancov_target(&m, c))
    }
}

impl MeanCovTarget {
    /// One per style tap of `s` from the raw-moment targets `style` (read back once; the host
    /// eigendecompositions, ~4 s at 512 channels, run one thread per tap, each through
    /// [`host_target`]'s memo: the frames of a video share their style targets).
    pub fn all(ctx: &Context, s: &LossSettings, style: &[Tensor]) -> Result<Vec<MeanCovTarget>> {
        let moments = style.iter().map(|t| t.read(ctx)).collect::<Result<Vec<_>>>()?;
        let chans: Vec<usize> = s.style_layers.iter().map(|t| t.channels(s.model)).collect();
        let host: Vec<Arc<rm::MeanCovTarget>> = std::thread::scope(|sc| {
            let jobs: Vec<_> =
                moments.iter().zip(&chans).map(|(m, &c)| sc.spawn(move || host_target(m, c).0)).collect();
            jobs.into_iter().map(|j| j.join().expect("eigendecomposition thread")).collect()
        });
        host.iter().map(|t| MeanCovTarget::upload(ctx, t)).collect()
    }

    fn upload(ctx: &Context, t: &rm::MeanCovTarget) -> Result<MeanCovTarget> {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let c = t.c;
        Ok(MeanCovTarget {
            root: Tensor::from_slice(ctx, [c, c, 1], &f32s(&t.root), "mean-cov target root")?,
            mean: Tensor::from_slice(ctx, [c, 1, 1], &f32s(&t.mean), "mean-cov target mean")?,
            trace: t.trace as f32,
        })
    }
}

/// Host targets computed so far, newest last, with their moments (compared exactly: a hit is the
/// same f64 computation's result) and bytes; at most [`MEMO_BYTES`] held.
static MEMO: Mutex<Vec<MemoEntry>> = Mutex::new(Vec::new());

/// Channels, raw moments, the host target.
type MemoEntry = (usize, Vec<f32>, Arc<rm::MeanCovTarget>);

/// What the memo may hold: a 512-channel tap's entry is ~3 MiB (moments f32, root f64).
const MEMO_BYTES: usize = 64 << 20;

/// The host target (`reference::meancov::meancov_target`) of raw moments `moments` at `c`
/// channels, and whether it came from the memo rather than a new eigendecomposition. A render
/// builds one graph per stage and per video frame from the same style targets; the memo keeps
/// each frame from repeating seconds of host work. Results are identical either way.
pub fn host_target(moments: &[f32], c: usize) -> (Arc<rm::MeanCovTarget>, bool) {
    let memo = || MEMO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, t)) = memo().iter().find(|(cc, m, _)| *cc == c && m.as_slice() == moments) {
        return (t.clone(), true);
    }
    // Computed outside the lock: the taps' threads decompose in parallel.
    let t = Arc::new(rm::meancov_target(&moments.iter().map(|&v| v as f64).collect::<Vec<_>>(), c));
    let mut memo = memo();
    memo.push((c, moments.to_vec(), t.clone()));
    let bytes = |e: &MemoEntry| e.1.len() * 4 + e.2.root.len() * 8;
    while memo.len() > 1 && memo.iter().map(bytes).sum::<usize>() > MEMO_BYTES {
        memo.remove(0);
    }
    (t, false)
}

/// Workspace for every tap up to `c` channels (taps run one after another): six c x c matrices,
/// two c-vectors and the norm s.
pub struct MeanCovScratch {
    mats: Vec<Tensor>,
    mu: Tensor,
    dmu: Tensor,
    stats: Tensor,
}

impl MeanCovScratch {
    /// Workspace for taps of at most `c` channels.
    pub fn new(ctx: &Context, c: usize) -> Result<MeanCovScratch> {
        let mats = (0..6).map(|_| Tensor::new(ctx, [c * c, 1, 1], "mean-cov matrices")).collect::<Result<_>>()?;
        Ok(MeanCovScratch {
            mats,
            mu: Tensor::new(ctx, [c, 1, 1], "mean-cov mean")?,
            dmu: Tensor::new(ctx, [c, 1, 1], "mean-cov mean gradient")?,
            stats: Tensor::new(ctx, [4, 1, 1], "mean-cov norm")?,
        })
    }

    /// Its buffers (for memory accounting).
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.mats.iter().chain([&self.mu, &self.dmu, &self.stats])
    }
}

fn view(t: &Tensor, shape: [usize; 3]) -> Tensor {
    assert!(shape.iter().product::<usize>() <= t.len());
    Tensor { buf: t.buf.clone(), shape }
}

fn params(c: usize, n: usize) -> MeanCovParams {
    MeanCovParams { c: c as u32, n: n as u32, eps: MEANCOV_EPS as f32, ..Default::default() }
}

fn groups(n: usize) -> (u32, u32, u32) {
    ((n as u32).div_ceil(256), 1, 1)
}

/// out = a b for c x c matrices with `a` symmetric (a Gram backward: (a + a^T) b / 2).
pub fn symmetric_matmul(ctx: &Context, a: &Tensor, b: &Tensor, out: &Tensor, c: usize) -> Op {
    let s = [c, c, 1];
    gram::gram_backward_scaled(ctx, &view(b, s), &view(a, s), &view(out, s), 0.5, false)
}

/// mu = F 1 / n. f: (c, h, w); mu: >= c elements.
pub fn meancov_mean(ctx: &Context, f: &Tensor, mu: &Tensor) -> Op {
    let [c, h, w] = f.shape;
    assert!(mu.len() >= c);
    let p = params(c, h * w);
    ctx.op(ctx.dispatch(FILE, "meancov_mean", &p, &[("A", f), ("Out", mu)], (c as u32, 1, 1)))
}

/// cov (c x c, holding S) -= mu mu^T, plus `eps` on the diagonal.
pub fn meancov_center(ctx: &Context, mu: &Tensor, cov: &Tensor, c: usize, eps: f32) -> Op {
    let p = MeanCovParams { eps, ..params(c, 1) };
    ctx.op(ctx.dispatch(FILE, "meancov_center", &p, &[("A", mu), ("Out", cov)], groups(c * c)))
}

/// stats\[0\] = |m|_F (c x c).
pub fn meancov_norm(ctx: &Context, m: &Tensor, stats: &Tensor, c: usize) -> Op {
    ctx.op(ctx.dispatch(FILE, "meancov_norm", &params(c, 1), &[("A", m), ("Stats", stats)], (1, 1, 1)))
}

/// y = m / stats\[0\], z = I (c x c).
pub fn meancov_ns_init(ctx: &Context, m: &Tensor, stats: &Tensor, y: &Tensor, z: &Tensor, c: usize) -> Op {
    let b: &[(&str, &dyn super::Bindable)] = &[("A", m), ("Out", y), ("Out2", z), ("Stats", stats)];
    ctx.op(ctx.dispatch(FILE, "meancov_ns_init", &params(c, 1), b, groups(c * c)))
}

/// t = (3 I - t) / 2 in place (c x c).
pub fn meancov_ns_t(ctx: &Context, t: &Tensor, c: usize) -> Op {
    ctx.op(ctx.dispatch(FILE, "meancov_ns_t", &params(c, 1), &[("Out", t)], groups(c * c)))
}

/// losses\[slot\] = weight (mean((mu - mu_t)^2) + (tr cov + trace_t - 2 sqrt(stats\[0\]) tr y) / c).
#[allow(clippy::too_many_arguments)]
pub fn meancov_loss(
    ctx: &Context,
    y: &Tensor,
    cov: &Tensor,
    mu: &Tensor,
    t: &MeanCovTarget,
    stats: &Tensor,
    losses: &Tensor,
    slot: usize,
    weight: f32,
    c: usize,
) -> Op {
    let p = MeanCovParams { slot: slot as u32, weight, trace_t: t.trace, ..params(c, 1) };
    let b: &[(&str, &dyn super::Bindable)] =
        &[("A", y), ("B", mu), ("Cm", &t.mean), ("D", cov), ("Out", losses), ("Stats", stats)];
    ctx.op(ctx.dispatch(FILE, "meancov_loss", &p, b, (1, 1, 1)))
}

/// d = gweight / c (I - q / sqrt(stats\[0\])) (c x c), q = R Z R.
pub fn meancov_dcov(ctx: &Context, q: &Tensor, stats: &Tensor, d: &Tensor, gweight: f32, c: usize) -> Op {
    let p = MeanCovParams { gweight, ..params(c, 1) };
    ctx.op(ctx.dispatch(FILE, "meancov_dcov", &p, &[("A", q), ("Out", d), ("Stats", stats)], groups(c * c)))
}

/// dmu = gweight 2 (mu - mu_t) / c - 2 d mu, d = dL/dC (times gweight already).
pub fn meancov_dmu(ctx: &Context, d: &Tensor, mu: &Tensor, mu_t: &Tensor, dmu: &Tensor, gweight: f32, c: usize) -> Op {
    let p = MeanCovParams { gweight, ..params(c, 1) };
    let b: &[(&str, &dyn super::Bindable)] = &[("A", d), ("B", mu), ("Cm", mu_t), ("Out", dmu)];
    ctx.op(ctx.dispatch(FILE, "meancov_dmu", &p, b, ((c as u32).div_ceil(64), 1, 1)))
}

/// df\[i, p\] += dmu\[i\] / n. df: (c, h, w).
pub fn meancov_add_mean_grad(ctx: &Context, dmu: &Tensor, df: &Tensor) -> Op {
    let [c, h, w] = df.shape;
    let (gx, gy) = ctx.grid(((c * h * w) as u32).div_ceil(256));
    let p = MeanCovParams { gx, ..params(c, h * w) };
    ctx.op(ctx.dispatch(FILE, "meancov_add_mean_grad", &p, &[("A", dmu), ("Out", df)], (gx, gy, 1)))
}

/// The whole term at one tap: its loss times `weight` into `losses[slot]` and `gweight` times
/// its gradient w.r.t. `f` (c, h, w) into `df` (accumulating when `accumulate`).
#[allow(clippy::too_many_arguments)]
pub fn meancov_forward_backward(
    ctx: &Context,
    f: &Tensor,
    t: &MeanCovTarget,
    s: &MeanCovScratch,
    losses: &Tensor,
    slot: usize,
    weight: f32,
    gweight: f32,
    df: &Tensor,
    accumulate: bool,
) -> Vec<Op> {
    let [c, h, w] = f.shape;
    let n = h * w;
    let m = |k: usize| view(&s.mats[k], [c * c, 1, 1]);
    let (cov, x, mut y, mut y2, mut z, mut z2) = (m(0), m(1), m(2), m(3), m(4), m(5));
    let mut ops = vec![
        gram::gram_forward_scaled(ctx, f, &view(&cov, [c, c, 1]), 1.0 / n as f32, false),
        meancov_mean(ctx, f, &s.mu),
        meancov_center(ctx, &s.mu, &cov, c, MEANCOV_EPS as f32),
        // M = R (C R) into y2.
        symmetric_matmul(ctx, &cov, &t.root, &x, c),
        symmetric_matmul(ctx, &t.root, &x, &y2, c),
        meancov_norm(ctx, &y2, &s.stats, c),
        meancov_ns_init(ctx, &y2, &s.stats, &y, &z, c),
    ];
    for _ in 0..NS_ITERATIONS {
        // x = T = (3 I - Z Y) / 2; Y <- Y T, Z <- T Z.
        ops.push(symmetric_matmul(ctx, &z, &y, &x, c));
        ops.push(meancov_ns_t(ctx, &x, c));
        ops.push(symmetric_matmul(ctx, &y, &x, &y2, c));
        ops.push(symmetric_matmul(ctx, &x, &z, &z2, c));
        std::mem::swap(&mut y, &mut y2);
        std::mem::swap(&mut z, &mut z2);
    }
    ops.push(meancov_loss(ctx, &y, &cov, &s.mu, t, &s.stats, losses, slot, weight, c));
    // D = gweight / c (I - R Z R / sqrt(s)) into y2 (y and cov are done with).
    ops.push(symmetric_matmul(ctx, &z, &t.root, &x, c));
    ops.push(symmetric_matmul(ctx, &t.root, &x, &y, c));
    ops.push(meancov_dcov(ctx, &y, &s.stats, &y2, gweight, c));
    ops.push(meancov_dmu(ctx, &y2, &s.mu, &t.mean, &s.dmu, gweight, c));
    ops.push(gram::gram_backward_scaled(ctx, f, &view(&y2, [c, c, 1]), df, 1.0 / n as f32, accumulate));
    ops.push(meancov_add_mean_grad(ctx, &s.dmu, df));
    ops
}

/// The raw moments of f (c, h, w): S = F F^T / n into `sm` (c x c) and mu = F 1 / n into `mu`
/// (c); a style target packs them as [S; mu] (`model::StyleLoss::target_len`).
pub fn meancov_moments(ctx: &Context, f: &Tensor, sm: &Tensor, mu: &Tensor) -> Vec<Op> {
    let [c, h, w] = f.shape;
    vec![gram::gram_forward_scaled(ctx, f, &view(sm, [c, c, 1]), 1.0 / (h * w) as f32, false), meancov_mean(ctx, f, mu)]
}
