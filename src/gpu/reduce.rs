//! Scalar losses and their gradients (`shaders/reduce.wgsl`); CPU twins in
//! `reference::{mse_*, tv_*, sum}`. Forward ops write `weight * loss` into one slot of a small
//! losses buffer, so all loss terms are read back together, and only when asked.

use super::relu::grid;
use super::{Context, Op, Params, Tensor};

const FILE: &str = "reduce.wgsl";

#[allow(clippy::too_many_arguments)]
fn two_stage(
    ctx: &Context,
    entry: &'static str,
    x: &Tensor,
    t: &wgpu::Buffer,
    p: Params,
    out: &Tensor,
    slot: usize,
    scale: f32,
    dx: Option<&Tensor>,
) -> Op {
    assert!(slot < out.len(), "loss slot {slot} outside a buffer of {}", out.len());
    let n = x.len();
    // >= 16 loads per lane (vec4s, but single elements for TV), at most 512 partial sums.
    let per_load = if entry == "tv_partial" { 1 } else { 4 };
    let groups = n.div_ceil(per_load * 256 * 16).clamp(1, 512) as u32;
    let parts = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("partial sums"),
        size: (groups as u64 * 4).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let p = p.u(0, n as u32).u(1, groups).f(4, scale).u(5, slot as u32);
    // Without a gradient the read-write D, D4 bindings take the partial sums (never written).
    let d = dx.map_or(&parts, |d| &d.buf);
    let d1 = ctx.dispatch(FILE, entry, p, &[&x.buf, t, &parts, &x.buf, t, d, d], (groups, 1, 1));
    let d2 = ctx.dispatch(
        FILE,
        "reduce_finish",
        p,
        &[&parts, &parts, &out.buf, &parts, &parts, &out.buf, &out.buf],
        (1, 1, 1),
    );
    Op { dispatches: vec![d1, d2], scratch: vec![parts], textures: vec![] }
}

/// out[slot] = weight * mean((x - t)^2).
pub fn mse_forward(ctx: &Context, x: &Tensor, t: &Tensor, out: &Tensor, slot: usize, weight: f32) -> Op {
    assert_eq!(x.len(), t.len());
    two_stage(ctx, "mse_partial", x, &t.buf, Params::new(), out, slot, weight / x.len() as f32, None)
}

/// [`mse_forward`] and [`mse_backward`] in one pass over x and t: out[slot] = weight *
/// mean((x - t)^2) and dx (+)= weight * 2 (x - t) / n.
pub fn mse_forward_backward(
    ctx: &Context,
    x: &Tensor,
    t: &Tensor,
    out: &Tensor,
    slot: usize,
    weight: f32,
    dx: &Tensor,
    accumulate: bool,
) -> Op {
    assert_eq!(x.len(), t.len());
    assert_eq!(x.len(), dx.len());
    let n = x.len() as f32;
    let p = Params::new().f(8, 2.0 * weight / n).u(9, accumulate as u32);
    two_stage(ctx, "mse_partial_grad", x, &t.buf, p, out, slot, weight / n, Some(dx))
}

/// out[slot] (+)= scale * sum((x - t)^2): tiles add their share with the whole image's scale.
pub fn mse_sum_forward(
    ctx: &Context,
    x: &Tensor,
    t: &Tensor,
    out: &Tensor,
    slot: usize,
    scale: f32,
    accumulate: bool,
) -> Op {
    assert_eq!(x.len(), t.len());
    two_stage(ctx, "mse_partial", x, &t.buf, Params::new().u(6, accumulate as u32), out, slot, scale, None)
}

/// dx (+)= weight * 2 (x - t) / n.
pub fn mse_backward(ctx: &Context, x: &Tensor, t: &Tensor, dx: &Tensor, weight: f32, accumulate: bool) -> Op {
    assert_eq!(x.len(), t.len());
    assert_eq!(x.len(), dx.len());
    let n = x.len();
    let (gx, gy) = grid(ctx, n);
    let p = Params::new().u(0, n as u32).f(4, 2.0 * weight / n as f32).u(6, accumulate as u32).u(7, gx);
    ctx.op(ctx.dispatch(
        FILE,
        "mse_backward",
        p,
        &[&x.buf, &t.buf, &dx.buf, &x.buf, &t.buf, &dx.buf, &dx.buf],
        (gx, gy, 1),
    ))
}

/// out[slot] = weight * tv(x), tv = (sum of squared horizontal and vertical neighbour
/// differences) / (c h w). x: (c, h, w).
pub fn tv_forward(ctx: &Context, x: &Tensor, out: &Tensor, slot: usize, weight: f32) -> Op {
    let [_, h, w] = x.shape;
    let p = Params::new().u(2, h as u32).u(3, w as u32);
    two_stage(ctx, "tv_partial", x, &x.buf, p, out, slot, weight / x.len() as f32, None)
}

/// dx (+)= d(weight * tv)/dx.
pub fn tv_backward(ctx: &Context, x: &Tensor, dx: &Tensor, weight: f32, accumulate: bool) -> Op {
    let [_, h, w] = x.shape;
    assert_eq!(dx.shape, x.shape);
    let n = x.len();
    let (gx, gy) = grid(ctx, n);
    let p = Params::new()
        .u(0, n as u32)
        .u(2, h as u32)
        .u(3, w as u32)
        .f(4, 2.0 * weight / n as f32)
        .u(6, accumulate as u32)
        .u(7, gx);
    ctx.op(ctx.dispatch(
        FILE,
        "tv_backward",
        p,
        &[&x.buf, &x.buf, &dx.buf, &x.buf, &x.buf, &dx.buf, &dx.buf],
        (gx, gy, 1),
    ))
}

/// out[slot] = scale * sum(x).
pub fn sum_forward(ctx: &Context, x: &Tensor, out: &Tensor, slot: usize, scale: f32) -> Op {
    two_stage(ctx, "sum_partial", x, &x.buf, Params::new(), out, slot, scale, None)
}

/// out[slot] = scale * (a . b).
pub fn dot_forward(ctx: &Context, a: &Tensor, b: &Tensor, out: &Tensor, slot: usize, scale: f32) -> Op {
    assert_eq!(a.len(), b.len());
    two_stage(ctx, "dot_partial", a, &b.buf, Params::new(), out, slot, scale, None)
}

/// out[slot] = scale * sum(|x|).
pub fn abs_sum_forward(ctx: &Context, x: &Tensor, out: &Tensor, slot: usize, scale: f32) -> Op {
    two_stage(ctx, "abs_sum_partial", x, &x.buf, Params::new(), out, slot, scale, None)
}
