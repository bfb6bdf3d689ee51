//! Scalar losses and their gradients (`shaders/reduce.wgsl`); CPU twins in
//! `reference::{mse_*, tv_*, sum}`. Forward ops write `weight * loss` into one slot of a small
//! losses buffer, so all loss terms are read back together, and only when asked.

use super::kernel::{uniform, Bindings};
use super::relu::grid;
use super::{Context, Op, Tensor};

const FILE: &str = "reduce.wgsl";

uniform! {
    /// `shaders/reduce.wgsl`'s `Params`.
    pub struct ReduceParams {
        n: u32, groups: u32, h: u32, w: u32,
        scale: f32, slot: u32, accumulate: u32, gx: u32,
        gscale: f32, gaccumulate: u32,
    }
}

#[allow(clippy::too_many_arguments)]
/// Stage 1 `entry` over `x` (binding `inputs` and the partial sums as `Out`), then
/// `reduce_finish` into `out[slot]`; `p` holds the entry's own fields.
fn two_stage(
    ctx: &Context,
    entry: &'static str,
    x: &Tensor,
    inputs: &Bindings<'_>,
    p: ReduceParams,
    out: &Tensor,
    slot: usize,
    scale: f32,
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
    let p = ReduceParams { n: n as u32, groups, scale, slot: slot as u32, ..p };
    let mut binds: Vec<(&str, &dyn super::Bindable)> = inputs.to_vec();
    binds.push(("Out", &parts));
    let d1 = ctx.dispatch(FILE, entry, &p, &binds, (groups, 1, 1));
    let d2 = ctx.dispatch(FILE, "reduce_finish", &p, &[("X", &parts), ("Out", out)], (1, 1, 1));
    Op { dispatches: vec![d1, d2], scratch: vec![parts], textures: vec![] }
}

/// Stage 2 for another file's stage 1 (e.g. temporal.wgsl): out\[slot\] = scale * sum of the
/// first `groups` partial sums in `parts`, so every loss ends in the same deterministic tree sum.
pub(crate) fn finish(ctx: &Context, parts: &Tensor, groups: usize, out: &Tensor, slot: usize, scale: f32) -> Op {
    assert!(slot < out.len() && groups <= parts.len());
    let p = ReduceParams { groups: groups as u32, scale, slot: slot as u32, ..ReduceParams::default() };
    ctx.op(ctx.dispatch(FILE, "reduce_finish", &p, &[("X", parts), ("Out", out)], (1, 1, 1)))
}

/// out\[slot\] = weight * mean((x - t)^2).
pub fn mse_forward(ctx: &Context, x: &Tensor, t: &Tensor, out: &Tensor, slot: usize, weight: f32) -> Op {
    assert_eq!(x.len(), t.len());
    let inputs: &Bindings<'_> = &[("X", x), ("X4", x), ("Tg", t), ("T4", t)];
    two_stage(ctx, "mse_partial", x, inputs, ReduceParams::default(), out, slot, weight / x.len() as f32)
}

#[allow(clippy::too_many_arguments)]
/// [`mse_forward`] and [`mse_backward`] in one pass over x and t: out\[slot\] = weight *
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
    mse_forward_backward_split(ctx, x, t, out, slot, weight, weight, dx, accumulate)
}

#[allow(clippy::too_many_arguments)]
/// [`mse_forward_backward`] with the loss and the gradient weighted apart: out\[slot\] =
/// loss_weight * mean((x - t)^2) and dx (+)= grad_weight * 2 (x - t) / n. With
/// `--normalize-gradients` a term's gradient is taken weight-free (grad_weight 1) and its weight
/// applied after the L1 normalisation ([`add_l1_normalized`]), while the loss keeps its weight.
pub fn mse_forward_backward_split(
    ctx: &Context,
    x: &Tensor,
    t: &Tensor,
    out: &Tensor,
    slot: usize,
    loss_weight: f32,
    grad_weight: f32,
    dx: &Tensor,
    accumulate: bool,
) -> Op {
    mse_forward_backward_summed(ctx, x, t, out, slot, loss_weight, grad_weight, dx, accumulate, false)
}

#[allow(clippy::too_many_arguments)]
/// [`mse_forward_backward_split`] whose loss is added to out\[slot\] when `loss_accumulate`:
/// regional styles sum their per-style terms of one layer into that layer's slot.
pub fn mse_forward_backward_summed(
    ctx: &Context,
    x: &Tensor,
    t: &Tensor,
    out: &Tensor,
    slot: usize,
    loss_weight: f32,
    grad_weight: f32,
    dx: &Tensor,
    accumulate: bool,
    loss_accumulate: bool,
) -> Op {
    assert_eq!(x.len(), t.len());
    assert_eq!(x.len(), dx.len());
    let n = x.len() as f32;
    let p = ReduceParams {
        gscale: 2.0 * grad_weight / n,
        gaccumulate: accumulate as u32,
        accumulate: loss_accumulate as u32,
        ..Default::default()
    };
    let inputs: &Bindings<'_> = &[("X", x), ("X4", x), ("Tg", t), ("T4", t), ("D", dx), ("D4", dx)];
    two_stage(ctx, "mse_partial_grad", x, inputs, p, out, slot, loss_weight / n)
}

/// out\[slot\] (+)= scale * sum((x - t)^2): tiles add their share with the whole image's scale.
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
    let p = ReduceParams { accumulate: accumulate as u32, ..Default::default() };
    let inputs: &Bindings<'_> = &[("X", x), ("X4", x), ("Tg", t), ("T4", t)];
    two_stage(ctx, "mse_partial", x, inputs, p, out, slot, scale)
}

/// dx (+)= weight * 2 (x - t) / n.
pub fn mse_backward(ctx: &Context, x: &Tensor, t: &Tensor, dx: &Tensor, weight: f32, accumulate: bool) -> Op {
    assert_eq!(x.len(), t.len());
    assert_eq!(x.len(), dx.len());
    let n = x.len();
    let (gx, gy) = grid(ctx, n);
    let p = ReduceParams {
        n: n as u32,
        scale: 2.0 * weight / n as f32,
        accumulate: accumulate as u32,
        gx,
        ..Default::default()
    };
    ctx.op(ctx.dispatch(FILE, "mse_backward", &p, &[("X", x), ("Tg", t), ("Out", dx)], (gx, gy, 1)))
}

/// out\[slot\] = weight * tv(x), tv = (sum of squared horizontal and vertical neighbour
/// differences) / (c h w). x: (c, h, w).
pub fn tv_forward(ctx: &Context, x: &Tensor, out: &Tensor, slot: usize, weight: f32) -> Op {
    let [_, h, w] = x.shape;
    let p = ReduceParams { h: h as u32, w: w as u32, ..Default::default() };
    two_stage(ctx, "tv_partial", x, &[("X", x)], p, out, slot, weight / x.len() as f32)
}

/// dx (+)= d(weight * tv)/dx.
pub fn tv_backward(ctx: &Context, x: &Tensor, dx: &Tensor, weight: f32, accumulate: bool) -> Op {
    let [_, h, w] = x.shape;
    assert_eq!(dx.shape, x.shape);
    let n = x.len();
    let (gx, gy) = grid(ctx, n);
    let p = ReduceParams {
        n: n as u32,
        h: h as u32,
        w: w as u32,
        scale: 2.0 * weight / n as f32,
        accumulate: accumulate as u32,
        gx,
        ..Default::default()
    };
    ctx.op(ctx.dispatch(FILE, "tv_backward", &p, &[("X", x), ("Out", dx)], (gx, gy, 1)))
}

/// out\[slot\] = scale * sum(x).
pub fn sum_forward(ctx: &Context, x: &Tensor, out: &Tensor, slot: usize, scale: f32) -> Op {
    two_stage(ctx, "sum_partial", x, &[("X", x), ("X4", x)], ReduceParams::default(), out, slot, scale)
}

/// out\[slot\] = scale * (a . b).
pub fn dot_forward(ctx: &Context, a: &Tensor, b: &Tensor, out: &Tensor, slot: usize, scale: f32) -> Op {
    assert_eq!(a.len(), b.len());
    let inputs: &Bindings<'_> = &[("X", a), ("X4", a), ("Tg", b), ("T4", b)];
    two_stage(ctx, "dot_partial", a, inputs, ReduceParams::default(), out, slot, scale)
}

/// out\[slot\] = scale * sum(|x|).
pub fn abs_sum_forward(ctx: &Context, x: &Tensor, out: &Tensor, slot: usize, scale: f32) -> Op {
    two_stage(ctx, "abs_sum_partial", x, &[("X", x), ("X4", x)], ReduceParams::default(), out, slot, scale)
}

/// dx (+)= weight * g / (sum(|g|) + 1e-8): one loss term's gradient g at its tap, normalised by
/// its L1 norm and weighted, as jcjohnson/neural-style's `-normalize_gradients` (the CPU twin is
/// `reference::add_l1_normalized`). Three dispatches, no readback: the norm (`abs_sum_partial`,
/// `reduce_finish`) into a 4-byte buffer the op owns, then the scaled add. dx may not alias g.
pub fn add_l1_normalized(ctx: &Context, g: &Tensor, weight: f32, dx: &Tensor, accumulate: bool) -> Op {
    assert_eq!(g.len(), dx.len());
    let norm = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("L1 norm"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let norm_t = Tensor { buf: norm.clone(), shape: [1, 1, 1] };
    let sum = abs_sum_forward(ctx, g, &norm_t, 0, 1.0);
    let n = g.len();
    let (gx, gy) = grid(ctx, n);
    let p = ReduceParams { n: n as u32, scale: weight, accumulate: accumulate as u32, gx, ..Default::default() };
    let add = ctx.dispatch(FILE, "add_l1_normalized", &p, &[("X", g), ("Tg", &norm), ("Out", dx)], (gx, gy, 1));
    let mut op = sum.then(ctx.op(add));
    op.scratch.push(norm);
    op
}
