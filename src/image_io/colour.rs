//! Colour operations on [`Planar`] images: RGB <-> YIQ and luminance-only transfer
//! (`--original-colors`), colour statistics and matching them (`--color-match`).
//!
//! Luminance-only transfer ("original colours"): keep the luminance of the stylised result and
//! the chrominance of the content. jcjohnson/neural-style does it in YUV (torch image.rgb2yuv);
//! Gatys et al., "Preserving Color in Neural Artistic Style Transfer" (2016), use YIQ. Both share
//! Y = 0.299 R + 0.587 G + 0.114 B, and I,Q are a linear function of U,V alone, so swapping
//! chrominance gives the same RGB either way.

use super::Planar;

/// RGB -> YIQ (NTSC), the matrix scikit-image uses.
const RGB_TO_YIQ: [[f64; 3]; 3] =
    [[0.299, 0.587, 0.114], [0.595_716, -0.274_453, -0.321_263], [0.211_456, -0.522_591, 0.311_135]];

/// The exact inverse of a 3x3 matrix (adjugate over determinant), in f64 so that the round
/// trip RGB -> YIQ -> RGB is exact to f32 precision.
fn invert3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c = |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let cof = [
        [c(1, 1, 2, 2), -c(1, 0, 2, 2), c(1, 0, 2, 1)],
        [-c(0, 1, 2, 2), c(0, 0, 2, 2), -c(0, 0, 2, 1)],
        [c(0, 1, 1, 2), -c(0, 0, 1, 2), c(0, 0, 1, 1)],
    ];
    let det = m[0][0] * cof[0][0] + m[0][1] * cof[0][1] + m[0][2] * cof[0][2];
    let mut inv = [[0.0; 3]; 3];
    for (r, row) in inv.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            *v = cof[col][r] / det; // transpose of the cofactors
        }
    }
    inv
}

fn apply_color_matrix(img: &Planar, m: &[[f64; 3]; 3]) -> Planar {
    let n = img.plane_len();
    assert_eq!(img.data.len(), 3 * n, "colour conversion: buffer length does not match {}x{}", img.width, img.height);
    let mut data = vec![0.0f32; 3 * n];
    for i in 0..n {
        let p = [f64::from(img.data[i]), f64::from(img.data[n + i]), f64::from(img.data[2 * n + i])];
        for (c, row) in m.iter().enumerate() {
            data[c * n + i] = (row[0] * p[0] + row[1] * p[1] + row[2] * p[2]) as f32;
        }
    }
    Planar { width: img.width, height: img.height, data }
}

/// RGB planes to Y, I, Q planes (Y in \[0,1\]; I in about \[-0.6, 0.6\]; Q in about \[-0.52, 0.52\]).
pub fn rgb_to_yiq(img: &Planar) -> Planar {
    apply_color_matrix(img, &RGB_TO_YIQ)
}

/// Y, I, Q planes back to RGB (not clamped: out-of-gamut combinations stay visible to callers).
pub fn yiq_to_rgb(img: &Planar) -> Planar {
    apply_color_matrix(img, &invert3(&RGB_TO_YIQ))
}

/// `--original-colors` (jcjohnson/neural-style's `-original_colors 1`): the luminance (Y of YIQ)
/// of `result` with the chrominance (I, Q) of `content` (same size), back to RGB, clamped to
/// \[0,1\] (a bright luminance under a saturated colour can leave the RGB gamut).
pub fn transfer_luminance(result: &Planar, content: &Planar) -> Planar {
    assert_eq!((result.width, result.height), (content.width, content.height), "transfer_luminance: sizes differ");
    let n = result.plane_len();
    let mut yiq = rgb_to_yiq(content);
    let y = rgb_to_yiq(result);
    yiq.data[..n].copy_from_slice(&y.data[..n]);
    let mut out = yiq_to_rgb(&yiq);
    for v in &mut out.data {
        *v = v.clamp(0.0, 1.0);
    }
    out
}

/// Mean (3) and covariance (3x3) of an image's RGB values, in f64.
pub fn color_stats(img: &Planar) -> ([f64; 3], [[f64; 3]; 3]) {
    let n = img.plane_len();
    let ch = |c: usize| &img.data[c * n..(c + 1) * n];
    let mut mean = [0.0; 3];
    for (c, m) in mean.iter_mut().enumerate() {
        *m = ch(c).iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    }
    let mut cov = [[0.0; 3]; 3];
    for a in 0..3 {
        for b in a..3 {
            let s: f64 = ch(a).iter().zip(ch(b)).map(|(&x, &y)| (x as f64 - mean[a]) * (y as f64 - mean[b])).sum();
            cov[a][b] = s / n as f64;
            cov[b][a] = cov[a][b];
        }
    }
    (mean, cov)
}

/// Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations: (eigenvalues,
/// eigenvectors as the columns of V), so that m = V diag(l) V^T.
pub fn symmetric_eigen3(m: &[[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = *m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        let scale = a[0][0].powi(2) + a[1][1].powi(2) + a[2][2].powi(2);
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for (p, q) in [(0usize, 1usize), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            // The rotation that zeroes a[p][q] (Golub & Van Loan, algorithm 8.5.1).
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // a = J^T a J with J the rotation in the (p, q) plane.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = [0, 1, 2].map(|k| c * rp[k] - s * rq[k]);
            a[q] = [0, 1, 2].map(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// V diag(f(l)) V^T for a symmetric m = V diag(l) V^T.
fn symmetric_fn3(m: &[[f64; 3]; 3], f: impl Fn(f64) -> f64) -> [[f64; 3]; 3] {
    let (l, v) = symmetric_eigen3(m);
    let fl = l.map(f);
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, o) in row.iter_mut().enumerate() {
            *o = (0..3).map(|k| v[i][k] * fl[k] * v[j][k]).sum();
        }
    }
    out
}

fn matmul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, o) in row.iter_mut().enumerate() {
            *o = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// `--color-match`: an affine recolouring of `style` whose RGB mean and covariance are
/// `content`'s (Gatys et al. 2017, "Controlling perceptual factors in neural style transfer",
/// colour histogram matching): x' = A (x - mu_s) + mu_c with A = Sigma_c^(1/2) Sigma_s^(-1/2),
/// the symmetric square roots taken by eigen-decomposition, so that A Sigma_s A^T = Sigma_c.
/// Directions in which the style has (almost) no colour variance are regularised (1e-6 of the
/// largest variance) rather than blown up; the result is not clamped, so the statistics match
/// exactly (the network takes any values).
pub fn color_match(style: &Planar, content: &Planar) -> Planar {
    let (ms, cs) = color_stats(style);
    let (mc, cc) = color_stats(content);
    let (ls, _) = symmetric_eigen3(&cs);
    let eps = 1e-6 * ls.iter().fold(0.0f64, |m, &v| m.max(v)) + 1e-12;
    let inv_sqrt_s = symmetric_fn3(&cs, |l| 1.0 / (l.max(0.0) + eps).sqrt());
    let sqrt_c = symmetric_fn3(&cc, |l| l.max(0.0).sqrt());
    let a = matmul3(&sqrt_c, &inv_sqrt_s);
    let n = style.plane_len();
    let mut data = vec![0.0f32; 3 * n];
    for i in 0..n {
        let d = [0, 1, 2].map(|c| style.data[c * n + i] as f64 - ms[c]);
        for c in 0..3 {
            data[c * n + i] = (a[c][0] * d[0] + a[c][1] * d[1] + a[c][2] * d[2] + mc[c]) as f32;
        }
    }
    Planar { width: style.width, height: style.height, data }
}
