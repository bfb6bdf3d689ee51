//! conv3x3 wrappers (`shaders/conv3x3.wgsl`); CPU twins in `reference::conv3x3_*`.

use super::{Context, Op, Params, Tensor};

const FILE: &str = "conv3x3.wgsl";

/// Weights of a backward-data pass: w~[c][o][ky][kx] = w[o][c][2-ky][2-kx] (in/out swapped,
/// 3x3 flipped), computed once at load so the backward is a plain forward convolution.
pub fn transpose_flip(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    assert_eq!(w.len(), cout * cin * 9);
    let mut t = vec![0.0; w.len()];
    for o in 0..cout {
        for c in 0..cin {
            for k in 0..9 {
                t[(c * cout + o) * 9 + (8 - k)] = w[(o * cin + c) * 9 + k];
            }
        }
    }
    t
}

fn groups(cout: usize, h: usize, w: usize) -> (u32, u32, u32) {
    ((w as u32).div_ceil(8), (h as u32).div_ceil(8), (cout as u32).div_ceil(8))
}

/// y = conv3x3(x, w) + b, ReLU fused when `relu`.
/// x: (cin, h, w); w: (cout, cin, 9) OIHW; b: (cout); y: (cout, h, w).
pub fn conv3x3_forward(ctx: &Context, x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor, relu: bool) -> Op {
    let [cin, h, wd] = x.shape;
    let cout = y.shape[0];
    assert_eq!(y.shape, [cout, h, wd]);
    assert_eq!(w.len(), cout * cin * 9);
    assert_eq!(b.len(), cout);
    let p = Params::new().u(0, cin as u32).u(1, cout as u32).u(2, h as u32).u(3, wd as u32).u(4, relu as u32).u(6, 1);
    ctx.op(ctx.dispatch(FILE, "conv3x3_forward", p, &[&x.buf, &w.buf, &b.buf, &x.buf, &y.buf], groups(cout, h, wd)))
}

/// dx = conv3x3_backward_input(dy * (mask > 0)) with `wt` = [`transpose_flip`] of the forward
/// weights. dy: (cout, h, w); mask: the ReLU output of the same shape, if the forward fused one;
/// wt: (cin, cout, 9); dx: (cin, h, w).
pub fn conv3x3_backward_input(ctx: &Context, dy: &Tensor, mask: Option<&Tensor>, wt: &Tensor, dx: &Tensor) -> Op {
    let [cout, h, wd] = dy.shape;
    let cin = dx.shape[0];
    assert_eq!(dx.shape, [cin, h, wd]);
    assert_eq!(wt.len(), cout * cin * 9);
    if let Some(m) = mask {
        assert_eq!(m.shape, dy.shape);
    }
    let p = Params::new().u(0, cout as u32).u(1, cin as u32).u(2, h as u32).u(3, wd as u32).u(5, mask.is_some() as u32);
    let m = mask.map_or(&dy.buf, |m| &m.buf);
    ctx.op(ctx.dispatch(FILE, "conv3x3_backward_input", p, &[&dy.buf, &wt.buf, &wt.buf, m, &dx.buf], groups(cin, h, wd)))
}
