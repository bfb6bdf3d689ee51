//! Whole Gatys iterations on the GPU against the f64 CPU pipeline (`reference::step`), with
//! seeded random VGG19-shaped weights, and the optimiser actually lowering the loss.
//!
//! Tolerances: one iteration chains up to 13 conv layers forward and 13 backward, each an f32
//! dot product of up to 4608 terms, plus Gram matrices; the per-layer relative error (~1e-6)
//! compounds: we observe <= 3e-6 on the image gradient and <= 1.5e-6 on the losses. We require
//! 5e-5 on every loss term and on the image gradient (normwise), well under 1e-4 and far below
//! the error any wrong op makes (> 1e-2).

mod common;
use common::*;
use stylize::gpu::adam::AdamConfig;
use stylize::model::{ConvLayer, LossSettings, Model, Preprocess, Tap};
use stylize::model::{Edge, Pool};
use stylize::reference::step as rs;
use stylize::runner::{compute_targets, Graph, Net};

const TOL_STEP: f64 = 5e-5;

/// Seeded He-uniform random weights with the VGG19 shapes.
fn random_net(seed: u64, n: usize) -> Vec<ConvLayer> {
    random_convs(&mut Rng::new(seed), n)
}

fn taps(names: &[&str]) -> Vec<Tap> {
    taps_of(Model::Vgg19, names)
}

fn taps_of(m: Model, names: &[&str]) -> Vec<Tap> {
    names.iter().map(|n| Tap::parse(m, n).unwrap()).collect()
}

fn check_iteration(what: &str, s: &LossSettings, h: usize, w: usize, seed: u64) {
    check_iteration_edge(what, s, h, w, seed, Edge::Zero)
}

fn check_iteration_edge(what: &str, s: &LossSettings, h: usize, w: usize, seed: u64, edge: Edge) {
    check_iteration_with(what, s, h, w, seed, edge, false);
}

/// One GPU iteration (`--normalize-gradients` when `normalize`) against the f64 reference;
/// returns the GPU's image gradient.
fn check_iteration_with(
    what: &str,
    s: &LossSettings,
    h: usize,
    w: usize,
    seed: u64,
    edge: Edge,
    normalize: bool,
) -> Vec<f32> {
    let n = s.convs_needed();
    let r = edge.margin(s);
    let net_w = random_convs_of(s.model, &mut Rng::new(seed), n);
    let mut rng = Rng::new(seed + 100);
    let content = rng.vec(3 * h * w, 0.0, 1.0);
    // The style image has another size: targets must not depend on it matching.
    let (sh, sw) = (h + 8, w - 4);
    let style = rng.vec(3 * sh * sw, 0.0, 1.0);
    let x0 = rng.vec(3 * h * w, 0.0, 1.0);

    let mut net = Net::new(ctx(), &net_w).unwrap();
    net.edge = edge;
    let tc = compute_targets(ctx(), &net, s, &content, h, w, true, false).unwrap();
    let ts = compute_targets(ctx(), &net, s, &style, sh, sw, false, true).unwrap();
    let targets = stylize::runner::Targets { content: tc.content, style: ts.style };
    let g = Graph::new_with(ctx(), &net, s, &targets, &x0, h, w, AdamConfig::default(), normalize).unwrap();
    g.losses.fill(ctx(), f32::NAN);
    g.grad.fill(ctx(), f32::NAN);
    g.evaluate(ctx()).unwrap();
    let losses = g.read_losses(ctx()).unwrap();
    let grad = g.grad.read(ctx()).unwrap();

    let (rc, _) = rs::targets(&net_w, s, &f64s(&content), h, w, r);
    let (_, rsty) = rs::targets(&net_w, s, &f64s(&style), sh, sw, r);
    let (lc, ls, tv, dx) = rs::evaluate_with(&net_w, s, &rc, &rsty, &f64s(&x0), h, w, r, normalize);
    for (k, (gv, rv)) in losses.content.iter().zip(&lc).enumerate() {
        assert_close(&format!("{what}: content loss {k}"), &[*gv], &[*rv], TOL_STEP);
    }
    for (k, (gv, rv)) in losses.style.iter().zip(&ls).enumerate() {
        assert!(*rv > 0.0);
        assert_close(&format!("{what}: style loss {k}"), &[*gv], &[*rv], TOL_STEP);
    }
    assert_close(&format!("{what}: tv loss"), &[losses.tv], &[tv], TOL_STEP);
    assert_close(&format!("{what}: image gradient"), &grad, &dx, TOL_STEP);
    grad
}

#[test]
fn one_iteration_matches_reference_default_layers() {
    let s = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu4_2"]),
        style_layers: taps(&["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]),
        style_layer_weights: vec![1.0, 0.5, 2.0, 1.0, 3.0],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 0.5,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    check_iteration("48x40 avg torch", &s, 48, 40, 1);
}

#[test]
fn one_iteration_matches_reference_max_pool_conv_and_pool_taps() {
    let s = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["conv2_2", "relu1_2"]),
        style_layers: taps(&["conv1_1", "pool1", "relu2_1", "relu3_1"]),
        style_layer_weights: vec![1.0, 1.0, 1.0, 1.0],
        content_weight: 2.0,
        style_weight: 10.0,
        style_loss: Default::default(),
        tv_weight: 1.0,
        pool: Pool::Max,
        preprocess: Preprocess::Caffe,
    };
    check_iteration("27x21 max caffe conv/pool taps", &s, 27, 21, 2);
    // --edge reflect: 5 px rounded up to 8 (2 pools), the graph at 43x37, taps cropped.
    check_iteration_edge("27x21 max caffe conv/pool taps, reflect 8", &s, 27, 21, 2, Edge::Reflect(5));
}

#[test]
fn one_iteration_matches_reference_reflected_margin_default_layers() {
    // VGG16's default taps with the default margin (16, the alignment of 4 pools): a margin
    // wider than the style image's 16 px side, so it reflects more than once there.
    let m = Model::Vgg16;
    let s = LossSettings {
        model: m,
        content_layers: taps_of(m, &["relu4_2"]),
        style_layers: taps_of(m, &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]),
        style_layer_weights: vec![1.0, 0.5, 2.0, 1.0, 3.0],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 0.5,
        pool: Pool::Avg,
        preprocess: Preprocess::Caffe,
    };
    check_iteration_edge("vgg16 21x20 avg caffe reflect 16", &s, 21, 20, 9, Edge::Reflect(16));
}

#[test]
fn one_iteration_matches_reference_vgg16_default_layers() {
    // VGG16 (2, 2, 3, 3, 3 convs per block): the default taps need conv1_1..conv5_1 (11 layers),
    // relu3_3 and pool3 end block 3 a layer earlier than in VGG19.
    let m = Model::Vgg16;
    let s = LossSettings {
        model: m,
        content_layers: taps_of(m, &["relu4_2"]),
        style_layers: taps_of(m, &["relu1_1", "relu2_1", "relu3_1", "relu3_3", "pool3", "relu4_1", "relu5_1"]),
        style_layer_weights: vec![1.0, 0.5, 2.0, 1.0, 0.7, 1.0, 3.0],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 0.5,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    assert_eq!(s.convs_needed(), 11);
    check_iteration("vgg16 48x40 avg torch", &s, 48, 40, 7);
}

#[test]
fn one_iteration_matches_reference_vgg16_deepest_layers_max_pool() {
    // The whole VGG16 (conv5_3 is its last layer), max pooling, Caffe convention.
    let m = Model::Vgg16;
    let s = LossSettings {
        model: m,
        content_layers: taps_of(m, &["conv4_3", "relu5_3"]),
        style_layers: taps_of(m, &["relu1_2", "pool4", "relu5_2"]),
        style_layer_weights: vec![1.0, 2.0, 1.0],
        content_weight: 2.0,
        style_weight: 10.0,
        style_loss: Default::default(),
        tv_weight: 1.0,
        pool: Pool::Max,
        preprocess: Preprocess::Caffe,
    };
    assert_eq!(s.convs_needed(), 13);
    check_iteration("vgg16 35x33 max caffe conv5_3", &s, 35, 33, 8);
}

#[test]
fn whole_gradient_matches_finite_differences() {
    // The reference pipeline's gradient (which the GPU matches above) against central
    // differences of its own loss, at a few pixels of a small image.
    let s = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu2_2"]),
        style_layers: taps(&["relu1_1", "relu2_1", "relu3_1"]),
        style_layer_weights: vec![1.0; 3],
        content_weight: 1.0,
        style_weight: 100.0,
        style_loss: Default::default(),
        tv_weight: 1.0,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    let (h, w) = (12, 10);
    let net_w = random_net(3, s.convs_needed());
    // Without and with a reflected margin (4: the alignment of 2 pools), so the fold is checked.
    for r in [0, 4] {
        let mut rng = Rng::new(4);
        let content = f64s(&rng.vec(3 * h * w, 0.0, 1.0));
        let style = f64s(&rng.vec(3 * h * w, 0.0, 1.0));
        let x = f64s(&rng.vec(3 * h * w, 0.0, 1.0));
        let (rc, _) = rs::targets(&net_w, &s, &content, h, w, r);
        let (_, rsty) = rs::targets(&net_w, &s, &style, h, w, r);
        let total = |v: &[f64]| {
            let (a, b, c, _) = rs::evaluate(&net_w, &s, &rc, &rsty, v, h, w, r);
            a.iter().sum::<f64>() + b.iter().sum::<f64>() + c
        };
        let (_, _, _, dx) = rs::evaluate(&net_w, &s, &rc, &rsty, &x, h, w, r);
        let scale = dx.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut worst = 0.0f64;
        // Edge pixels (mirrored most) and random ones.
        let edge = [0, w - 1, (h - 1) * w, 1, w + 1];
        for k in 0..16 {
            let i = if k < edge.len() { edge[k] } else { rng.below(x.len()) };
            worst = worst.max((fd(&total, &x, i, 1e-6) - dx[i]).abs() / scale);
        }
        println!("whole-pipeline gradient vs finite differences, margin {r}: rel err {worst:.2e}");
        assert!(worst < 1e-5, "pipeline gradient vs FD (margin {r}) {worst:.3e}");
    }
}

#[test]
fn fifty_adam_steps_lower_the_loss() {
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
    let (h, w) = (24, 24);
    let net = Net::new(ctx(), &random_net(5, s.convs_needed())).unwrap();
    let mut rng = Rng::new(6);
    let content = rng.vec(3 * h * w, 0.0, 1.0);
    let style = rng.vec(3 * h * w, 0.0, 1.0);
    let init = rng.vec(3 * h * w, 0.0, 1.0);
    let tc = compute_targets(ctx(), &net, &s, &content, h, w, true, false).unwrap();
    let ts = compute_targets(ctx(), &net, &s, &style, h, w, false, true).unwrap();
    let targets = stylize::runner::Targets { content: tc.content, style: ts.style };
    let cfg = AdamConfig { lr: 0.05, clamp: Some((0.0, 1.0)), ..Default::default() };
    let g = Graph::new(ctx(), &net, &s, &targets, &init, h, w, cfg).unwrap();
    g.evaluate(ctx()).unwrap();
    let first = g.read_losses(ctx()).unwrap().total();
    g.step(ctx(), 50).unwrap();
    g.evaluate(ctx()).unwrap();
    let last = g.read_losses(ctx()).unwrap().total();
    let img = g.read_image(ctx()).unwrap();
    println!("total loss {first:.4e} -> {last:.4e} after 50 Adam steps (factor {:.1})", first / last);
    assert!(img.iter().all(|v| (0.0..=1.0).contains(v)), "pixels stay clamped to [0,1]");
    // Observed: 0.324 -> 0.054 (6.0x) at lr 0.05 from noise.
    assert!(first / last > 5.0, "loss fell only by {:.2}x", first / last);
}

/// Settings with seeded random loss weights (content, style, per style layer, TV).
fn random_weights(s: LossSettings, seed: u64) -> LossSettings {
    let mut rng = Rng::new(seed);
    let v = rng.vec(3 + s.style_layers.len(), 0.2, 3.0);
    LossSettings {
        content_weight: v[0],
        style_weight: 100.0 * v[1],
        tv_weight: v[2],
        style_layer_weights: v[3..].to_vec(),
        ..s
    }
}

#[test]
fn one_iteration_normalized_gradients_match_reference() {
    // --normalize-gradients (jcjohnson's -normalize_gradients): each content and style term's
    // gradient divided by its L1 norm at its tap. Its extra error is each norm's (a tree sum,
    // ~1e-7 relative) scaling the whole term, far below the chained convs' ~3e-6: the same
    // TOL_STEP holds. Off and on must differ by far more than that, or the test could not fail.
    let cases = [
        (
            "48x40 avg torch default layers",
            LossSettings {
                model: Model::Vgg19,
                content_layers: taps(&["relu4_2"]),
                style_layers: taps(&["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]),
                style_layer_weights: vec![],
                content_weight: 0.0,
                style_weight: 0.0,
                style_loss: Default::default(),
                tv_weight: 0.0,
                pool: Pool::Avg,
                preprocess: Preprocess::Torch,
            },
            48,
            40,
            Edge::Zero,
        ),
        (
            // Two content layers (the weight split), a content and a style term on one tap
            // (each normalised apart, then summed), conv and pool taps, max pooling, a margin.
            "27x21 max caffe shared taps, reflect 8",
            LossSettings {
                model: Model::Vgg19,
                content_layers: taps(&["conv2_2", "relu2_1"]),
                style_layers: taps(&["conv1_1", "pool1", "relu2_1", "relu3_1"]),
                style_layer_weights: vec![],
                content_weight: 0.0,
                style_weight: 0.0,
                style_loss: Default::default(),
                tv_weight: 0.0,
                pool: Pool::Max,
                preprocess: Preprocess::Caffe,
            },
            27,
            21,
            Edge::Reflect(5),
        ),
    ];
    for (k, (what, s, h, w, edge)) in cases.into_iter().enumerate() {
        let s = random_weights(s, 40 + k as u64);
        let seed = 11 + k as u64;
        let on = check_iteration_with(&format!("{what}, normalized"), &s, h, w, seed, edge, true);
        let off = check_iteration_with(&format!("{what}, plain"), &s, h, w, seed, edge, false);
        let d = rel_err(&on, &f64s(&off));
        println!("{what}: normalized vs plain image gradient, rel diff {d:.2e}");
        assert!(d > 0.1, "{what}: --normalize-gradients changed the gradient by only {d:.2e}");
    }
}

#[test]
fn normalized_gradient_is_the_gradient_of_terms_reweighted_by_their_norms() {
    // An independent check of the reference's normalisation, and a finite-difference check of
    // it: at x0, the normalised gradient is the plain gradient of the loss whose term k has
    // weight w_k / (|g_k(x0)|_1 + 1e-8), g_k the term's weight-free gradient at its tap
    // (computed here from the reference's ops), and so matches central differences of that loss.
    let base = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu2_2"]),
        style_layers: taps(&["relu1_1", "relu2_1", "relu3_1"]),
        style_layer_weights: vec![],
        content_weight: 0.0,
        style_weight: 0.0,
        style_loss: Default::default(),
        tv_weight: 0.0,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    let s = random_weights(base, 50);
    let (h, w, r) = (12, 10, 4);
    let net_w = random_net(3, s.convs_needed());
    let mut rng = Rng::new(51);
    let content = f64s(&rng.vec(3 * h * w, 0.0, 1.0));
    let style = f64s(&rng.vec(3 * h * w, 0.0, 1.0));
    let x = f64s(&rng.vec(3 * h * w, 0.0, 1.0));
    let (rc, _) = rs::targets(&net_w, &s, &content, h, w, r);
    let (_, rsty) = rs::targets(&net_w, &s, &style, h, w, r);

    // Each term's weight-free tap gradient and its L1 norm.
    let f = rs::forward(&net_w, &s, &x, h, w, r, s.convs_needed());
    let l1 = |v: &[f64]| v.iter().map(|a| a.abs()).sum::<f64>() + stylize::reference::L1_EPS;
    let (a, _) = rs::crop(&f, &s, s.content_layers[0], h, w, r);
    let nc = l1(&stylize::reference::mse_backward(&a, &rc[0], 1.0));
    let ns: Vec<f64> = (0..s.style_layers.len())
        .map(|k| {
            let (a, [c, hh, ww]) = rs::crop(&f, &s, s.style_layers[k], h, w, r);
            let g = stylize::reference::gram_forward(&a, c, hh * ww);
            let dg = stylize::reference::mse_backward(&g, &rsty[k], 1.0);
            l1(&stylize::reference::gram_backward(&a, &dg, c, hh * ww))
        })
        .collect();
    let reweighted = LossSettings {
        content_weight: (s.content_weight as f64 / nc) as f32,
        style_weight: 1.0,
        style_loss: Default::default(),
        style_layer_weights: ns
            .iter()
            .zip(&s.style_layer_weights)
            .map(|(n, lw)| (s.style_weight as f64 * *lw as f64 / n) as f32)
            .collect(),
        ..s.clone()
    };
    let (lc, ls, tv, normalized) = rs::evaluate_with(&net_w, &s, &rc, &rsty, &x, h, w, r, true);
    let (lc0, ls0, tv0, _) = rs::evaluate(&net_w, &s, &rc, &rsty, &x, h, w, r);
    assert_eq!((lc, ls, tv), (lc0, ls0, tv0), "the losses do not change with the option");
    let (_, _, _, plain) = rs::evaluate(&net_w, &reweighted, &rc, &rsty, &x, h, w, r);
    // The reweighted settings hold f32 weights: ~6e-8 relative.
    let scale = normalized.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = normalized.iter().zip(&plain).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale;
    println!("normalized gradient vs reweighted plain gradient: rel err {err:.2e}");
    assert!(err < 1e-6, "normalized vs reweighted {err:.3e}");

    let total = |v: &[f64]| {
        let (a, b, c, _) = rs::evaluate(&net_w, &reweighted, &rc, &rsty, v, h, w, r);
        a.iter().sum::<f64>() + b.iter().sum::<f64>() + c
    };
    let mut worst = 0.0f64;
    for _ in 0..12 {
        let i = rng.below(x.len());
        worst = worst.max((fd(&total, &x, i, 1e-6) - normalized[i]).abs() / scale);
    }
    println!("normalized gradient vs finite differences of the reweighted loss: rel err {worst:.2e}");
    assert!(worst < 1e-5, "normalized gradient vs FD {worst:.3e}");
}
