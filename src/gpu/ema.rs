//! Exponential moving average of a GPU tensor (`shaders/ema.wgsl`); CPU twin
//! `reference::ema_update`. Used by `stylize render --avg-decay` (iterate averaging, as
//! crowsonkb/style-transfer-pytorch): the rendered image is the bias-corrected average of the
//! iterates rather than the last one, which removes the high-frequency jitter Adam leaves.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};
use crate::error::Result;

const FILE: &str = "ema.wgsl";

uniform! {
    /// `shaders/ema.wgsl`'s `Params`.
    pub struct EmaParams { n: u32, gx: u32, decay: f32, one_minus_decay: f32 }
}

/// A = d A + (1 - d) X over `x.len()` elements, and state S = [t, 1 - d^t] advanced by one.
/// x, avg: same length; state: 2 elements.
pub fn ema_update(ctx: &Context, x: &Tensor, avg: &Tensor, state: &Tensor, decay: f64) -> Op {
    assert_eq!(x.len(), avg.len());
    assert!(state.len() >= 2);
    let n = x.len();
    let (gx, gy) = grid(ctx, n);
    let p = EmaParams { n: n as u32, gx, decay: decay as f32, one_minus_decay: (1.0 - decay) as f32 };
    ctx.op(ctx.dispatch(FILE, "ema_update", &p, &[("S", state), ("X", x), ("A", avg)], (gx, gy, 1)))
}

/// The running average of one tensor with its bias-correction state, both on the GPU.
pub struct Ema {
    /// d, the weight of the previous average.
    pub decay: f64,
    /// d-weighted sum of the iterates (not yet bias-corrected).
    pub avg: Tensor,
    /// [t, 1 - d^t].
    pub state: Tensor,
    /// [`ema_update`] of `avg` with the tensor given to [`Ema::new`]: record once per step.
    pub op: Op,
}

impl Ema {
    /// An average of `x`'s values, empty (t = 0) until the op first runs.
    pub fn new(ctx: &Context, x: &Tensor, decay: f64) -> Result<Ema> {
        let avg = Tensor::new(ctx, x.shape, "ema average")?;
        let state = Tensor::from_slice(ctx, [2, 1, 1], &[0.0, 0.0], "ema state")?;
        let op = ema_update(ctx, x, &avg, &state, decay);
        Ok(Ema { decay, avg, state, op })
    }

    /// Runs one update now (submitted, not waited for).
    pub fn update(&self, ctx: &Context) -> Result<()> {
        ctx.scoped("updating the image average", || {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.op.record(&mut pass);
            }
            ctx.queue.submit([enc.finish()]);
        })?;
        ctx.check_lost()
    }

    /// Number of updates so far.
    pub fn count(&self, ctx: &Context) -> Result<u32> {
        Ok(self.state.read(ctx)?[0] as u32)
    }

    /// The bias-corrected average A / (1 - d^t) (waits for the GPU). Before any update it is
    /// all zeros.
    pub fn read(&self, ctx: &Context) -> Result<Vec<f32>> {
        let s = self.state.read(ctx)?;
        let a = self.avg.read(ctx)?;
        if s[1] == 0.0 {
            return Ok(a);
        }
        Ok(a.into_iter().map(|v| v / s[1]).collect())
    }
}
