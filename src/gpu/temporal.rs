//! The short-term temporal loss of video frames (`shaders/temporal.wgsl`, Ruder et al. 2016) and
//! its gradient, fused, for the per-iteration graph; CPU twin `reference::flow::temporal_loss`.

use super::kernel::uniform;
use super::{Context, Op, Tensor};
use crate::error::Result;

const FILE: &str = "temporal.wgsl";

uniform! {
    /// `shaders/temporal.wgsl`'s `Params`.
    pub struct TemporalParams {
        n: u32, plane: u32, groups: u32, accumulate: u32, gscale: f32, pad0: u32, pad1: u32, pad2: u32
    }
}

/// out\[slot\] = weight * sum m² (x - t)² / n and dx (+)= 2 weight m² (x - t) / n, with x, t and dx
/// (c, h, w), the mask m (1, h, w) broadcast over the channels, n = c h w. Owns its partial sums;
/// reduce.wgsl's `reduce_finish` sums them.
#[allow(clippy::too_many_arguments)]
pub fn temporal_loss(
    ctx: &Context,
    x: &Tensor,
    t: &Tensor,
    m: &Tensor,
    out: &Tensor,
    slot: usize,
    weight: f32,
    dx: &Tensor,
    accumulate: bool,
) -> Result<Op> {
    let [_, h, w] = x.shape;
    assert_eq!((t.shape, dx.shape, m.shape), (x.shape, x.shape, [1, h, w]));
    assert!(slot < out.len());
    let n = x.len();
    // About 16 elements per lane, as reduce.wgsl's stage 1; at most 1024 partial sums.
    let groups = n.div_ceil(256 * 16).clamp(1, 1024);
    let part = Tensor::new(ctx, [groups, 1, 1], "temporal partial sums")?;
    let p = TemporalParams {
        n: n as u32,
        plane: (h * w) as u32,
        groups: groups as u32,
        accumulate: accumulate as u32,
        gscale: (2.0 * weight as f64 / n as f64) as f32,
        ..TemporalParams::default()
    };
    let stage1 = ctx.dispatch(
        FILE,
        "temporal_partial",
        &p,
        &[("X", x), ("T", t), ("M", m), ("D", dx), ("Part", &part)],
        (groups as u32, 1, 1),
    );
    let a = ctx.op(stage1);
    let b = super::reduce::finish(ctx, &part, groups, out, slot, (weight as f64 / n as f64) as f32);
    let mut op = a.then(b);
    op.scratch.push(part.buf);
    Ok(op)
}
