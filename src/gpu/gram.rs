//! Gram matrix wrappers (`shaders/gram.wgsl`); CPU twins in `reference::gram_*`.

use super::{Context, Op, Params, Tensor};

const FILE: &str = "gram.wgsl";

/// Positions per split of the Gram's long axis: enough splits to fill the GPU (about 512
/// workgroups) but each at least 256 positions long, a multiple of the 16-wide tile.
fn chunking(c: usize, n: usize) -> (u32, u32) {
    let tiles = (c.div_ceil(16) * c.div_ceil(16)).max(1);
    let want_splits = (512 / tiles).max(1);
    let chunk = n.div_ceil(want_splits).max(256).next_multiple_of(16);
    (chunk as u32, n.div_ceil(chunk).max(1) as u32)
}

/// G = F F^T / (c * h * w). f: (c, h, w); g: (c, c, 1).
pub fn gram_forward(ctx: &Context, f: &Tensor, g: &Tensor) -> Op {
    let [c, h, w] = f.shape;
    gram_forward_scaled(ctx, f, g, 1.0 / (c * h * w) as f32, false)
}

/// G (+)= scale * F F^T: tiled rendering sums the tiles' shares with the whole image's scale.
pub fn gram_forward_scaled(ctx: &Context, f: &Tensor, g: &Tensor, scale: f32, accumulate: bool) -> Op {
    let [c, h, w] = f.shape;
    let n = h * w;
    assert_eq!(g.len(), c * c);
    let (chunk, splits) = chunking(c, n);
    let parts = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("gram partials"),
        size: (splits as u64) * (c * c) as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let p = Params::new()
        .u(0, c as u32)
        .u(1, n as u32)
        .u(2, chunk)
        .u(3, splits)
        .f(4, scale)
        .u(5, accumulate as u32);
    let t = (c as u32).div_ceil(16);
    let d1 = ctx.dispatch(FILE, "gram_partial", p, &[&f.buf, &f.buf, &parts], (t, t, splits));
    let d2 = ctx.dispatch(FILE, "gram_finish", p, &[&f.buf, &parts, &g.buf], (((c * c) as u32).div_ceil(256), 1, 1));
    Op { dispatches: vec![d1, d2], scratch: vec![parts] }
}

/// df (+)= (dg + dg^T) F / (c * h * w). f, df: (c, h, w); dg: (c, c, 1).
pub fn gram_backward(ctx: &Context, f: &Tensor, dg: &Tensor, df: &Tensor, accumulate: bool) -> Op {
    let [c, h, w] = f.shape;
    gram_backward_scaled(ctx, f, dg, df, 1.0 / (c * h * w) as f32, accumulate)
}

/// df (+)= scale * (dg + dg^T) F.
pub fn gram_backward_scaled(ctx: &Context, f: &Tensor, dg: &Tensor, df: &Tensor, scale: f32, accumulate: bool) -> Op {
    let [c, h, w] = f.shape;
    let n = h * w;
    assert_eq!(dg.len(), c * c);
    assert_eq!(df.shape, f.shape);
    let p = Params::new().u(0, c as u32).u(1, n as u32).f(4, scale).u(5, accumulate as u32);
    let groups = ((n as u32).div_ceil(16), (c as u32).div_ceil(16), 1);
    ctx.op(ctx.dispatch(FILE, "gram_backward", p, &[&f.buf, &dg.buf, &df.buf], groups))
}
