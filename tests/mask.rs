//! The mask kernel (`gpu::mask`) and the masked Gram of regional styles against their f64 twins
//! (`reference::mask`), the twins' gradient against finite differences, and the mask pyramid
//! against the network's average pool.

mod common;

use common::*;
use stylize::gpu::{gram, mask};
use stylize::reference as r;

/// Element-wise products: one rounding each.
const TOL_ELEMENTWISE: f64 = 1e-6;
/// Sums of products over up to a few thousand positions in f32 (as tests/kernels.rs's Gram).
const TOL_DOT: f64 = 2e-5;

/// A mask with hard 0/1 regions and soft edges, never all zero.
fn random_mask(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut m: Vec<f32> = (0..n)
        .map(|_| match rng.below(3) {
            0 => 0.0,
            1 => 1.0,
            _ => rng.vec(1, 0.0, 1.0)[0],
        })
        .collect();
    m[0] = 1.0;
    m
}

#[test]
fn mask_mul_matches_reference_and_accumulates() {
    let mut rng = Rng::new(41);
    for &(c, h, w) in &[(1, 1, 1), (3, 7, 13), (64, 16, 16), (5, 1, 300)] {
        let x = rng.vec(c * h * w, -1.0, 1.0);
        let m = random_mask(&mut rng, h * w);
        let (tx, tm) = (upload([c, h, w], &x), upload([1, h, w], &m));
        let out = poisoned([c, h, w]);
        run(&mask::mask_mul(ctx(), &tx, &tm, &out, false));
        let want = r::mask::mask_mul(&f64s(&x), &f64s(&m), c, h * w);
        assert_close(&format!("mask_mul {c}x{h}x{w}"), &read(&out), &want, TOL_ELEMENTWISE);
        let base = rng.vec(c * h * w, -1.0, 1.0);
        let acc = upload([c, h, w], &base);
        run(&mask::mask_mul(ctx(), &tx, &tm, &acc, true));
        let want_acc: Vec<f64> = want.iter().zip(&base).map(|(a, b)| a + *b as f64).collect();
        assert_close(&format!("mask_mul accumulate {c}x{h}x{w}"), &read(&acc), &want_acc, TOL_ELEMENTWISE);
    }
}

#[test]
fn masked_gram_on_the_gpu_matches_reference() {
    // The GPU composition a render records: mask_mul, then the scaled Gram (forward); the scaled
    // Gram backward into a scratch, then mask_mul accumulating into the tap's gradient.
    let mut rng = Rng::new(42);
    for &(c, h, w) in &[(3, 7, 13), (64, 32, 32), (33, 5, 3)] {
        let n = h * w;
        let f = rng.vec(c * n, 0.0, 1.0);
        let m = random_mask(&mut rng, n);
        let area: f64 = m.iter().map(|&v| v as f64 * v as f64).sum();
        let scale = (1.0 / (c as f64 * area)) as f32;
        let (tf, tm) = (upload([c, h, w], &f), upload([1, h, w], &m));
        let fm = poisoned([c, h, w]);
        let g = poisoned([c, c, 1]);
        run(&mask::mask_mul(ctx(), &tf, &tm, &fm, false));
        run(&gram::gram_forward_scaled(ctx(), &fm, &g, scale, false));
        let want = r::mask::masked_gram_forward(&f64s(&f), &f64s(&m), c, n);
        assert_close(&format!("masked gram {c}x{h}x{w}"), &read(&g), &want, TOL_DOT);

        let dg = rng.vec(c * c, -1.0, 1.0);
        let tdg = upload([c, c, 1], &dg);
        let dfm = poisoned([c, h, w]);
        run(&gram::gram_backward_scaled(ctx(), &fm, &tdg, &dfm, scale, false));
        let base = rng.vec(c * n, -1.0, 1.0);
        let df = upload([c, h, w], &base);
        run(&mask::mask_mul(ctx(), &dfm, &tm, &df, true));
        let want = r::mask::masked_gram_backward(&f64s(&f), &f64s(&m), &f64s(&dg), c, n);
        let want_acc: Vec<f64> = want.iter().zip(&base).map(|(a, b)| a + *b as f64).collect();
        assert_close(&format!("masked gram backward {c}x{h}x{w}"), &read(&df), &want_acc, TOL_DOT);
    }
}

#[test]
fn masked_gram_reference_gradient_matches_finite_differences() {
    let mut rng = Rng::new(43);
    let (c, n) = (4, 30);
    let f = f64s(&rng.vec(c * n, -1.0, 1.0));
    let m = f64s(&random_mask(&mut rng, n));
    let dg = f64s(&rng.vec(c * c, -1.0, 1.0));
    let loss = |x: &[f64]| r::mask::masked_gram_forward(x, &m, c, n).iter().zip(&dg).map(|(a, b)| a * b).sum::<f64>();
    let grad = r::mask::masked_gram_backward(&f, &m, &dg, c, n);
    let scale = grad.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let worst = (0..c * n).map(|i| (fd(&loss, &f, i, 1e-6) - grad[i]).abs() / scale).fold(0.0, f64::max);
    println!("masked gram backward vs finite differences: {worst:.2e}");
    assert!(worst < 1e-7, "{worst}");
    // Where the mask is 0 the features have no say.
    for p in (0..n).filter(|&p| m[p] == 0.0) {
        assert!((0..c).all(|k| grad[k * n + p] == 0.0));
    }
    // An all-ones mask is the plain Gram.
    let ones = vec![1.0; n];
    let plain = r::gram_forward(&f, c, n);
    for (a, b) in r::mask::masked_gram_forward(&f, &ones, c, n).iter().zip(&plain) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
    }
}

#[test]
fn mask_levels_follow_the_network_average_pool() {
    let mut rng = Rng::new(44);
    let (h, w) = (37, 50);
    let m = random_mask(&mut rng, h * w);
    let levels = mask::mask_levels(&m, h, w, 4);
    assert_eq!(levels.len(), 5);
    let (mut want, mut hh, mut ww) = (f64s(&m), h, w);
    for (k, (got, gh, gw)) in levels.iter().enumerate() {
        assert_eq!((*gh, *gw), (hh, ww), "level {k}");
        assert_close(&format!("mask level {k}"), got, &want, TOL_ELEMENTWISE);
        want = r::avgpool2x2_forward(&want, 1, hh, ww);
        (hh, ww) = r::pool_out(hh, ww);
    }
}
