//! Tiled-rendering helpers and the crop of `--edge reflect` (`shaders/tile.wgsl`); CPU twins
//! `reference::mask_rect`, `reference::crop_forward`, `reference::crop_backward`.

use super::kernel::uniform;
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "tile.wgsl";

uniform! {
    /// `shaders/tile.wgsl`'s `Params`.
    pub struct TileParams {
        n: u32, gx: u32, h: u32, w: u32,
        level: u32, oy: u32, ox: u32, acc: u32,
        hh: u32, ww: u32, _p0: u32, _p1: u32,
    }
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

fn crop_params(ctx: &Context, full: [usize; 3], at: [usize; 2], out: [usize; 3], n: usize, acc: bool) -> TileParams {
    let ([c, h, w], [oy, ox], [co, hh, ww]) = (full, at, out);
    assert!(c == co && oy + hh <= h && ox + ww <= w, "crop {out:?} at {at:?} of {full:?}");
    let (gx, _) = grid(ctx, n);
    TileParams {
        n: n as u32,
        gx,
        h: h as u32,
        w: w as u32,
        oy: oy as u32,
        ox: ox as u32,
        acc: acc as u32,
        hh: hh as u32,
        ww: ww as u32,
        ..Default::default()
    }
}

/// y (c, hh, ww) = the window of x (c, h, w) whose top-left corner is `at` = (oy, ox).
pub fn crop_forward(ctx: &Context, x: &Tensor, at: [usize; 2], y: &Tensor) -> Op {
    let p = crop_params(ctx, x.shape, at, y.shape, y.len(), false);
    let (gx, gy) = grid(ctx, y.len());
    ctx.op(ctx.dispatch(FILE, "crop_forward", &p, &[("X", x), ("Y", y)], (gx, gy, 1)))
}

/// The adjoint of [`crop_forward`]: dx (c, h, w) = dy (c, hh, ww) at `at`, 0 elsewhere (added
/// to dx when `accumulate`).
pub fn crop_backward(ctx: &Context, dy: &Tensor, at: [usize; 2], dx: &Tensor, accumulate: bool) -> Op {
    let p = crop_params(ctx, dx.shape, at, dy.shape, dx.len(), accumulate);
    let (gx, gy) = grid(ctx, dx.len());
    ctx.op(ctx.dispatch(FILE, "crop_backward", &p, &[("X", dy), ("Y", dx)], (gx, gy, 1)))
}
