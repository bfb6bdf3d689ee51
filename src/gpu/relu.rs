//! ReLU wrappers (`shaders/relu.wgsl`); CPU twins in `reference::relu_*`.

use super::{Context, Op, Params, Tensor};

const FILE: &str = "relu.wgsl";

/// (workgroups along x, y) for n elements in 256-wide workgroups.
pub(crate) fn grid(ctx: &Context, n: usize) -> (u32, u32) {
    ctx.grid((n as u32).div_ceil(256))
}

/// y = max(x, 0). x, y: any shape, same length.
pub fn relu_forward(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    assert_eq!(x.len(), y.len());
    let (gx, gy) = grid(ctx, x.len());
    let p = Params::new().u(0, x.len() as u32).u(1, gx);
    ctx.op(ctx.dispatch(FILE, "relu_forward", p, &[&x.buf, &x.buf, &y.buf], (gx, gy, 1)))
}

/// dx = dy * (y > 0), y the forward output.
pub fn relu_backward(ctx: &Context, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Op {
    assert_eq!(y.len(), dy.len());
    assert_eq!(y.len(), dx.len());
    let (gx, gy) = grid(ctx, y.len());
    let p = Params::new().u(0, y.len() as u32).u(1, gx);
    ctx.op(ctx.dispatch(FILE, "relu_backward", p, &[&y.buf, &dy.buf, &dx.buf], (gx, gy, 1)))
}
