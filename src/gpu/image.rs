//! The network's input transform (`shaders/image.wgsl`); CPU twin `reference::step::preprocess_*`.

use super::relu::grid;
use super::{Context, Op, Params, Tensor};

const FILE: &str = "image.wgsl";

pub use crate::vgg::Affine;

fn params(ctx: &Context, t: &Affine, plane: usize) -> (Params, (u32, u32, u32)) {
    let (gx, gy) = grid(ctx, 3 * plane);
    let mut p = Params::new().u(0, plane as u32).u(1, gx);
    for c in 0..3 {
        p = p.u(4 + c, t.src[c]).f(8 + c, t.a[c]).f(12 + c, t.b[c]);
    }
    (p, (gx, gy, 1))
}

/// x: pixels (3, h, w) in [0,1] RGB -> y: network input (3, h, w).
pub fn preprocess_forward(ctx: &Context, t: &Affine, x: &Tensor, y: &Tensor) -> Op {
    assert_eq!(x.shape[0], 3);
    assert_eq!(x.shape, y.shape);
    let (p, g) = params(ctx, t, x.shape[1] * x.shape[2]);
    ctx.op(ctx.dispatch(FILE, "preprocess_forward", p, &[&x.buf, &y.buf], g))
}

/// dx (pixels) from dy (network input).
pub fn preprocess_backward(ctx: &Context, t: &Affine, dy: &Tensor, dx: &Tensor) -> Op {
    assert_eq!(dy.shape[0], 3);
    assert_eq!(dy.shape, dx.shape);
    let (p, g) = params(ctx, t, dy.shape[1] * dy.shape[2]);
    ctx.op(ctx.dispatch(FILE, "preprocess_backward", p, &[&dy.buf, &dx.buf], g))
}
