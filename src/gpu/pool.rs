//! 2x2 stride-2 pooling wrappers (`shaders/pool.wgsl`); CPU twins in `reference::*pool2x2_*`.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "pool.wgsl";

pub use crate::model::Pool;

uniform! {
    /// `shaders/pool.wgsl`'s `Params`: the forward input's shape.
    pub struct PoolParams { c: u32, h: u32, w: u32, gx: u32 }
}

fn params(x_shape: [usize; 3], gx: u32) -> PoolParams {
    PoolParams { c: x_shape[0] as u32, h: x_shape[1] as u32, w: x_shape[2] as u32, gx }
}

fn forward(ctx: &Context, entry: &'static str, x: &Tensor, y: &Tensor) -> Op {
    let [c, h, w] = x.shape;
    assert_eq!(y.shape, [c, h / 2, w / 2]);
    let (gx, gy) = grid(ctx, y.len());
    ctx.op(ctx.dispatch(FILE, entry, &params(x.shape, gx), &[("X", x), ("Out", y)], (gx, gy, 1)))
}

/// The backward `entry` for forward input shape `x_shape`, binding the forward input `x` if the
/// entry reads it (max does, avg does not).
fn backward(
    ctx: &Context,
    entry: &'static str,
    x_shape: [usize; 3],
    x: Option<&Tensor>,
    dy: &Tensor,
    dx: &Tensor,
) -> Op {
    let [c, h, w] = x_shape;
    assert_eq!(dy.shape, [c, h / 2, w / 2]);
    assert_eq!(dx.shape, x_shape);
    // One invocation per 2x2 block of dx.
    let (gx, gy) = grid(ctx, c * h.div_ceil(2) * w.div_ceil(2));
    let p = params(x_shape, gx);
    let binds: &[(&str, &dyn super::Bindable)] = match x {
        Some(x) => &[("X", x), ("G", dy), ("Out", dx)],
        None => &[("G", dy), ("Out", dx)],
    };
    ctx.op(ctx.dispatch(FILE, entry, &p, binds, (gx, gy, 1)))
}

/// x: (c, h, w) -> y: (c, h/2, w/2), window means.
pub fn avgpool2x2_forward(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    forward(ctx, "avgpool2x2_forward", x, y)
}
/// dx (c, h, w) from dy (c, h/2, w/2); x only supplies the shape here (it is not bound, so
/// that x may be a view of a buffer the runner reuses, even the one dx lives in).
pub fn avgpool2x2_backward(ctx: &Context, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Op {
    backward(ctx, "avgpool2x2_backward", x.shape, None, dy, dx)
}
/// x: (c, h, w) -> y: (c, h/2, w/2), window maxima.
pub fn maxpool2x2_forward(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    forward(ctx, "maxpool2x2_forward", x, y)
}
/// dx routes dy to each window's first maximum of the forward input x.
pub fn maxpool2x2_backward(ctx: &Context, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Op {
    backward(ctx, "maxpool2x2_backward", x.shape, Some(x), dy, dx)
}

/// The forward of `kind`.
pub fn pool_forward(ctx: &Context, kind: Pool, x: &Tensor, y: &Tensor) -> Op {
    match kind {
        Pool::Avg => avgpool2x2_forward(ctx, x, y),
        Pool::Max => maxpool2x2_forward(ctx, x, y),
    }
}
/// The backward of `kind`.
pub fn pool_backward(ctx: &Context, kind: Pool, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Op {
    match kind {
        Pool::Avg => avgpool2x2_backward(ctx, x, dy, dx),
        Pool::Max => maxpool2x2_backward(ctx, x, dy, dx),
    }
}
