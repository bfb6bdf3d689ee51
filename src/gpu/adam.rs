//! Adam on a GPU tensor (`shaders/adam.wgsl`); CPU twin `reference::adam_step`.

use super::relu::grid;
use super::{Context, Op, Params, Tensor};
use crate::error::Result;

const FILE: &str = "adam.wgsl";

#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f32,
    /// beta1 and beta2 are f64 so 1 - beta is exact before rounding to f32.
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f32,
    /// Clamp the parameters to this range after each step (pixels stay in [0, 1]).
    pub clamp: Option<(f32, f32)>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-8, clamp: None }
    }
}

/// Optimiser state living on the GPU: moments and the step counter.
pub struct Adam {
    pub m: Tensor,
    pub v: Tensor,
    pub state: Tensor,
    /// adam_tick then adam_step: record once per iteration.
    pub op: Op,
}

impl Adam {
    /// Adam over `param` driven by `grad` (same length).
    pub fn new(ctx: &Context, param: &Tensor, grad: &Tensor, cfg: AdamConfig) -> Result<Adam> {
        assert_eq!(param.len(), grad.len());
        let m = Tensor::new(ctx, param.shape, "adam m")?;
        let v = Tensor::new(ctx, param.shape, "adam v")?;
        let state = Tensor::from_slice(ctx, [4, 1, 1], &[0.0; 4], "adam state")?;
        let n = param.len();
        let (gx, gy) = grid(ctx, n);
        let (lo, hi) = cfg.clamp.unwrap_or((0.0, 0.0));
        let p = Params::new()
            .u(0, n as u32)
            .u(1, gx)
            .f(2, cfg.lr)
            .f(3, cfg.beta1 as f32)
            .f(4, cfg.beta2 as f32)
            .f(5, cfg.eps)
            .u(6, cfg.clamp.is_some() as u32)
            .f(8, lo)
            .f(9, hi)
            .f(10, (1.0 - cfg.beta1 as f64) as f32)
            .f(11, (1.0 - cfg.beta2 as f64) as f32);
        let bufs = [&state.buf, &grad.buf, &param.buf, &m.buf, &v.buf];
        let tick = ctx.dispatch(FILE, "adam_tick", p, &bufs, (1, 1, 1));
        let step = ctx.dispatch(FILE, "adam_step", p, &bufs, (gx, gy, 1));
        Ok(Adam { m, v, state, op: Op { dispatches: vec![tick, step], scratch: vec![], textures: vec![] } })
    }

    /// Forget the moments and the step count (e.g. at the start of a new scale).
    pub fn reset(&self, ctx: &Context) {
        self.m.fill(ctx, 0.0);
        self.v.fill(ctx, 0.0);
        self.state.write(ctx, &[0.0; 4]);
    }
}
