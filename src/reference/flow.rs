//! f64 twins of `shaders/flow.wgsl`'s kernels and of the whole coarse-to-fine solver
//! (`gpu::flow`), with the same names and the same formulas (see the shader's header).
//! Planes are (h, w) row-major; a flow is (2, h, w): u then v.

use crate::gpu::flow::FlowSettings;

fn clampi(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

/// Bilinear sample of the (h, w) plane `x` at (px, py), the point clamped into the image.
pub fn sample(x: &[f64], h: usize, w: usize, px: f64, py: f64) -> f64 {
    let cx = px.clamp(0.0, (w - 1) as f64);
    let cy = py.clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (cx.floor() as usize, cy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (cx - x0 as f64, cy - y0 as f64);
    let top = x[y0 * w + x0] * (1.0 - fx) + x[y0 * w + x1] * fx;
    let bot = x[y1 * w + x0] * (1.0 - fx) + x[y1 * w + x1] * fx;
    top * (1.0 - fy) + bot * fy
}

/// Luma of a (3, h, w) RGB image.
pub fn flow_luma(x: &[f64], h: usize, w: usize) -> Vec<f64> {
    let n = h * w;
    (0..n).map(|i| 0.299 * x[i] + 0.587 * x[n + i] + 0.114 * x[2 * n + i]).collect()
}

/// (ceil(sh/2), ceil(sw/2)) plane of 2x2 means of the (sh, sw) plane `x` (clamped at the ends).
pub fn flow_downsample(x: &[f64], sh: usize, sw: usize) -> Vec<f64> {
    let (h, w) = (sh.div_ceil(2), sw.div_ceil(2));
    let mut y = vec![0.0; h * w];
    for i in 0..h {
        for j in 0..w {
            let mut s = 0.0;
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                s += x[(2 * i + dy).min(sh - 1) * sw + (2 * j + dx).min(sw - 1)];
            }
            y[i * w + j] = 0.25 * s;
        }
    }
    y
}

/// y\[c, p\] = x\[c\](p + f(p)) for the c planes of x (c, h, w), f a flow (2, h, w).
pub fn flow_warp(x: &[f64], c: usize, h: usize, w: usize, f: &[f64]) -> Vec<f64> {
    let n = h * w;
    let mut y = vec![0.0; c * n];
    for i in 0..h {
        for j in 0..w {
            let p = i * w + j;
            let (px, py) = (j as f64 + f[p], i as f64 + f[n + p]);
            for ch in 0..c {
                y[ch * n + p] = sample(&x[ch * n..(ch + 1) * n], h, w, px, py);
            }
        }
    }
    y
}

fn inside(px: f64, py: f64, h: usize, w: usize) -> bool {
    px >= 0.0 && py >= 0.0 && px <= (w - 1) as f64 && py <= (h - 1) as f64
}

/// Central differences (d/dx, d/dy) of plane `x` at (i, j), clamped ends.
fn central(x: &[f64], h: usize, w: usize, i: usize, j: usize) -> (f64, f64) {
    let (ii, jj) = (i as isize, j as isize);
    let dx = 0.5 * (x[i * w + clampi(jj + 1, w)] - x[i * w + clampi(jj - 1, w)]);
    let dy = 0.5 * (x[clampi(ii + 1, h) * w + j] - x[clampi(ii - 1, h) * w + j]);
    (dx, dy)
}

/// (Ix, Iy, It) (3, h, w) of image `a` and warped image `bw` at the linearisation point `f`.
pub fn flow_gradients(a: &[f64], bw: &[f64], f: &[f64], h: usize, w: usize) -> Vec<f64> {
    let n = h * w;
    let mut g = vec![0.0; 3 * n];
    for i in 0..h {
        for j in 0..w {
            let p = i * w + j;
            if !inside(j as f64 + f[p], i as f64 + f[n + p], h, w) {
                continue;
            }
            let (ax, ay) = central(a, h, w, i, j);
            let (bx, by) = central(bw, h, w, i, j);
            g[p] = 0.5 * (ax + bx);
            g[n + p] = 0.5 * (ay + by);
            g[2 * n + p] = bw[p] - a[p];
        }
    }
    g
}

/// One Jacobi step of Horn-Schunck on the total flow `f`, the data term linearised at `f0`.
pub fn flow_hs_step(f: &[f64], f0: &[f64], g: &[f64], h: usize, w: usize, alpha2: f64) -> Vec<f64> {
    let n = h * w;
    let mut y = vec![0.0; 2 * n];
    for i in 0..h {
        for j in 0..w {
            let (ii, jj) = (i as isize, j as isize);
            let p = i * w + j;
            let nb = [
                i * w + clampi(jj - 1, w),
                i * w + clampi(jj + 1, w),
                clampi(ii - 1, h) * w + j,
                clampi(ii + 1, h) * w + j,
            ];
            let ub = 0.25 * nb.iter().map(|&q| f[q]).sum::<f64>();
            let vb = 0.25 * nb.iter().map(|&q| f[n + q]).sum::<f64>();
            let (ix, iy) = (g[p], g[n + p]);
            let r = (ix * (ub - f0[p]) + iy * (vb - f0[n + p]) + g[2 * n + p]) / (alpha2 + ix * ix + iy * iy);
            y[p] = ub - ix * r;
            y[n + p] = vb - iy * r;
        }
    }
    y
}

/// The (2, sh, sw) flow `x` resampled to (2, h, w), u scaled by w / sw and v by h / sh.
pub fn flow_upsample(x: &[f64], sh: usize, sw: usize, h: usize, w: usize) -> Vec<f64> {
    let (n, sn) = (h * w, sh * sw);
    let (sx, sy) = (w as f64 / sw as f64, h as f64 / sh as f64);
    let mut y = vec![0.0; 2 * n];
    for i in 0..h {
        for j in 0..w {
            let px = (j as f64 + 0.5) * sw as f64 / w as f64 - 0.5;
            let py = (i as f64 + 0.5) * sh as f64 / h as f64 - 0.5;
            y[i * w + j] = sample(&x[..sn], sh, sw, px, py) * sx;
            y[n + i * w + j] = sample(&x[sn..], sh, sw, px, py) * sy;
        }
    }
    y
}

/// The two sides of flow_consistency's tests at each pixel: (occlusion lhs - rhs, boundary lhs -
/// rhs, q inside the image). The mask is 1 where both differences are <= 0 and q is inside.
pub fn consistency_margins(f: &[f64], fb: &[f64], h: usize, w: usize) -> Vec<(f64, f64, bool)> {
    let n = h * w;
    let mut out = Vec::with_capacity(n);
    for i in 0..h {
        for j in 0..w {
            let p = i * w + j;
            let (u, v) = (f[p], f[n + p]);
            let (qx, qy) = (j as f64 + u, i as f64 + v);
            let ub = sample(&fb[..n], h, w, qx, qy);
            let vb = sample(&fb[n..], h, w, qx, qy);
            let occ = (u + ub).powi(2) + (v + vb).powi(2) - (0.01 * (u * u + v * v + ub * ub + vb * vb) + 0.5);
            let (ux, uy) = central(&f[..n], h, w, i, j);
            let (vx, vy) = central(&f[n..], h, w, i, j);
            let bnd = ux * ux + uy * uy + vx * vx + vy * vy - (0.01 * (u * u + v * v) + 0.002);
            out.push((occ, bnd, inside(qx, qy, h, w)));
        }
    }
    out
}

/// The consistency mask of flow `f` (A -> B) checked against `fb` (B -> A): 1 trusted, 0 occluded,
/// on a motion boundary or leaving the image.
pub fn flow_consistency(f: &[f64], fb: &[f64], h: usize, w: usize) -> Vec<f64> {
    consistency_margins(f, fb, h, w)
        .into_iter()
        .map(|(o, b, ins)| if o > 0.0 || b > 0.0 || !ins { 0.0 } else { 1.0 })
        .collect()
}

/// The whole solver on luma planes `a`, `b` (h, w): the flow A -> B, by the schedule of
/// `gpu::flow::Flow` (pyramid by [`crate::gpu::flow::pyramid`], zero start at the coarsest level,
/// `warps` linearisations per level of `iterations` Jacobi steps each, upsampled between levels).
pub fn flow(a: &[f64], b: &[f64], h: usize, w: usize, s: &FlowSettings) -> Vec<f64> {
    let sizes = crate::gpu::flow::pyramid(h, w, s.min_size);
    let mut pa = vec![a.to_vec()];
    let mut pb = vec![b.to_vec()];
    for l in 1..sizes.len() {
        let (sh, sw) = sizes[l - 1];
        pa.push(flow_downsample(&pa[l - 1], sh, sw));
        pb.push(flow_downsample(&pb[l - 1], sh, sw));
    }
    let (ch, cw) = *sizes.last().unwrap();
    let mut f = vec![0.0; 2 * ch * cw];
    for l in (0..sizes.len()).rev() {
        let (lh, lw) = sizes[l];
        if l + 1 < sizes.len() {
            let (sh, sw) = sizes[l + 1];
            f = flow_upsample(&f, sh, sw, lh, lw);
        }
        for _ in 0..s.warps {
            let f0 = f.clone();
            let bw = flow_warp(&pb[l], 1, lh, lw, &f0);
            let g = flow_gradients(&pa[l], &bw, &f0, lh, lw);
            for _ in 0..s.iterations {
                f = flow_hs_step(&f, &f0, &g, lh, lw, s.alpha2());
            }
        }
    }
    f
}

/// The temporal loss weight * sum m² (x - t)² / n and its gradient 2 weight m² (x - t) / n, for x
/// and t (c, h, w) and the mask m (h, w) broadcast over the channels.
pub fn temporal_loss(x: &[f64], t: &[f64], m: &[f64], weight: f64) -> (f64, Vec<f64>) {
    let (n, plane) = (x.len(), m.len());
    let mut loss = 0.0;
    let grad = (0..n)
        .map(|i| {
            let d = m[i % plane] * (x[i] - t[i]);
            loss += d * d;
            2.0 * weight * m[i % plane] * d / n as f64
        })
        .collect();
    (weight * loss / n as f64, grad)
}

/// A smooth random texture in \[0,1\] for tests with known motion: a sum of 40 plane waves of
/// random direction and phase, of 0.02 to 0.12 cycles per pixel (well below Nyquist, so every
/// pyramid level still sees it), defined at any real point.
pub struct Texture(Vec<[f64; 4]>);

impl Texture {
    /// The texture of `seed`.
    pub fn new(seed: u64) -> Texture {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut u = || rng.uniform(0.0, 1.0) as f64;
        let tau = std::f64::consts::TAU;
        Texture((0..40).map(|_| [tau * (0.02 + 0.1 * u()), tau * u(), tau * u(), 0.5 + 0.5 * u()]).collect())
    }

    /// Its value at (x, y) (pixels).
    pub fn at(&self, x: f64, y: f64) -> f64 {
        let norm: f64 = self.0.iter().map(|k| k[3] * k[3]).sum::<f64>().sqrt();
        let s: f64 = self.0.iter().map(|&[fr, th, ph, a]| a * (fr * (th.cos() * x + th.sin() * y) + ph).sin()).sum();
        0.5 + s / (norm * 3.0)
    }
}
