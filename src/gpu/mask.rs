//! Per-pixel masks on CHW tensors (`shaders/mask.wgsl`), the building block of regional styles:
//! a style's Gram is taken over its tap's features weighted by its mask; CPU twins in
//! `reference::mask`. [`mask_levels`] resizes a mask to every resolution of the network.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "mask.wgsl";

uniform! {
    /// `shaders/mask.wgsl`'s `Params`.
    pub struct MaskParams { len: u32, n: u32, gx: u32, accumulate: u32 }
}

/// out (+)= x * m, m one weight per pixel broadcast over x's channels. x, out: (c, h, w); m:
/// h * w elements.
pub fn mask_mul(ctx: &Context, x: &Tensor, m: &Tensor, out: &Tensor, accumulate: bool) -> Op {
    let [_, h, w] = x.shape;
    assert_eq!(x.shape, out.shape);
    assert_eq!(m.len(), h * w);
    let (gx, gy) = grid(ctx, x.len());
    let p = MaskParams { len: x.len() as u32, n: (h * w) as u32, gx, accumulate: accumulate as u32 };
    ctx.op(ctx.dispatch(FILE, "mask_mul", &p, &[("X", x), ("M", m), ("Out", out)], (gx, gy, 1)))
}

/// The mask at the network's resolutions: `levels[k]` is the h x w mask after k 2x2 average
/// pools with the network's geometry (odd rows and columns dropped, as the pools drop them), so
/// a tap after k pools weights each position by the share of the mask's area it sees.
pub fn mask_levels(mask: &[f32], h: usize, w: usize, pools: usize) -> Vec<(Vec<f32>, usize, usize)> {
    assert_eq!(mask.len(), h * w);
    let mut levels = vec![(mask.to_vec(), h, w)];
    for _ in 0..pools {
        let (m, h, w) = levels.last().expect("level 0");
        let (oh, ow) = (h / 2, w / 2);
        let mut out = Vec::with_capacity(oh * ow);
        for i in 0..oh {
            for j in 0..ow {
                let at = |y: usize, x: usize| m[y * w + x];
                out.push(
                    0.25 * (at(2 * i, 2 * j) + at(2 * i, 2 * j + 1) + at(2 * i + 1, 2 * j) + at(2 * i + 1, 2 * j + 1)),
                );
            }
        }
        levels.push((out, oh, ow));
    }
    levels
}
