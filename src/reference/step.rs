//! Whole-pipeline reference: the input transform, and (with the runner) a whole Gatys step.

use crate::vgg::Affine;

/// y[c] = x[src[c]] * a[c] + b[c] on a (3, h, w) image.
pub fn preprocess_forward(x: &[f64], t: &Affine) -> Vec<f64> {
    let plane = x.len() / 3;
    let mut y = vec![0.0; x.len()];
    for c in 0..3 {
        for p in 0..plane {
            y[c * plane + p] = x[t.src[c] as usize * plane + p] * t.a[c] as f64 + t.b[c] as f64;
        }
    }
    y
}

/// dx from dy of [`preprocess_forward`].
pub fn preprocess_backward(dy: &[f64], t: &Affine) -> Vec<f64> {
    let plane = dy.len() / 3;
    let mut dx = vec![0.0; dy.len()];
    for c in 0..3 {
        for p in 0..plane {
            dx[t.src[c] as usize * plane + p] += dy[c * plane + p] * t.a[c] as f64;
        }
    }
    dx
}
