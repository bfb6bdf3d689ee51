//! f64 twins of `gpu::mask` and the masked Gram loss of regional styles (`--style-mask`).

/// out = x * m, m one weight per pixel broadcast over x's c channels (x: c x n).
pub fn mask_mul(x: &[f64], m: &[f64], c: usize, n: usize) -> Vec<f64> {
    assert_eq!(x.len(), c * n);
    assert_eq!(m.len(), n);
    x.iter().enumerate().map(|(i, v)| v * m[i % n]).collect()
}

/// The masked Gram: G = (F m)(F m)^T / (C * sum(m^2)), the Gram of the features weighted by
/// the mask and normalised by the mask's (squared-weight) area, so a region's Gram is the
/// average of f f^T over the region, comparable with a whole painting's.
pub fn masked_gram_forward(f: &[f64], m: &[f64], c: usize, n: usize) -> Vec<f64> {
    let fm = mask_mul(f, m, c, n);
    let area: f64 = m.iter().map(|v| v * v).sum();
    super::gram_forward(&fm, c, n).into_iter().map(|g| g * n as f64 / area).collect()
}

/// dL/dF of [`masked_gram_forward`] given dL/dG: m * (dG + dG^T)(F m) / (C * sum(m^2)).
pub fn masked_gram_backward(f: &[f64], m: &[f64], dg: &[f64], c: usize, n: usize) -> Vec<f64> {
    let fm = mask_mul(f, m, c, n);
    let area: f64 = m.iter().map(|v| v * v).sum();
    let dfm: Vec<f64> = super::gram_backward(&fm, dg, c, n).into_iter().map(|g| g * n as f64 / area).collect();
    mask_mul(&dfm, m, c, n)
}
