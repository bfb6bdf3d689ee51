//! GPU L-BFGS (gpu::lbfgs) against the CPU twin (reference::Lbfgs, torch.optim.LBFGS's update
//! without line search) on a quadratic, iteration by iteration, and against Adam on the real
//! pipeline.

mod common;
use common::*;
use stylize::gpu::lbfgs::{Lbfgs, LbfgsConfig};
use stylize::gpu::Tensor;
use stylize::reference as r;

#[test]
fn lbfgs_matches_reference_on_a_quadratic() {
    // f(x) = 1/2 sum a_i (x_i - c_i)^2 with a spread of curvatures (condition number 100).
    let mut rng = Rng::new(11);
    for &(n, history) in &[(7usize, 3usize), (1000, 5), (30_001, 100)] {
        let a: Vec<f64> = (0..n).map(|_| 0.1 + 9.9 * rng.uniform(0.0, 1.0) as f64).collect();
        let c: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
        let x0 = rng.vec(n, -1.0, 1.0);
        let grad = |x: &[f64]| -> Vec<f64> { x.iter().zip(&a).zip(&c).map(|((x, a), c)| a * (x - c)).collect() };
        let f = |x: &[f64]| -> f64 { x.iter().zip(&a).zip(&c).map(|((x, a), c)| 0.5 * a * (x - c) * (x - c)).sum() };

        let x = upload([n, 1, 1], &x0);
        let g = Tensor::new(ctx(), [n, 1, 1], "g").unwrap();
        let opt = Lbfgs::new(ctx(), &x, &g, LbfgsConfig { history, lr: 1.0, bounds: None }).unwrap();
        let mut cpu = r::Lbfgs::new(history, 1.0);
        let mut xc = f64s(&x0);
        let f0 = f(&xc);
        for k in 1..=8u64 {
            // Both take the gradient at the GPU's current x, so the comparison isolates the update.
            let xg = f64s(&read(&x));
            // The GPU sees the gradient in f32: give the reference the same rounded values, so
            // the comparison measures the update's arithmetic, not the inputs' rounding (y is a
            // difference of nearby gradients, which would amplify it ~1e3 times).
            let g32: Vec<f32> = grad(&xg).iter().map(|&v| v as f32).collect();
            let gv = f64s(&g32);
            g.write(ctx(), &g32);
            let mut enc = ctx().device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                opt.record(&mut pass, k);
            }
            ctx().queue.submit([enc.finish()]);
            ctx().wait().unwrap();
            let mut xr = xg.clone();
            cpu.step(&mut xr, &gv);
            xc = xr;
            let got = read(&x);
            assert_close(&format!("lbfgs n={n} m={history} iteration {k}"), &got, &xc, 1e-5);
        }
        let f8 = f(&xc);
        println!("quadratic n={n}: f {f0:.3e} -> {f8:.3e} in 8 iterations");
        assert!(f8 < 1e-2 * f0, "L-BFGS should converge fast on a quadratic");
    }
}

#[test]
fn lbfgs_beats_adam_on_the_pipeline_in_the_same_iterations() {
    use stylize::gpu::adam::AdamConfig;
    use stylize::model::{LossSettings, Model, Pool, Preprocess, Tap};
    use stylize::runner::{compute_targets, Graph, Net, Targets};
    let taps = |v: &[&str]| v.iter().map(|n| Tap::parse(Model::Vgg19, n).unwrap()).collect::<Vec<_>>();
    let s = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu2_2"]),
        style_layers: taps(&["relu1_1", "relu2_1", "relu3_1"]),
        style_layer_weights: vec![1.0; 3],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 0.1,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    let (h, w) = (20, 20);
    let mut rng = Rng::new(12);
    let convs = random_convs(&mut rng, s.convs_needed());
    let net = Net::new(ctx(), &convs).unwrap();
    let content = rng.vec(3 * h * w, 0.0, 1.0);
    let style = rng.vec(3 * h * w, 0.0, 1.0);
    let init = rng.vec(3 * h * w, 0.0, 1.0);
    let mk = || {
        let tc = compute_targets(ctx(), &net, &s, &content, h, w, true, false).unwrap();
        let ts = compute_targets(ctx(), &net, &s, &style, h, w, false, true).unwrap();
        let t = Targets { content: tc.content, style: ts.style };
        let cfg = AdamConfig { lr: 0.05, clamp: Some((0.0, 1.0)), ..Default::default() };
        Graph::new(ctx(), &net, &s, &t, &init, h, w, cfg).unwrap()
    };
    let iters = 30;
    let adam = mk();
    adam.step(ctx(), iters).unwrap();
    adam.evaluate(ctx()).unwrap();
    let la = adam.read_losses(ctx()).unwrap().total();
    let mut lb = mk();
    lb.evaluate(ctx()).unwrap();
    let l0 = lb.read_losses(ctx()).unwrap().total();
    lb.set_lbfgs(ctx(), LbfgsConfig { history: 100, lr: 1.0, bounds: None }).unwrap();
    lb.step(ctx(), iters).unwrap();
    lb.evaluate(ctx()).unwrap();
    let ll = lb.read_losses(ctx()).unwrap().total();
    println!("after {iters} iterations from {l0:.4e}: Adam {la:.4e}, L-BFGS {ll:.4e}");
    assert!(ll.is_finite() && ll < la, "L-BFGS {ll} should beat Adam {la}");
}

/// Runs GPU and reference L-BFGS side by side on the gradient `grad` from `x0` for `iters`
/// iterations, calling `before(k, gpu, cpu)` ahead of iteration k, and compares x after each.
#[allow(clippy::too_many_arguments)]
fn side_by_side(
    x0: &[f32],
    history: usize,
    lr: f32,
    bounds: Option<(f32, f32)>,
    iters: u64,
    grad: &dyn Fn(&[f64]) -> Vec<f64>,
    before: &dyn Fn(u64, &Lbfgs, &mut r::Lbfgs),
) -> ((u32, u32), r::Lbfgs) {
    let n = x0.len();
    let x = upload([n, 1, 1], x0);
    let g = Tensor::new(ctx(), [n, 1, 1], "g").unwrap();
    let opt = Lbfgs::new(ctx(), &x, &g, LbfgsConfig { history, lr, bounds }).unwrap();
    let mut cpu = r::Lbfgs::new(history, lr as f64);
    cpu.bounds = bounds.map(|(a, b)| (a as f64, b as f64));
    for k in 1..=iters {
        before(k, &opt, &mut cpu);
        let xg = f64s(&read(&x));
        // As above: both see the gradient rounded to f32.
        let g32: Vec<f32> = grad(&xg).iter().map(|&v| v as f32).collect();
        g.write(ctx(), &g32);
        let mut enc = ctx().device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            opt.record(&mut pass, k);
        }
        ctx().queue.submit([enc.finish()]);
        ctx().wait().unwrap();
        let mut xr = xg.clone();
        cpu.step(&mut xr, &f64s(&g32));
        assert_close(&format!("lbfgs n={n} m={history} iteration {k}"), &read(&x), &xr, 1e-4);
    }
    (opt.safeguard_counts(ctx()).unwrap(), cpu)
}

/// A double well per coordinate, f = sum a_i (x_i^4 / 4 - x_i^2 / 2) with random a_i in
/// [0.5, 1.5], and a start near its concave middle: (x0, the gradient).
fn double_well() -> (Vec<f32>, impl Fn(&[f64]) -> Vec<f64>) {
    let mut rng = Rng::new(5);
    let n = 1000;
    let a: Vec<f64> = (0..n).map(|_| 0.5 + rng.uniform(0.0, 1.0) as f64).collect();
    let x0 = rng.vec(n, -0.3, 0.3);
    (x0, move |x: &[f64]| -> Vec<f64> { x.iter().zip(&a).map(|(x, a)| a * (x * x * x - x)).collect() })
}

#[test]
fn lbfgs_skips_pairs_without_curvature_as_the_reference() {
    // A double well per coordinate, f = sum a_i (x_i^4 / 4 - x_i^2 / 2), started near its
    // concave middle: the first pairs see negative curvature (y.s < 0) and must be skipped;
    // later ones, in the wells, are kept. History 2, so skipped pairs also cycle through a full
    // ring.
    let (x0, grad) = double_well();
    let ((skipped, fallbacks), cpu) = side_by_side(&x0, 2, 0.5, None, 14, &grad, &|_, _, _| {});
    println!(
        "double well: {skipped} pairs skipped, {fallbacks} fallbacks (reference {} / {})",
        cpu.skipped, cpu.fallbacks
    );
    assert!(cpu.skipped >= 1, "the problem did not trigger the skip");
    assert_eq!((skipped, fallbacks), (cpu.skipped, cpu.fallbacks));
}

#[test]
fn lbfgs_falls_back_to_steepest_descent_on_a_non_descent_direction() {
    // With only pairs of positive curvature the two-loop recursion gives a descent direction
    // (its H is positive definite); a pair of negative curvature kept with rho = 1 / (y.s) < 0,
    // as an L-BFGS without the skip keeps it, can break that. Plant exactly that: on the double
    // well, pair 1 (made at iteration 2, in its concave middle) is skipped; before iteration 3 it
    // gets back rho = 1 / (y.s), in both, the same f32 value. Iteration 3's direction is then an
    // ascent one (g.d = +58 in f64), so both must take -H g, with the same result.
    let (x0, grad) = double_well();
    let plant = |k: u64, gpu: &Lbfgs, cpu: &mut r::Lbfgs| {
        if k == 3 {
            // Scalar slot 2 holds y.s of the pair made last (pair 1, in ring slot 0).
            let ys = gpu.scalars.read(ctx()).unwrap()[2];
            assert!(ys < 0.0, "pair 1 has negative curvature ({ys})");
            gpu.set_rho(ctx(), 0, 1.0 / ys).unwrap();
            cpu.set_rho(0, (1.0 / ys) as f64);
        }
    };
    let ((skipped, fallbacks), cpu) = side_by_side(&x0, 3, 0.5, None, 5, &grad, &plant);
    println!("planted: GPU {skipped} skipped / {fallbacks} fallbacks, reference {} / {}", cpu.skipped, cpu.fallbacks);
    assert!(cpu.fallbacks >= 1, "the planted pair did not make a non-descent direction");
    assert_eq!((skipped, fallbacks), (cpu.skipped, cpu.fallbacks));
    // Without the planted pair no fallback is needed.
    let ((_, fallbacks), cpu) = side_by_side(&x0, 3, 0.5, None, 5, &grad, &|_, _, _| {});
    assert_eq!((fallbacks, cpu.fallbacks), (0, 0));
}

#[test]
fn projected_lbfgs_keeps_iterates_in_bounds_as_the_reference() {
    // A quadratic whose minimum lies partly outside [0,1] (centres in [-0.5, 1.5]): projected
    // L-BFGS clamps every iterate and builds its pairs from the steps actually taken; GPU and
    // reference agree step by step, the iterates stay in [0,1] with many on the bounds, and the
    // objective falls to near the constrained minimum.
    let mut rng = Rng::new(21);
    let n = 2000;
    let a: Vec<f64> = (0..n).map(|_| 0.1 + 9.9 * rng.uniform(0.0, 1.0) as f64).collect();
    let c: Vec<f64> = (0..n).map(|_| rng.uniform(-0.5, 1.5) as f64).collect();
    let x0 = rng.vec(n, 0.0, 1.0);
    let grad = |x: &[f64]| -> Vec<f64> { x.iter().zip(&a).zip(&c).map(|((x, a), c)| a * (x - c)).collect() };
    let f = |x: &[f64]| -> f64 { x.iter().zip(&a).zip(&c).map(|((x, a), c)| 0.5 * a * (x - c) * (x - c)).sum() };
    let ((skipped, fallbacks), cpu) = side_by_side(&x0, 5, 1.0, Some((0.0, 1.0)), 12, &grad, &|_, _, _| {});
    assert_eq!((skipped, fallbacks), (cpu.skipped, cpu.fallbacks));
    // Replay the reference alone to look at its iterate.
    let mut cpu = r::Lbfgs::new(5, 1.0);
    cpu.bounds = Some((0.0, 1.0));
    let mut x = f64s(&x0);
    for _ in 0..12 {
        let g: Vec<f64> = grad(&x).iter().map(|&v| v as f32 as f64).collect();
        cpu.step(&mut x, &g);
    }
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    let at_bounds = x.iter().filter(|&&v| v == 0.0 || v == 1.0).count();
    let best: Vec<f64> = c.iter().map(|c| c.clamp(0.0, 1.0)).collect();
    let (f0, f12, fmin) = (f(&f64s(&x0)), f(&x), f(&best));
    println!("projected: f {f0:.4e} -> {f12:.4e} (constrained minimum {fmin:.4e}), {at_bounds} of {n} at a bound");
    assert!(at_bounds > n / 10, "{at_bounds}");
    assert!(f12 - fmin < 0.05 * (f0 - fmin), "not near the constrained minimum");
}
