//! Plain CPU implementation of every op, accumulating in f64: the tests' oracle.
//!
//! Each function is named like the GPU kernel it checks (`conv3x3_forward` here,
//! `conv3x3_forward` in `shaders/conv3x3.wgsl` and `gpu::conv`). Tensors are batch 1, CHW,
//! row-major. Written to be obviously right, not fast.

pub mod flow;
mod lbfgs;
pub mod mask;
pub mod meancov;
pub mod step;
pub(crate) use lbfgs::sized_array;
pub use lbfgs::{Lbfgs, Real};

/// y\[o, i, j\] = b\[o\] + sum_{c, dy, dx} w\[o, c, dy, dx\] * x\[c, i + dy - 1, j + dx - 1\]
/// (zero padding 1, stride 1), then max(0, .) when `relu`.
pub fn conv3x3_forward(
    x: &[f64],
    cin: usize,
    h: usize,
    w: usize,
    weight: &[f64],
    bias: &[f64],
    cout: usize,
    relu: bool,
) -> Vec<f64> {
    assert_eq!(x.len(), cin * h * w);
    assert_eq!(weight.len(), cout * cin * 9);
    assert_eq!(bias.len(), cout);
    let mut y = vec![0.0; cout * h * w];
    for o in 0..cout {
        for i in 0..h {
            for j in 0..w {
                let mut acc = bias[o];
                for c in 0..cin {
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (si, sj) = (i as isize + dy as isize - 1, j as isize + dx as isize - 1);
                            if si < 0 || sj < 0 || si >= h as isize || sj >= w as isize {
                                continue;
                            }
                            acc +=
                                weight[((o * cin + c) * 3 + dy) * 3 + dx] * x[(c * h + si as usize) * w + sj as usize];
                        }
                    }
                }
                y[(o * h + i) * w + j] = if relu { acc.max(0.0) } else { acc };
            }
        }
    }
    y
}

/// dL/dx of `conv3x3_forward` (without ReLU) given dL/dy; weights are frozen, so no dL/dw.
/// Written as the scatter of each output's gradient, the literal adjoint of the forward.
pub fn conv3x3_backward_input(dy: &[f64], cout: usize, h: usize, w: usize, weight: &[f64], cin: usize) -> Vec<f64> {
    assert_eq!(dy.len(), cout * h * w);
    assert_eq!(weight.len(), cout * cin * 9);
    let mut dx = vec![0.0; cin * h * w];
    for o in 0..cout {
        for i in 0..h {
            for j in 0..w {
                let g = dy[(o * h + i) * w + j];
                for c in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (si, sj) = (i as isize + ky as isize - 1, j as isize + kx as isize - 1);
                            if si < 0 || sj < 0 || si >= h as isize || sj >= w as isize {
                                continue;
                            }
                            dx[(c * h + si as usize) * w + sj as usize] +=
                                weight[((o * cin + c) * 3 + ky) * 3 + kx] * g;
                        }
                    }
                }
            }
        }
    }
    dx
}

/// max(x, 0).
pub fn relu_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// Masks by the forward output y > 0, which equals x > 0.
pub fn relu_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter().zip(dy).map(|(&y, &g)| if y > 0.0 { g } else { 0.0 }).collect()
}

/// The ReLU-backward mask at one bit per element: bit k of word j is y[32 j + k] > 0.
pub fn relu_mask_pack(y: &[f64]) -> Vec<u32> {
    y.chunks(32).map(|c| c.iter().enumerate().fold(0u32, |w, (k, &v)| w | (((v > 0.0) as u32) << k))).collect()
}

/// Output size of a 2x2 stride-2 pool: floor, as PyTorch (odd last row/column dropped).
pub fn pool_out(h: usize, w: usize) -> (usize, usize) {
    (h / 2, w / 2)
}

/// (c, h, w) -> (c, h/2, w/2): means of 2x2 windows (odd last row/column dropped).
pub fn avgpool2x2_forward(x: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = pool_out(h, w);
    let mut y = vec![0.0; c * oh * ow];
    for k in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                let at = |a: usize, b: usize| x[(k * h + 2 * i + a) * w + 2 * j + b];
                y[(k * oh + i) * ow + j] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
            }
        }
    }
    y
}

/// dx of [`avgpool2x2_forward`]: each dy spread evenly over its window.
pub fn avgpool2x2_backward(dy: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = pool_out(h, w);
    let mut dx = vec![0.0; c * h * w];
    for k in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                for a in 0..2 {
                    for b in 0..2 {
                        dx[(k * h + 2 * i + a) * w + 2 * j + b] = dy[(k * oh + i) * ow + j] / 4.0;
                    }
                }
            }
        }
    }
    dx
}

/// Index (0..4, row-major in the window) of the FIRST maximum: ties (common after ReLU, all
/// zeros) go to the earliest element, as PyTorch does.
pub fn maxpool2x2_argmax(x: &[f64], k: usize, i: usize, j: usize, h: usize, w: usize) -> usize {
    let mut best = 0;
    let mut bv = f64::NEG_INFINITY;
    for t in 0..4 {
        let v = x[(k * h + 2 * i + t / 2) * w + 2 * j + t % 2];
        if v > bv {
            bv = v;
            best = t;
        }
    }
    best
}

/// (c, h, w) -> (c, h/2, w/2): maxima of 2x2 windows (the first maximum on ties).
pub fn maxpool2x2_forward(x: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = pool_out(h, w);
    let mut y = vec![0.0; c * oh * ow];
    for k in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                let t = maxpool2x2_argmax(x, k, i, j, h, w);
                y[(k * oh + i) * ow + j] = x[(k * h + 2 * i + t / 2) * w + 2 * j + t % 2];
            }
        }
    }
    y
}

/// Routes each output gradient to its window's argmax (recomputed from the forward input).
pub fn maxpool2x2_backward(x: &[f64], dy: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = pool_out(h, w);
    let mut dx = vec![0.0; c * h * w];
    for k in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                let t = maxpool2x2_argmax(x, k, i, j, h, w);
                dx[(k * h + 2 * i + t / 2) * w + 2 * j + t % 2] = dy[(k * oh + i) * ow + j];
            }
        }
    }
    dx
}

/// G = F F^T / (C * N), F the C x N (N = H*W) matrix of a CHW tensor.
pub fn gram_forward(f: &[f64], c: usize, n: usize) -> Vec<f64> {
    assert_eq!(f.len(), c * n);
    let norm = (c * n) as f64;
    let mut g = vec![0.0; c * c];
    for a in 0..c {
        for b in 0..c {
            let s: f64 = (0..n).map(|p| f[a * n + p] * f[b * n + p]).sum();
            g[a * c + b] = s / norm;
        }
    }
    g
}

/// dL/dF = (dL/dG + dL/dG^T) F / (C * N).
pub fn gram_backward(f: &[f64], dg: &[f64], c: usize, n: usize) -> Vec<f64> {
    let norm = (c * n) as f64;
    let mut df = vec![0.0; c * n];
    for a in 0..c {
        for p in 0..n {
            let s: f64 = (0..c).map(|b| (dg[a * c + b] + dg[b * c + a]) * f[b * n + p]).sum();
            df[a * n + p] = s / norm;
        }
    }
    df
}

/// mean((x - t)^2)
pub fn mse_forward(x: &[f64], t: &[f64]) -> f64 {
    assert_eq!(x.len(), t.len());
    x.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / x.len() as f64
}

/// d(scale * mse)/dx = 2 (x - t) / n * scale
pub fn mse_backward(x: &[f64], t: &[f64], scale: f64) -> Vec<f64> {
    let n = x.len() as f64;
    x.iter().zip(t).map(|(a, b)| 2.0 * (a - b) / n * scale).collect()
}

/// jcjohnson/neural-style's guard against a zero gradient: g / (|g|_1 + 1e-8).
pub const L1_EPS: f64 = 1e-8;

/// dx += weight * g / (sum(|g|) + [`L1_EPS`]): one loss term's gradient at its tap under
/// `--normalize-gradients` (jcjohnson/neural-style's `-normalize_gradients`: each content and
/// style term's gradient divided by its L1 norm, then multiplied by the term's weight).
pub fn add_l1_normalized(dx: &mut [f64], g: &[f64], weight: f64) {
    assert_eq!(dx.len(), g.len());
    let s = weight / (g.iter().map(|v| v.abs()).sum::<f64>() + L1_EPS);
    dx.iter_mut().zip(g).for_each(|(d, v)| *d += s * v);
}

/// Total variation: (sum of squared differences of horizontal neighbours + of vertical
/// neighbours) / (C*H*W). Normalised by the element count so its weight does not depend on
/// image size; defined (zero) for 1-pixel-wide or -high images.
pub fn tv_forward(x: &[f64], c: usize, h: usize, w: usize) -> f64 {
    let mut s = 0.0;
    for k in 0..c {
        for i in 0..h {
            for j in 0..w {
                let v = x[(k * h + i) * w + j];
                if j + 1 < w {
                    let d = x[(k * h + i) * w + j + 1] - v;
                    s += d * d;
                }
                if i + 1 < h {
                    let d = x[(k * h + i + 1) * w + j] - v;
                    s += d * d;
                }
            }
        }
    }
    s / (c * h * w) as f64
}

/// d(scale * tv)/dx.
pub fn tv_backward(x: &[f64], c: usize, h: usize, w: usize, scale: f64) -> Vec<f64> {
    let k2 = 2.0 * scale / (c * h * w) as f64;
    let mut g = vec![0.0; x.len()];
    for k in 0..c {
        for i in 0..h {
            for j in 0..w {
                let idx = (k * h + i) * w + j;
                if j + 1 < w {
                    let d = x[idx + 1] - x[idx];
                    g[idx + 1] += k2 * d;
                    g[idx] -= k2 * d;
                }
                if i + 1 < h {
                    let d = x[idx + w] - x[idx];
                    g[idx + w] += k2 * d;
                    g[idx] -= k2 * d;
                }
            }
        }
    }
    g
}

/// Adam hyper-parameters (Kingma & Ba 2015, algorithm 1).
#[derive(Clone, Copy, Debug)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
}

/// One textbook Adam step (t counts from 1), in place:
/// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * mhat / (sqrt(vhat) + eps).
pub fn adam_step(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u32, a: AdamParams) {
    let bc1 = 1.0 - a.beta1.powi(t as i32);
    let bc2 = 1.0 - a.beta2.powi(t as i32);
    for i in 0..p.len() {
        m[i] = a.beta1 * m[i] + (1.0 - a.beta1) * g[i];
        v[i] = a.beta2 * v[i] + (1.0 - a.beta2) * g[i] * g[i];
        p[i] -= a.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + a.eps);
    }
}

/// One update of an exponential moving average, in place: avg = d * avg + (1 - d) * x. After t
/// updates from avg = 0, avg / (1 - d^t) is the bias-corrected average of the t values (the
/// first one weighted (1 - d) d^(t-1), the last (1 - d)), as crowsonkb/style-transfer-pytorch's
/// EMA. The GPU twin is `ema_update` in shaders/ema.wgsl and gpu::ema.
pub fn ema_update(avg: &mut [f64], x: &[f64], d: f64) {
    assert_eq!(avg.len(), x.len());
    for (a, v) in avg.iter_mut().zip(x) {
        *a = d * *a + (1.0 - d) * v;
    }
}

/// Sum of all elements (the oracle of the GPU reductions).
pub fn sum(x: &[f64]) -> f64 {
    x.iter().sum()
}

/// x inside the rectangle [y0, y1) x [x0, x1) of every (h, w) plane, 0 outside.
pub fn mask_rect(x: &[f64], h: usize, w: usize, rect: [usize; 4]) -> Vec<f64> {
    let [y0, x0, y1, x1] = rect;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (y, xx) = ((i / w) % h, i % w);
            if y >= y0 && xx >= x0 && y < y1 && xx < x1 {
                v
            } else {
                0.0
            }
        })
        .collect()
}

/// The (c, hh, ww) window at (oy, ox) of a (c, h, w) map: y\[k, i, j\] = x\[k, oy + i, ox + j\].
pub fn crop_forward(x: &[f64], c: usize, h: usize, w: usize, at: [usize; 2], out: [usize; 2]) -> Vec<f64> {
    let ([oy, ox], [hh, ww]) = (at, out);
    assert!(oy + hh <= h && ox + ww <= w);
    let mut y = Vec::with_capacity(c * hh * ww);
    for k in 0..c {
        for i in 0..hh {
            y.extend_from_slice(&x[(k * h + oy + i) * w + ox..(k * h + oy + i) * w + ox + ww]);
        }
    }
    y
}

/// The adjoint of [`crop_forward`]: dy (c, hh, ww) placed at (oy, ox) of a zero (c, h, w) map.
pub fn crop_backward(dy: &[f64], c: usize, h: usize, w: usize, at: [usize; 2], out: [usize; 2]) -> Vec<f64> {
    let ([oy, ox], [hh, ww]) = (at, out);
    let mut dx = vec![0.0; c * h * w];
    for k in 0..c {
        for i in 0..hh {
            let d = (k * h + oy + i) * w + ox;
            dx[d..d + ww].copy_from_slice(&dy[(k * hh + i) * ww..(k * hh + i + 1) * ww]);
        }
    }
    dx
}
