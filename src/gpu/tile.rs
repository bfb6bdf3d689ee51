//! Tiled-rendering helpers (`shaders/tile.wgsl`); CPU twin `reference::mask_rect`.

use super::relu::grid;
use super::{Context, Op, Params, Tensor};

const FILE: &str = "tile.wgsl";

/// y = x inside rects[level] = (y0, x0, y1, x1) of every plane, 0 outside. `rects` is a buffer of
/// u32 quadruples, one per level, rewritten per tile.
pub fn mask_rect(ctx: &Context, rects: &wgpu::Buffer, level: usize, x: &Tensor, y: &Tensor) -> Op {
    assert_eq!(x.shape, y.shape);
    let [_, h, w] = x.shape;
    let (gx, gy) = grid(ctx, x.len());
    let p = Params::new().u(0, x.len() as u32).u(1, gx).u(2, h as u32).u(3, w as u32).u(4, level as u32);
    ctx.op(ctx.dispatch(FILE, "mask_rect", p, &[rects, &x.buf, &y.buf], (gx, gy, 1)))
}
