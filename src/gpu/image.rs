//! The network's input transform (`shaders/image.wgsl`): the weights' affine convention and, with
//! a margin, the reflection padding of `--edge reflect`; CPU twin `reference::step::preprocess_*`.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "image.wgsl";

pub use crate::model::Affine;

uniform! {
    /// `shaders/image.wgsl`'s `Params`: per output channel c, y\[c\] = a\[c\] x\[src\[c\]\] + b\[c\],
    /// an (h, w) image padded by reflection by r pixels on every side.
    pub struct ImageParams { h: u32, w: u32, r: u32, gx: u32, src: [u32; 4], a: [f32; 4], b: [f32; 4] }
}

fn params(ctx: &Context, t: &Affine, image: [usize; 3], r: usize, n: usize) -> (ImageParams, (u32, u32, u32)) {
    let (gx, gy) = grid(ctx, n);
    let mut p = ImageParams { h: image[1] as u32, w: image[2] as u32, r: r as u32, gx, ..Default::default() };
    for c in 0..3 {
        p.src[c] = t.src[c];
        p.a[c] = t.a[c];
        p.b[c] = t.b[c];
    }
    (p, (gx, gy, 1))
}

/// The margin r of a (3, h, w) image and its (3, h + 2r, w + 2r) network input.
fn margin(image: [usize; 3], input: [usize; 3]) -> usize {
    let [c, h, w] = image;
    let [ci, hi, wi] = input;
    assert!(
        c == 3 && ci == 3 && hi >= h && hi - h == wi.wrapping_sub(w) && (hi - h) % 2 == 0,
        "{image:?} -> {input:?}"
    );
    (hi - h) / 2
}

/// x: pixels (3, h, w) in \[0,1\] RGB -> y: network input (3, h + 2r, w + 2r), the margin r
/// (from the shapes; 0 when they are equal) mirroring the image.
pub fn preprocess_forward(ctx: &Context, t: &Affine, x: &Tensor, y: &Tensor) -> Op {
    let r = margin(x.shape, y.shape);
    let (p, g) = params(ctx, t, x.shape, r, y.len());
    ctx.op(ctx.dispatch(FILE, "preprocess_forward", &p, &[("X", x), ("Y", y)], g))
}

/// dx (pixels (3, h, w)) from dy (network input (3, h + 2r, w + 2r)): every margin position's
/// gradient folded onto the pixel it mirrors.
pub fn preprocess_backward(ctx: &Context, t: &Affine, dy: &Tensor, dx: &Tensor) -> Op {
    let r = margin(dx.shape, dy.shape);
    let (p, g) = params(ctx, t, dx.shape, r, dx.len());
    ctx.op(ctx.dispatch(FILE, "preprocess_backward", &p, &[("X", dy), ("Y", dx)], g))
}
