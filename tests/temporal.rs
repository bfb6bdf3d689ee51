//! The temporal loss (shaders/temporal.wgsl, gpu::temporal, Ruder et al. 2016): loss and gradient
//! against the f64 twin reference::flow::temporal_loss on random inputs with poisoned outputs,
//! the twin's (and the GPU's) gradient against central finite differences of the twin's loss,
//! and the term inside the optimisation graph (Graph::add_temporal adds exactly its gradient).
//!
//! Tolerances: the loss is a two-stage f32 sum of up to ~10^4 squares of O(1) terms (relative
//! error ~1e-6) and each gradient element two f32 multiplies, so 1e-5 (normwise) holds with a
//! margin; a missing mask or a factor of 2 errs by > 1e-1. The finite differences use h = 1e-4 on
//! a quadratic, exact but for f64 rounding (~1e-12 relative).

mod common;
use common::*;
use stylize::gpu::adam::AdamConfig;
use stylize::gpu::temporal::temporal_loss;
use stylize::model::{LossSettings, Model, Pool, Preprocess, Tap};
use stylize::reference::flow as rf;
use stylize::runner::{compute_targets, Graph, Net, Targets};

const TOL: f64 = 1e-5;

fn mask(rng: &mut Rng, n: usize, soft: bool) -> Vec<f32> {
    (0..n).map(|_| if soft { rng.uniform(0.0, 1.0) } else { (rng.uniform(0.0, 1.0) < 0.7) as u32 as f32 }).collect()
}

#[test]
fn temporal_loss_matches_reference() {
    let mut rng = Rng::new(21);
    // 40x70: 8400 elements, 3 partial sums; the others fit one workgroup's share.
    for &(h, w, soft) in &[(7usize, 13usize, false), (33, 17, true), (40, 70, false)] {
        let n = 3 * h * w;
        let (x, t, m) = (rng.vec(n, 0.0, 1.0), rng.vec(n, 0.0, 1.0), mask(&mut rng, h * w, soft));
        let weight = 3.5;
        let (want_loss, want_grad) = rf::temporal_loss(&f64s(&x), &f64s(&t), &f64s(&m), weight);
        let (xt, tt, mt) = (upload([3, h, w], &x), upload([3, h, w], &t), upload([1, h, w], &m));
        for accumulate in [false, true] {
            let out = poisoned([4, 1, 1]);
            let prior = rng.vec(n, -1.0, 1.0);
            let dx = if accumulate { upload([3, h, w], &prior) } else { poisoned([3, h, w]) };
            run(&temporal_loss(ctx(), &xt, &tt, &mt, &out, 2, weight as f32, &dx, accumulate).unwrap());
            let what = format!("temporal {h}x{w} soft={soft} accumulate={accumulate}");
            let got = read(&out);
            assert_close(&format!("{what} loss"), &got[2..3], &[want_loss], TOL);
            assert!(got[0].is_nan() && got[1].is_nan() && got[3].is_nan(), "{what}: wrote another slot");
            let want: Vec<f64> =
                want_grad.iter().zip(&prior).map(|(g, p)| g + if accumulate { *p as f64 } else { 0.0 }).collect();
            assert_close(&format!("{what} gradient"), &read(&dx), &want, TOL);
        }
    }
}

#[test]
fn temporal_gradient_matches_finite_differences() {
    let mut rng = Rng::new(22);
    let (h, w) = (6, 9);
    let n = 3 * h * w;
    let (x, t, m) = (f64s(&rng.vec(n, 0.0, 1.0)), f64s(&rng.vec(n, 0.0, 1.0)), f64s(&mask(&mut rng, h * w, true)));
    let weight = 2.0;
    let f = |x: &[f64]| rf::temporal_loss(x, &t, &m, weight).0;
    let (_, grad) = rf::temporal_loss(&x, &t, &m, weight);
    let gpu_grad = {
        let (xt, tt, mt) = (upload([3, h, w], &to32(&x)), upload([3, h, w], &to32(&t)), upload([1, h, w], &to32(&m)));
        let (out, dx) = (poisoned([1, 1, 1]), poisoned([3, h, w]));
        run(&temporal_loss(ctx(), &xt, &tt, &mt, &out, 0, weight as f32, &dx, false).unwrap());
        read(&dx)
    };
    let scale = grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
    for i in (0..n).step_by(5) {
        let d = fd(&f, &x, i, 1e-4);
        assert!((grad[i] - d).abs() <= 1e-9 * scale.max(1e-12), "twin gradient {i}: {} vs fd {d}", grad[i]);
        assert!((gpu_grad[i] as f64 - d).abs() <= 1e-5 * scale, "GPU gradient {i}: {} vs fd {d}", gpu_grad[i]);
    }
    // Masked-out pixels get no gradient at all.
    let zero = (0..h * w).find(|&p| m[p] == 0.0);
    if let Some(p) = zero {
        assert_eq!(gpu_grad[p], 0.0);
    }
}

fn to32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn graph_adds_the_temporal_gradient_and_loss() {
    let mut rng = Rng::new(23);
    let (h, w) = (12, 15);
    let taps = |v: &[&str]| v.iter().map(|n| Tap::parse(Model::Vgg19, n).unwrap()).collect::<Vec<_>>();
    let s = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu2_1"]),
        style_layers: taps(&["relu1_1", "relu2_1"]),
        style_layer_weights: vec![1.0, 1.0],
        content_weight: 1.0,
        style_weight: 10.0,
        style_loss: Default::default(),
        tv_weight: 0.1,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    let net = Net::new(ctx(), &random_convs(&mut rng, s.convs_needed())).unwrap();
    let content = rng.vec(3 * h * w, 0.0, 1.0);
    let style = rng.vec(3 * h * w, 0.0, 1.0);
    let tc = compute_targets(ctx(), &net, &s, &content, h, w, true, false).unwrap();
    let ts = compute_targets(ctx(), &net, &s, &style, h, w, false, true).unwrap();
    let targets = Targets { content: tc.content, style: ts.style };
    let x0 = rng.vec(3 * h * w, 0.0, 1.0);
    let mut g = Graph::new(ctx(), &net, &s, &targets, &x0, h, w, AdamConfig::default()).unwrap();
    g.evaluate(ctx()).unwrap();
    let base = read(&g.grad);
    assert_eq!(g.read_temporal_loss(ctx()).unwrap(), None);
    assert_eq!(g.read_losses(ctx()).unwrap().temporal, None);

    let (t, m) = (rng.vec(3 * h * w, 0.0, 1.0), mask(&mut rng, h * w, false));
    let weight = 50.0;
    g.add_temporal(ctx(), &upload([3, h, w], &t), &upload([1, h, w], &m), weight).unwrap();
    g.grad.fill(ctx(), f32::NAN);
    g.evaluate(ctx()).unwrap();
    let (want_loss, want_grad) = rf::temporal_loss(&f64s(&x0), &f64s(&t), &f64s(&m), weight as f64);
    let got_loss = g.read_temporal_loss(ctx()).unwrap().unwrap();
    assert_close("graph temporal loss", &[got_loss], &[want_loss], TOL);
    // The progress line and --log-json read it with the other terms, and it is in the total.
    let l = g.read_losses(ctx()).unwrap();
    assert_eq!(l.temporal, Some(got_loss));
    assert_eq!(l.total(), l.content_total() + l.style_total() + l.tv + got_loss);
    let added: Vec<f32> = read(&g.grad).iter().zip(&base).map(|(a, b)| a - b).collect();
    // The difference of two O(grad) vectors: f32 cancellation, so relative to the sum's scale.
    let scale = base.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
    let err = added.iter().zip(&want_grad).fold(0.0f64, |a, (g, r)| a.max((*g as f64 - r).abs()));
    let wscale = want_grad.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    println!("graph temporal gradient: max err {err:.2e} (gradient scale {wscale:.2e}, graph {scale:.2e})");
    assert!(err <= 1e-5 * (wscale + scale), "temporal gradient in the graph off by {err}");
    assert!(wscale > 1e-2 * scale, "the temporal term must matter for this test");
}
