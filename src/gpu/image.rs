//! The network's input transform (`shaders/image.wgsl`); CPU twin `reference::step::preprocess_*`.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "image.wgsl";

pub use crate::model::Affine;

uniform! {
    /// `shaders/image.wgsl`'s `Params`: per output channel c, y\[c\] = a\[c\] x\[src\[c\]\] + b\[c\].
    pub struct ImageParams { plane: u32, gx: u32, _p0: u32, _p1: u32, src: [u32; 4], a: [f32; 4], b: [f32; 4] }
}

fn params(ctx: &Context, t: &Affine, plane: usize) -> (ImageParams, (u32, u32, u32)) {
    let (gx, gy) = grid(ctx, 3 * plane);
    let mut p = ImageParams { plane: plane as u32, gx, ..Default::default() };
    for c in 0..3 {
        p.src[c] = t.src[c];
        p.a[c] = t.a[c];
        p.b[c] = t.b[c];
    }
    (p, (gx, gy, 1))
}

/// x: pixels (3, h, w) in \[0,1\] RGB -> y: network input (3, h, w).
pub fn preprocess_forward(ctx: &Context, t: &Affine, x: &Tensor, y: &Tensor) -> Op {
    assert_eq!(x.shape[0], 3);
    assert_eq!(x.shape, y.shape);
    let (p, g) = params(ctx, t, x.shape[1] * x.shape[2]);
    ctx.op(ctx.dispatch(FILE, "preprocess_forward", &p, &[("X", x), ("Y", y)], g))
}

/// dx (pixels) from dy (network input).
pub fn preprocess_backward(ctx: &Context, t: &Affine, dy: &Tensor, dx: &Tensor) -> Op {
    assert_eq!(dy.shape[0], 3);
    assert_eq!(dy.shape, dx.shape);
    let (p, g) = params(ctx, t, dy.shape[1] * dy.shape[2]);
    ctx.op(ctx.dispatch(FILE, "preprocess_backward", &p, &[("X", dy), ("Y", dx)], g))
}
