//! L-BFGS on a GPU tensor (`shaders/lbfgs.wgsl`, dots from `reduce.wgsl`); CPU twin
//! `reference::Lbfgs`. torch.optim.LBFGS's update without line search (jcjohnson/neural-style's
//! setting), history kept in a ring of GPU buffers; the two-loop recursion is recorded per
//! iteration from ops built once per history slot, so nothing is created or read back in the loop.
//!
//! One difference from torch: a curvature pair with y.s <= 1e-10 still takes its ring slot (with
//! rho = 0, so it contributes nothing) rather than being dropped, because deciding that would
//! need a readback. Such pairs are rare in practice (none in our tests).

use super::relu::grid;
use super::{reduce, Context, Op, Params, Tensor};
use crate::error::Result;

const FILE: &str = "lbfgs.wgsl";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsConfig {
    /// Curvature pairs remembered (jcjohnson: 100).
    pub history: usize,
    /// Step length (torch's lr; 1 in jcjohnson/neural-style).
    pub lr: f32,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig { history: 100, lr: 1.0 }
    }
}

// Scalar slots; must match shaders/lbfgs.wgsl.
const S_TMP: usize = 4;
const S_BE: usize = 5;
const S_L1: usize = 6;
const S_YS: usize = 2;
const S_YY: usize = 3;
const S_RO: usize = 8;

/// Ops of one history slot.
struct Slot {
    /// New pair into this slot, its dots and its rho.
    push: Op,
    /// First loop: al = rho (s . q); q -= al y.
    first: Op,
    /// Second loop: be = rho (y . r); r += (al - be) s.
    second: Op,
}

pub struct Lbfgs {
    cfg: LbfgsConfig,
    pub scalars: Tensor,
    /// d: the search direction (q / r of the two-loop recursion).
    pub dir: Tensor,
    _prev_grad: Tensor,
    hist_s: Vec<Tensor>,
    hist_y: Vec<Tensor>,
    slots: Vec<Slot>,
    first_iter: Op,
    start_dir: Op,
    scale_dir: Op,
    later_t: Op,
    step: Op,
    _dummies: Vec<Tensor>,
}

impl Lbfgs {
    /// L-BFGS updating `x` from the gradient `g` (same length) left by each evaluation.
    pub fn new(ctx: &Context, x: &Tensor, g: &Tensor, cfg: LbfgsConfig) -> Result<Lbfgs> {
        assert_eq!(x.len(), g.len());
        assert!(cfg.history >= 1);
        let n = x.len();
        let m = cfg.history;
        let shape = [n, 1, 1];
        let scalars = Tensor::new(ctx, [S_RO + 2 * m, 1, 1], "lbfgs scalars")?;
        let dir = Tensor::new(ctx, shape, "lbfgs direction")?;
        let prev_grad = Tensor::new(ctx, shape, "lbfgs previous gradient")?;
        let mut hist_s = vec![];
        let mut hist_y = vec![];
        for _ in 0..m {
            hist_s.push(Tensor::new(ctx, shape, "lbfgs s")?);
            hist_y.push(Tensor::new(ctx, shape, "lbfgs y")?);
        }
        // Distinct dummies for unused read-write bindings (a buffer may not be bound twice
        // writable in one dispatch).
        let dummies: Vec<Tensor> = (0..3).map(|_| Tensor::new(ctx, [1, 1, 1], "lbfgs dummy")).collect::<Result<_>>()?;
        let (gx, gy) = grid(ctx, n);
        let vec_groups = (gx, gy, 1);
        let base = Params::new().u(0, n as u32).u(1, gx).f(8, cfg.lr).u(9, m as u32);
        let (d0, d1, d2) = (&dummies[0].buf, &dummies[1].buf, &dummies[2].buf);
        let vec_op = |entry: &'static str, p: Params, bufs: [&wgpu::Buffer; 5]| {
            ctx.op(ctx.dispatch(
                FILE,
                entry,
                p,
                &[&scalars.buf, bufs[0], bufs[1], bufs[2], bufs[3], bufs[4]],
                vec_groups,
            ))
        };
        let scalar_op = |mode: u32, slot: usize| {
            let p = base.u(2, mode).u(3, slot as u32);
            ctx.op(ctx.dispatch(FILE, "lbfgs_scalar", p, &[&scalars.buf, &g.buf, d0, d1, d2, &g.buf], (1, 1, 1)))
        };
        // d += (fa S[ia] + fb S[ib]) v
        let axpy = |v: &Tensor, ia: usize, fa: f32, ib: usize, fb: f32| {
            let p = base.u(4, ia as u32).u(5, ib as u32).f(6, fa).f(7, fb);
            vec_op("lbfgs_axpy", p, [&v.buf, &dir.buf, d1, d2, &v.buf])
        };
        let mut slots = vec![];
        for k in 0..m {
            let (s, y) = (&hist_s[k], &hist_y[k]);
            let push = vec_op("lbfgs_pair", base, [&g.buf, &prev_grad.buf, &y.buf, &s.buf, &dir.buf])
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
        let start_dir = vec_op("lbfgs_neg", base, [&g.buf, &dir.buf, d1, d2, &g.buf]);
        let first_iter = reduce::abs_sum_forward(ctx, g, &scalars, S_L1, 1.0).then(scalar_op(0, 0)).then(vec_op(
            "lbfgs_copy",
            base,
            [&g.buf, &prev_grad.buf, d1, d2, &g.buf],
        ));
        let scale_dir = vec_op("lbfgs_scale", base, [&g.buf, &dir.buf, d1, d2, &g.buf]);
        let later_t = scalar_op(4, 0);
        let step = vec_op("lbfgs_step", base, [&g.buf, &dir.buf, &x.buf, d2, &g.buf]);
        Ok(Lbfgs {
            cfg,
            scalars,
            dir,
            _prev_grad: prev_grad,
            hist_s,
            hist_y,
            slots,
            first_iter,
            start_dir,
            scale_dir,
            later_t,
            step,
            _dummies: dummies,
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
        }
        self.step.record(pass);
    }

    pub fn history_bytes(&self) -> u64 {
        self.hist_s.iter().chain(&self.hist_y).map(|t| t.bytes()).sum()
    }
}
