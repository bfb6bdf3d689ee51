//! The `ema_update` kernel (shaders/ema.wgsl, gpu::ema) against `reference::ema_update` (f64):
//! the running average and its bias correction over several steps, at sizes that fill no
//! workgroup evenly, starting from zeros as the render does.
//!
//! Tolerance: each step is two f32 multiplies and an add per element (a few roundings); over 8
//! steps the average of values ~1 agrees with f64 to ~1e-7; we require 1e-6. A wrong weight
//! (e.g. d and 1 - d swapped) or a missing step errs by > 1e-2.

mod common;
use common::*;
use stylize::gpu::ema::Ema;
use stylize::reference as r;

const TOL: f64 = 1e-6;

#[test]
fn ema_update_matches_reference_over_steps() {
    let mut rng = Rng::new(11);
    for &(n, d) in &[(1usize, 0.9f64), (7, 0.5), (3 * 13 * 7, 0.99), (70_001, 0.999)] {
        let x = upload([n, 1, 1], &vec![0.0; n]);
        let ema = Ema::new(ctx(), &x, d).unwrap();
        let mut avg = vec![0.0f64; n];
        for t in 1..=8u32 {
            let v = rng.vec(n, 0.0, 1.0);
            x.write(ctx(), &v);
            run(&ema.op);
            r::ema_update(&mut avg, &f64s(&v), d);
            let corr = 1.0 - d.powi(t as i32);
            let want: Vec<f64> = avg.iter().map(|a| a / corr).collect();
            assert_close(
                &format!("ema_update n={n} d={d} step {t} (bias-corrected)"),
                &ema.read(ctx()).unwrap(),
                &want,
                TOL,
            );
            assert_eq!(ema.count(ctx()).unwrap(), t);
        }
        assert_close(&format!("ema_update n={n} d={d} raw average"), &read(&ema.avg), &avg, TOL);
    }
}

#[test]
fn ema_of_a_constant_is_that_constant() {
    // The correction 1 - d^t and the average use the same f32 d and 1 - d: no drift even at
    // d = 0.99 over many steps.
    let n = 300;
    let x = upload([n, 1, 1], &vec![0.37; n]);
    let ema = Ema::new(ctx(), &x, 0.99).unwrap();
    for _ in 0..200 {
        run(&ema.op);
    }
    let got = ema.read(ctx()).unwrap();
    assert_close("ema of a constant after 200 steps", &got, &vec![0.37; n], 1e-5);
}
