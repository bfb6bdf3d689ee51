//! Adam on a GPU tensor (`shaders/adam.wgsl`); CPU twin `reference::adam_step`.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};
use crate::error::Result;

const FILE: &str = "adam.wgsl";

uniform! {
    /// `shaders/adam.wgsl`'s `Params`.
    pub struct AdamParams {
        n: u32, gx: u32,
        lr: f32, beta1: f32, beta2: f32, eps: f32,
        clamp: u32, _p: u32,
        lo: f32, hi: f32,
        one_minus_beta1: f32, one_minus_beta2: f32,
    }
}

/// Adam hyper-parameters (torch.optim.Adam's names).
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    /// Step size.
    pub lr: f32,
    /// beta1 and beta2 are f64 so 1 - beta is exact before rounding to f32.
    pub beta1: f64,
    /// Decay of the second-moment average.
    pub beta2: f64,
    /// Added to the denominator.
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
    /// First-moment average.
    pub m: Tensor,
    /// Second-moment average.
    pub v: Tensor,
    /// [t, 1 - beta1^t, 1 - beta2^t, 0].
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
        let p = AdamParams {
            n: n as u32,
            gx,
            lr: cfg.lr,
            beta1: cfg.beta1 as f32,
            beta2: cfg.beta2 as f32,
            eps: cfg.eps,
            clamp: cfg.clamp.is_some() as u32,
            lo,
            hi,
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            ..Default::default()
        };
        let tick = ctx.dispatch(FILE, "adam_tick", &p, &[("S", &state)], (1, 1, 1));
        let step = ctx.dispatch(
            FILE,
            "adam_step",
            &p,
            &[("S", &state), ("G", grad), ("Prm", param), ("M", &m), ("V", &v)],
            (gx, gy, 1),
        );
        Ok(Adam { m, v, state, op: Op { dispatches: vec![tick, step], scratch: vec![], textures: vec![] } })
    }

    /// Forget the moments and the step count (e.g. at the start of a new scale).
    pub fn reset(&self, ctx: &Context) {
        self.m.fill(ctx, 0.0);
        self.v.fill(ctx, 0.0);
        self.state.write(ctx, &[0.0; 4]);
    }
}
