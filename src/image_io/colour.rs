//! RGB <-> YIQ conversion of [`Planar`] images, for luminance-only transfer.
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

/// RGB planes to Y, I, Q planes (Y in [0,1]; I in about [-0.6, 0.6]; Q in about [-0.52, 0.52]).
pub fn rgb_to_yiq(img: &Planar) -> Planar {
    apply_color_matrix(img, &RGB_TO_YIQ)
}

/// Y, I, Q planes back to RGB (not clamped: out-of-gamut combinations stay visible to callers).
pub fn yiq_to_rgb(img: &Planar) -> Planar {
    apply_color_matrix(img, &invert3(&RGB_TO_YIQ))
}
