//! L-BFGS on a GPU tensor (`shaders/lbfgs.wgsl`, dots from `reduce.wgsl`); CPU twin
//! `reference::Lbfgs`. torch.optim.LBFGS's update without line search (jcjohnson/neural-style's
//! setting), history kept in a ring of GPU buffers; the two-loop recursion is recorded per
//! iteration from ops built once per history slot, so nothing is created or read back in the loop.
//!
//! Safeguards, as torch.optim.LBFGS: a curvature pair with y.s <= 1e-10 is skipped (it leaves
//! the initial Hessian scale alone and contributes nothing); and where the direction is not a
//! descent one (g.d >= 0, or NaN), the step falls back to the scaled steepest descent -H g, the
//! direction an empty memory gives (torch stops there instead). Both are decided on the GPU. One
//! difference from torch: a skipped pair still takes its ring slot (with rho = 0) rather than
//! being dropped, since dropping it would need a readback to know where the ring goes next; so
//! after a skip the memory holds one pair fewer for `history` iterations (none while fewer than
//! `history` pairs have been made). `reference::Lbfgs` follows the same rules.

use super::kernel::{uniform, Bindings};
use super::relu::grid;
use super::{reduce, Context, Op, Tensor};
use crate::error::Result;

const FILE: &str = "lbfgs.wgsl";

uniform! {
    /// `shaders/lbfgs.wgsl`'s `Params`.
    pub struct LbfgsParams {
        n: u32, gx: u32, mode: u32, slot: u32,
        ia: u32, ib: u32, fa: f32, fb: f32,
        lr: f32, hist: u32, lo: f32, hi: f32,
    }
}

/// L-BFGS settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsConfig {
    /// Curvature pairs remembered (jcjohnson: 100).
    pub history: usize,
    /// Step length (torch's lr; 1 in jcjohnson/neural-style).
    pub lr: f32,
    /// Projected L-BFGS: each iterate clamped to \[lo, hi\] after its step, and the curvature
    /// pair built from the step actually taken (None: torch's unconstrained update).
    pub bounds: Option<(f32, f32)>,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig { history: 100, lr: 1.0, bounds: None }
    }
}

// Scalar slots; must match shaders/lbfgs.wgsl.
const S_TMP: usize = 4;
const S_BE: usize = 5;
const S_L1: usize = 6;
const S_YS: usize = 2;
const S_YY: usize = 3;
const S_GD: usize = 7;
const S_RO: usize = 8;
/// Counters after the rho and alpha slots: pairs skipped, fallbacks taken.
const fn counters(m: usize) -> usize {
    S_RO + 2 * m
}

/// Ops of one history slot.
struct Slot {
    /// New pair into this slot, its dots and its rho.
    push: Op,
    /// First loop: al = rho (s . q); q -= al y.
    first: Op,
    /// Second loop: be = rho (y . r); r += (al - be) s.
    second: Op,
}

/// L-BFGS state on the GPU and the ops that advance it.
pub struct Lbfgs {
    cfg: LbfgsConfig,
    /// Scalar slots (step length, dots, rho and alpha per pair; see shaders/lbfgs.wgsl).
    pub scalars: Tensor,
    /// d: the search direction (q / r of the two-loop recursion).
    pub dir: Tensor,
    _prev_grad: Tensor,
    _last_step: Tensor,
    hist_s: Vec<Tensor>,
    hist_y: Vec<Tensor>,
    slots: Vec<Slot>,
    first_iter: Op,
    start_dir: Op,
    scale_dir: Op,
    later_t: Op,
    /// g.d and, where it is not negative, d = -H g.
    guard: Op,
    step: Op,
}

impl Lbfgs {
    /// L-BFGS updating `x` from the gradient `g` (same length) left by each evaluation.
    pub fn new(ctx: &Context, x: &Tensor, g: &Tensor, cfg: LbfgsConfig) -> Result<Lbfgs> {
        assert_eq!(x.len(), g.len());
        assert!(cfg.history >= 1);
        let n = x.len();
        let m = cfg.history;
        let shape = [n, 1, 1];
        let scalars = Tensor::new(ctx, [counters(m) + 2, 1, 1], "lbfgs scalars")?;
        let dir = Tensor::new(ctx, shape, "lbfgs direction")?;
        let prev_grad = Tensor::new(ctx, shape, "lbfgs previous gradient")?;
        // The step just taken, x_new - x_old (t d when unbounded): the next pair's s.
        let last_step = Tensor::new(ctx, shape, "lbfgs last step")?;
        let mut hist_s = vec![];
        let mut hist_y = vec![];
        for _ in 0..m {
            hist_s.push(Tensor::new(ctx, shape, "lbfgs s")?);
            hist_y.push(Tensor::new(ctx, shape, "lbfgs y")?);
        }
        let (gx, gy) = grid(ctx, n);
        let vec_groups = (gx, gy, 1);
        let (lo, hi) = cfg.bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let base = LbfgsParams { n: n as u32, gx, lr: cfg.lr, hist: m as u32, lo, hi, ..Default::default() };
        let vec_op = |entry: &'static str, p: LbfgsParams, binds: &Bindings<'_>| {
            ctx.op(ctx.dispatch(FILE, entry, &p, binds, vec_groups))
        };
        let scalar_op = |mode: u32, slot: usize| {
            let p = LbfgsParams { mode, slot: slot as u32, ..base };
            ctx.op(ctx.dispatch(FILE, "lbfgs_scalar", &p, &[("S", &scalars)], (1, 1, 1)))
        };
        // d += (fa S[ia] + fb S[ib]) v
        let axpy = |v: &Tensor, ia: usize, fa: f32, ib: usize, fb: f32| {
            let p = LbfgsParams { ia: ia as u32, ib: ib as u32, fa, fb, ..base };
            vec_op("lbfgs_axpy", p, &[("S", &scalars), ("G", v), ("A", &dir)])
        };
        let mut slots = vec![];
        for k in 0..m {
            let (s, y) = (&hist_s[k], &hist_y[k]);
            let pair: &Bindings<'_> = &[("G", g), ("A", &prev_grad), ("B", y), ("C", s), ("D", &last_step)];
            let push = vec_op("lbfgs_pair", base, pair)
                .then(reduce::dot_forward(ctx, y, s, &scalars, S_YS, 1.0))
                .then(reduce::dot_forward(ctx, y, y, &scalars, S_YY, 1.0))
                .then(scalar_op(1, k));
            let al = S_RO + m + k;
            let first = reduce::dot_forward(ctx, s, &dir, &scalars, S_TMP, 1.0)
                .then(scalar_op(2, k))
                .then(axpy(y, al, -1.0, al, 0.0));
            let second = reduce::dot_forward(ctx, y, &dir, &scalars, S_TMP, 1.0)
                .then(scalar_op(3, k))
                .then(axpy(s, al, 1.0, S_BE, -1.0));
            slots.push(Slot { push, first, second });
        }
        let start_dir = vec_op("lbfgs_neg", base, &[("G", g), ("A", &dir)]);
        let first_iter = reduce::abs_sum_forward(ctx, g, &scalars, S_L1, 1.0).then(scalar_op(0, 0)).then(vec_op(
            "lbfgs_copy",
            base,
            &[("G", g), ("A", &prev_grad)],
        ));
        let scale_dir = vec_op("lbfgs_scale", base, &[("S", &scalars), ("A", &dir)]);
        let later_t = scalar_op(4, 0);
        let guard = reduce::dot_forward(ctx, g, &dir, &scalars, S_GD, 1.0).then(scalar_op(5, 0)).then(vec_op(
            "lbfgs_fallback",
            base,
            &[("S", &scalars), ("G", g), ("A", &dir)],
        ));
        let bounded = LbfgsParams { mode: cfg.bounds.is_some() as u32, ..base };
        let step = vec_op("lbfgs_step", bounded, &[("S", &scalars), ("A", &dir), ("B", x), ("C", &last_step)]);
        Ok(Lbfgs {
            cfg,
            scalars,
            dir,
            _prev_grad: prev_grad,
            _last_step: last_step,
            hist_s,
            hist_y,
            slots,
            first_iter,
            start_dir,
            scale_dir,
            later_t,
            guard,
            step,
        })
    }

    /// Records iteration `k` (1-based), after the ops that leave the gradient at x in `g`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, k: u64) {
        let m = self.cfg.history as u64;
        if k == 1 {
            self.first_iter.record(pass);
            self.start_dir.record(pass);
        } else {
            let newest = ((k - 2) % m) as usize;
            self.slots[newest].push.record(pass);
            self.start_dir.record(pass);
            let count = (k - 1).min(m) as usize;
            let ring = |j: usize| (newest + self.cfg.history - j) % self.cfg.history; // j = 0 newest
            for j in 0..count {
                self.slots[ring(j)].first.record(pass);
            }
            self.scale_dir.record(pass);
            for j in (0..count).rev() {
                self.slots[ring(j)].second.record(pass);
            }
            self.later_t.record(pass);
            self.guard.record(pass);
        }
        self.step.record(pass);
    }

    /// (pairs skipped for too little curvature, steepest-descent fallbacks taken) so far; reads
    /// the scalars back (for tests and diagnostics, not the loop).
    pub fn safeguard_counts(&self, ctx: &Context) -> Result<(u32, u32)> {
        let v = self.scalars.read(ctx)?;
        let c = counters(self.cfg.history);
        Ok((v[c] as u32, v[c + 1] as u32))
    }

    /// Sets rho of ring slot `slot` (pair k of the run sits in slot (k - 1) % history) to `rho`:
    /// a test hook to plant a pair of negative curvature, the only way (other than rounding) to
    /// make the two-loop recursion give a non-descent direction.
    pub fn set_rho(&self, ctx: &Context, slot: usize, rho: f32) -> Result<()> {
        let mut v = self.scalars.read(ctx)?;
        v[S_RO + slot] = rho;
        self.scalars.write(ctx, &v);
        Ok(())
    }

    /// Every buffer of the optimiser's state, named, in a fixed order (for checkpoints): the
    /// scalars (step length, dots, rho and alpha per pair, the safeguard counters), the direction,
    /// the previous gradient, the last step and the history ring (s, y per slot). With the
    /// iteration count ([`crate::runner::Graph::iterations`]) they determine every later step.
    pub fn state(&self) -> Vec<(String, &Tensor)> {
        let mut v = vec![
            ("lbfgs.scalars".to_string(), &self.scalars),
            ("lbfgs.dir".to_string(), &self.dir),
            ("lbfgs.prev_grad".to_string(), &self._prev_grad),
            ("lbfgs.last_step".to_string(), &self._last_step),
        ];
        for (k, (s, y)) in self.hist_s.iter().zip(&self.hist_y).enumerate() {
            v.push((format!("lbfgs.s{k}"), s));
            v.push((format!("lbfgs.y{k}"), y));
        }
        v
    }

    /// Bytes of the curvature-pair history.
    pub fn history_bytes(&self) -> u64 {
        self.hist_s.iter().chain(&self.hist_y).map(|t| t.bytes()).sum()
    }
}
