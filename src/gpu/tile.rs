//! Tiled-rendering helpers (`shaders/tile.wgsl`); CPU twin `reference::mask_rect`.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "tile.wgsl";

uniform! {
    /// `shaders/tile.wgsl`'s `Params`.
    pub struct TileParams { n: u32, gx: u32, h: u32, w: u32, level: u32, _p0: u32, _p1: u32, _p2: u32 }
}

/// y = x inside rects\[level\] = (y0, x0, y1, x1) of every plane, 0 outside. `rects` is a buffer of
/// u32 quadruples, one per level, rewritten per tile.
pub fn mask_rect(ctx: &Context, rects: &wgpu::Buffer, level: usize, x: &Tensor, y: &Tensor) -> Op {
    assert_eq!(x.shape, y.shape);
    let [_, h, w] = x.shape;
    let (gx, gy) = grid(ctx, x.len());
    let p = TileParams { n: x.len() as u32, gx, h: h as u32, w: w as u32, level: level as u32, ..Default::default() };
    ctx.op(ctx.dispatch(FILE, "mask_rect", &p, &[("R", rects), ("X", x), ("Y", y)], (gx, gy, 1)))
}
