//! Exact tiled rendering (src/tiled.rs): tiles give the same losses, image gradient and Adam and
//! L-BFGS iterates as one untiled graph, within f32 tolerance, and a tiled render (Adam, L-BFGS,
//! the iterate average) writes the untiled render's image.

mod common;
use common::*;
use stylize::gpu::adam::AdamConfig;
use stylize::gpu::conv::GemmTile;
use stylize::gpu::lbfgs::LbfgsConfig;
use stylize::gpu::{tile, AdapterChoice, Context, KernelOverrides, Variant};
use stylize::image_io;
use stylize::model::{ConvLayer, LossSettings, Model, Preprocess, StyleLoss, Tap};
use stylize::model::{Edge, Pool};
use stylize::reference as r;
use stylize::render::{render, Optimizer, RenderOptions, TileMode, WeightsSource};
use stylize::runner::{compute_targets, Graph, Net, Targets};
use stylize::tiled::optim::{HostAdam, TiledOptimizer};
use stylize::tiled::{halo_and_align, plan, TiledGraph};

#[test]
fn mask_rect_matches_reference() {
    let mut rng = Rng::new(21);
    let (c, h, w) = (5, 13, 7);
    let x = rng.vec(c * h * w, -1.0, 1.0);
    let rects: Vec<u32> = vec![0, 0, 13, 7, 2, 1, 9, 5, 0, 3, 4, 7];
    let rb = upload([rects.len(), 1, 1], &rects.iter().map(|v| f32::from_bits(*v)).collect::<Vec<_>>());
    for (level, rect) in [(1usize, [2usize, 1, 9, 5]), (2, [0, 3, 4, 7])] {
        let y = poisoned([c, h, w]);
        run(&tile::mask_rect(ctx(), &rb.buf, level, &upload([c, h, w], &x), &y));
        assert_close(
            &format!("mask_rect level {level} {rect:?}"),
            &read(&y),
            &r::mask_rect(&f64s(&x), h, w, rect),
            0.0,
        );
    }
}

#[test]
fn crop_matches_reference() {
    let mut rng = Rng::new(24);
    let (c, h, w) = (5, 13, 7);
    let x = rng.vec(c * h * w, -1.0, 1.0);
    for (at, out) in [([0usize, 0usize], [13usize, 7usize]), ([2, 1], [9, 5]), ([4, 3], [1, 4])] {
        let y = poisoned([c, out[0], out[1]]);
        run(&tile::crop_forward(ctx(), &upload([c, h, w], &x), at, &y));
        let want = r::crop_forward(&f64s(&x), c, h, w, at, out);
        assert_close(&format!("crop_forward {out:?} at {at:?}"), &read(&y), &want, 0.0);
        let dy = rng.vec(c * out[0] * out[1], -1.0, 1.0);
        let dx = poisoned([c, h, w]);
        run(&tile::crop_backward(ctx(), &upload([c, out[0], out[1]], &dy), at, &dx, false));
        let want = r::crop_backward(&f64s(&dy), c, h, w, at, out);
        assert_close(&format!("crop_backward {out:?} at {at:?}"), &read(&dx), &want, 0.0);
        // Accumulating onto what dx holds.
        let base = rng.vec(c * h * w, -1.0, 1.0);
        let dx = upload([c, h, w], &base);
        run(&tile::crop_backward(ctx(), &upload([c, out[0], out[1]], &dy), at, &dx, true));
        let sum: Vec<f64> = want.iter().zip(&base).map(|(a, b)| a + *b as f64).collect();
        assert_close(&format!("crop_backward accumulate {out:?} at {at:?}"), &read(&dx), &sum, 1e-7);
    }
}

fn taps(v: &[&str]) -> Vec<Tap> {
    v.iter().map(|n| Tap::parse(Model::Vgg19, n).unwrap()).collect()
}

#[test]
fn plan_halo_and_alignment() {
    let s = settings(Pool::Avg);
    // conv1_1..conv3_1 with two pools: radius 1+1+1 +2+2+2 +4 = 13 -> 16 (alignment 4).
    assert_eq!(halo_and_align(&s), (16, 4));
    let mut d = s.clone();
    d.style_layers = taps(&["relu5_1"]);
    d.style_layer_weights = vec![1.0];
    // relu5_1: receptive radius 85 -> 96 at alignment 16.
    assert_eq!(halo_and_align(&d), (96, 16));
    // VGG16 (3 convs in blocks 3-5): relu5_1's radius 2+1 +4+2 +12+4 +24+8 +16 = 73 -> 80, and
    // relu5_3 (its deepest layer) 73+32 = 105 -> 112.
    let mut v = d.clone();
    v.model = Model::Vgg16;
    v.content_layers = vec![Tap::parse(Model::Vgg16, "relu4_2").unwrap()];
    v.style_layers = vec![Tap::parse(Model::Vgg16, "relu5_1").unwrap()];
    assert_eq!(halo_and_align(&v), (80, 16));
    v.style_layers = vec![Tap::parse(Model::Vgg16, "relu5_3").unwrap()];
    assert_eq!(halo_and_align(&v), (112, 16));
    for margin in [0, 8] {
        let tiles = plan(&s, 50, 37, margin, 20);
        assert_eq!(tiles.len(), 3 * 2);
        // Interiors partition the image's positions (inside the margin), regions stay inside
        // the padded input.
        let (ph, pw) = (50 + 2 * margin, 37 + 2 * margin);
        let mut owned = vec![0u8; ph * pw];
        for t in &tiles {
            let [y0, x0, y1, x1] = t.interior;
            assert!(y0 % 4 == 0 && x0 % 4 == 0 && t.region[0] % 4 == 0 && t.region[1] % 4 == 0);
            assert!(t.region[2] <= ph && t.region[3] <= pw);
            for y in y0..y1 {
                for x in x0..x1 {
                    owned[y * pw + x] += 1;
                }
            }
        }
        for (i, &c) in owned.iter().enumerate() {
            let (y, x) = (i / pw, i % pw);
            let inside = (margin..margin + 50).contains(&y) && (margin..margin + 37).contains(&x);
            assert_eq!(c, inside as u8, "margin {margin}: position ({y}, {x})");
        }
    }
}

fn settings(pool: Pool) -> LossSettings {
    LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu2_2"]),
        style_layers: taps(&["relu1_1", "pool1", "relu2_1", "relu3_1"]),
        style_layer_weights: vec![1.0, 0.5, 1.0, 2.0],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 0.5,
        pool,
        preprocess: Preprocess::Torch,
    }
}

#[test]
fn tiled_equals_untiled() {
    // Zero padding, and a reflected margin: 5 px rounded up to 8 (alignment 4: 2 pools).
    for (pool, edge) in [(Pool::Avg, Edge::Zero), (Pool::Max, Edge::Zero), (Pool::Avg, Edge::Reflect(5))] {
        let s = settings(pool);
        // 70x53: odd sizes; tile 32 -> 3 x 2 = 6 tiles, halo 16.
        let (h, w) = (53, 70);
        let mut rng = Rng::new(22);
        let convs = random_convs(&mut rng, s.convs_needed());
        let mut net = Net::new(ctx(), &convs).unwrap();
        net.edge = edge;
        assert_eq!(edge.margin(&s), if edge == Edge::Zero { 0 } else { 8 });
        let content = rng.vec(3 * h * w, 0.0, 1.0);
        let (sh, sw) = (41, 45);
        let style = rng.vec(3 * sh * sw, 0.0, 1.0);
        let init = rng.vec(3 * h * w, 0.0, 1.0);
        let cfg = AdamConfig { lr: 0.02, clamp: Some((0.0, 1.0)), ..Default::default() };

        let tc = compute_targets(ctx(), &net, &s, &content, h, w, true, false).unwrap();
        let ts = compute_targets(ctx(), &net, &s, &style, sh, sw, false, true).unwrap();
        let g =
            Graph::new(ctx(), &net, &s, &Targets { content: tc.content, style: ts.style }, &init, h, w, cfg).unwrap();
        let st = stylize::tiled::style_targets(ctx(), &net, &s, &style, sh, sw, 24).unwrap();
        let mut t = TiledGraph::new(ctx(), &net, &s, (&content, h, w), st, &init, 32).unwrap();
        let mut adam = HostAdam::new(t.image.len(), cfg);
        assert_eq!(t.tiles.len(), 6);
        assert_eq!(t.margin, edge.margin(&s));
        for step in 0..3 {
            g.evaluate(ctx()).unwrap();
            t.evaluate(ctx(), &net).unwrap();
            let (lu, lt) = (g.read_losses(ctx()).unwrap(), t.read_losses(ctx()).unwrap());
            let what = format!("{pool:?} {edge:?} step {step}");
            let want: Vec<f64> = lu.content.iter().chain(&lu.style).chain([&lu.tv]).map(|&v| v as f64).collect();
            let got: Vec<f32> = lt.content.iter().chain(&lt.style).chain([&lt.tv]).copied().collect();
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{what}: loss term {k} tiled vs untiled"), &[*a], &[*b], 2e-5);
            }
            let gu = g.grad.read(ctx()).unwrap();
            assert_close(&format!("{what}: image gradient tiled vs untiled"), &t.grad, &f64s(&gu), 5e-5);
            // Advance both, the tiled host Adam fed the untiled gradient: it must move the image as
            // the GPU graph's Adam does. Then both continue from the same image: Adam's first
            // steps move a pixel by about lr * sign(gradient), so where a gradient is within f32
            // noise of zero, kernels that round differently (tiles against one image, Winograd
            // tile sizes chosen by shape) would send it opposite ways and the next steps would
            // compare different images.
            t.grad = gu;
            g.step(ctx(), 1).unwrap();
            adam.step(&mut t.image, &t.grad);
            let iu = g.read_image(ctx()).unwrap();
            assert_close(&format!("{what}: image after Adam tiled vs untiled"), &t.image, &f64s(&iu), 1e-5);
            t.image = iu;
        }
    }
}

#[test]
fn tiled_lbfgs_equals_untiled() {
    // The host L-BFGS of a tiled stage (reference::Lbfgs on f32) against the GPU L-BFGS of the
    // untiled graph, on the same pipeline: projected (the default) with a reflected margin, and
    // unconstrained with zero padding. History 2: by step 4 the ring has wrapped.
    for (edge, bounds) in [(Edge::Reflect(5), Some((0.0, 1.0))), (Edge::Zero, None)] {
        let s = settings(Pool::Avg);
        let (h, w) = (53, 70);
        let mut rng = Rng::new(24);
        let convs = random_convs(&mut rng, s.convs_needed());
        let mut net = Net::new(ctx(), &convs).unwrap();
        net.edge = edge;
        let content = rng.vec(3 * h * w, 0.0, 1.0);
        let (sh, sw) = (41, 45);
        let style = rng.vec(3 * sh * sw, 0.0, 1.0);
        let init = rng.vec(3 * h * w, 0.0, 1.0);
        let cfg = LbfgsConfig { history: 2, lr: 1.0, bounds };

        let tc = compute_targets(ctx(), &net, &s, &content, h, w, true, false).unwrap();
        let ts = compute_targets(ctx(), &net, &s, &style, sh, sw, false, true).unwrap();
        let targets = Targets { content: tc.content, style: ts.style };
        let mut g = Graph::new(ctx(), &net, &s, &targets, &init, h, w, AdamConfig::default()).unwrap();
        g.set_lbfgs(ctx(), cfg).unwrap();
        let st = stylize::tiled::style_targets(ctx(), &net, &s, &style, sh, sw, 24).unwrap();
        let mut t = TiledGraph::new(ctx(), &net, &s, (&content, h, w), st, &init, 32).unwrap();
        let mut opt = TiledOptimizer::lbfgs(cfg);
        let mut first = 0.0;
        for step in 1..=4 {
            let what = format!("{edge:?} bounds {bounds:?} step {step}");
            g.evaluate(ctx()).unwrap();
            t.evaluate(ctx(), &net).unwrap();
            let (lu, lt) = (g.read_losses(ctx()).unwrap(), t.read_losses(ctx()).unwrap());
            assert_close(&format!("{what}: total loss tiled vs untiled"), &[lt.total()], &[lu.total() as f64], 2e-5);
            let gu = g.grad.read(ctx()).unwrap();
            // 1e-4, not the Adam test's 5e-5: the error is relative to the gradient's largest
            // value, which shrinks as L-BFGS converges while the terms' rounding does not.
            assert_close(&format!("{what}: image gradient tiled vs untiled"), &t.grad, &f64s(&gu), 1e-4);
            if step == 1 {
                first = lu.total();
            }
            // The step each takes from the same image with the untiled gradient (as the Adam
            // test above): the host L-BFGS must take the GPU's step. Compared as steps, not
            // images, so the tolerance is relative to what L-BFGS moved.
            let x0 = g.read_image(ctx()).unwrap();
            t.image.clone_from(&x0);
            t.grad = gu;
            g.step(ctx(), 1).unwrap();
            opt.step(&mut t.image, &t.grad);
            let iu = g.read_image(ctx()).unwrap();
            let du: Vec<f64> = iu.iter().zip(&x0).map(|(a, b)| (a - b) as f64).collect();
            let dt: Vec<f32> = t.image.iter().zip(&x0).map(|(a, b)| a - b).collect();
            // Measured <= 7e-7 on lavapipe (f32 rounding of the dot products over ~11k values):
            // 1e-5. Plus the rounding of x0 + t d itself, which these steps (differences of f32
            // images) carry: once where the adapter fuses the multiply-add (the H200 did: 3.4e-5
            // of a small first step), twice on the host, so up to 2 ulps of max|x|.
            let xmax = x0.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let dmax = du.iter().fold(0f64, |m, v| m.max(v.abs()));
            let tol = 1e-5 + 2.0 * f32::EPSILON as f64 * xmax / dmax;
            assert_close(&format!("{what}: L-BFGS step tiled vs untiled"), &dt, &du, tol);
            if bounds.is_some() {
                assert!(t.image.iter().all(|v| (0.0..=1.0).contains(v)), "{what}: projected iterate left [0,1]");
            }
        }
        g.evaluate(ctx()).unwrap();
        let last = g.read_losses(ctx()).unwrap().total();
        println!("{edge:?} bounds {bounds:?}: loss {first:.4e} -> {last:.4e} in 4 L-BFGS steps");
        assert!(last < 0.9 * first, "L-BFGS did not lower the loss");
    }
}

#[test]
fn auto_tiling_decision_and_memory_estimate() {
    use stylize::tiled::{choose_tile, graph_bytes};
    let s = settings(Pool::Avg);
    let (h, w) = (53, 70);
    let (est, largest) = graph_bytes(&s, h, w);
    assert_eq!(largest, 64 * 53 * 70 * 4);
    // The estimate tracks what a real graph allocates.
    let mut rng = Rng::new(23);
    let convs: Vec<ConvLayer> = s.model.convs()[..s.convs_needed()]
        .iter()
        .enumerate()
        .map(|(i, &(_, cin, cout))| ConvLayer::new(s.model, i, rng.vec(cout * cin * 9, -0.1, 0.1), vec![0.0; cout]))
        .collect();
    let net = Net::new(ctx(), &convs).unwrap();
    let px = rng.vec(3 * h * w, 0.0, 1.0);
    let tc = compute_targets(ctx(), &net, &s, &px, h, w, true, true).unwrap();
    let g = Graph::new(ctx(), &net, &s, &tc, &px, h, w, AdamConfig::default()).unwrap();
    let real = g.gpu_bytes();
    println!("graph bytes at {w}x{h}: estimated {est}, allocated {real}");
    // The estimate also counts the EMA and line-search images and the style targets, which
    // this graph does not hold, and the Gram partials, which only storage-buffer Grams (GPUs)
    // hold: a little over, never under.
    let partials = stylize::tiled::gram_partials_bytes(&s, h, w);
    assert!(partials > 0);
    assert!(est >= real && (est as f64) < 1.15 * real as f64 + partials as f64, "estimate {est} vs {real}");
    // With the kernels a GPU runs (storage-buffer GEMM conv, split-K Gram: partials in buffers),
    // on this adapter too, the bound holds without that allowance.
    let mut gpu_like =
        Context::new(&AdapterChoice::parse(&std::env::var("STYLIZE_ADAPTER").unwrap_or_default())).unwrap();
    // Both storage-buffer Grams: `Tiled`, and `Gemm` with its backward's S scratch.
    for gram in [Variant::GEMM, Variant::Tiled] {
        gpu_like.set_overrides(KernelOverrides {
            conv: Some(Variant::Gemm(GemmTile::DEFAULT)),
            gram: Some(gram),
            ..Default::default()
        });
        let net = Net::new(&gpu_like, &convs).unwrap();
        let tc = compute_targets(&gpu_like, &net, &s, &px, h, w, true, true).unwrap();
        let real = Graph::new(&gpu_like, &net, &s, &tc, &px, h, w, AdamConfig::default()).unwrap().gpu_bytes();
        println!("with GPU kernels, Gram {gram:?}: estimated {est}, allocated {real} (Gram partials {partials})");
        assert!(est >= real && (est as f64) < 1.15 * real as f64, "estimate {est} vs {real} with GPU kernels");
    }
    let net = Net::new(&gpu_like, &convs).unwrap();
    // The mean-covariance loss holds its targets' roots and its Newton-Schulz workspace too.
    let mc = LossSettings { style_loss: StyleLoss::MeanCov, ..s.clone() };
    let (est_mc, _) = graph_bytes(&mc, h, w);
    let tc = compute_targets(&gpu_like, &net, &mc, &px, h, w, true, true).unwrap();
    let real = Graph::new(&gpu_like, &net, &mc, &tc, &px, h, w, AdamConfig::default()).unwrap().gpu_bytes();
    println!("mean-cov with GPU kernels: estimated {est_mc}, allocated {real}");
    assert!(est_mc >= real && (est_mc as f64) < 1.15 * real as f64, "estimate {est_mc} vs {real}");
    assert_eq!(choose_tile(&s, h, w, u64::MAX, u64::MAX).unwrap(), None);
    // Under a budget between the smallest tile's graph and the whole image's: the largest tile
    // that fits. (At 70x53 the per-tap Gram buffers, which no tile shrinks, are most of it.)
    let smallest = graph_bytes(&s, 4 + 32, 4 + 32).0;
    assert!(smallest < est);
    let budget = (smallest + est) / 2;
    let t = choose_tile(&s, h, w, budget, u64::MAX).unwrap().expect("tiles when over budget");
    assert!(t.is_multiple_of(4) && t < 70);
    let side = |full: usize| (t + 32).min(full);
    assert!(graph_bytes(&s, side(h), side(w)).0 <= budget);
    let larger = |full: usize| (t + 4 + 32).min(full);
    assert!(graph_bytes(&s, larger(h), larger(w)).0 > budget, "the next larger tile fits too");
    assert!(choose_tile(&s, h, w, 1000, u64::MAX).is_err());
}

/// Renders 60 px (3 steps, random weights) with `o` untiled and tiled (`--tile auto` under a
/// budget below the untiled graph's estimate) and checks that both write the same image (to
/// 8-bit rounding) with the same final loss.
fn tiled_render_equals_untiled(name: &str, o: impl Fn(RenderOptions) -> RenderOptions) {
    let d = tmpdir(name);
    let (c, s) = (d.join("c.png"), d.join("s.png"));
    image_io::save_image(&c, &image_io::synthetic_photo(60, 44, 3), &[]).unwrap();
    image_io::save_image(&s, &image_io::synthetic_painting(50, 50, 4), &[]).unwrap();
    let base = o(RenderOptions {
        content: c,
        styles: vec![s],
        size: 60,
        steps: 3,
        weights: WeightsSource::Random(5),
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        quiet: true,
        ..Default::default()
    });
    let plain = RenderOptions { output: d.join("plain.png"), tile: TileMode::Off, ..base.clone() };
    // A budget below the untiled graph's estimate makes --tile auto tile.
    let tiled = RenderOptions { output: d.join("tiled.png"), max_gpu_memory: Some(1), ..base.clone() };
    let rp = render(&plain).unwrap();
    let rt = render(&tiled).unwrap();
    println!("{name}: untiled {:?}\ntiled   {:?} ({} tiles)", rp.last, rt.last, rt.stages[0].tiles);
    assert_eq!(rp.stages[0].tiles, 1);
    assert!(rt.stages[0].tiles >= 2, "the budget should force tiling");
    let a = image_io::load_image(&d.join("plain.png"), &Default::default()).unwrap();
    let b = image_io::load_image(&d.join("tiled.png"), &Default::default()).unwrap();
    assert_eq!((a.width, a.height), (b.width, b.height));
    // 8-bit outputs: equal up to a rounding step where an f32 difference straddles one.
    let worst = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let content = image_io::load_image(&plain.content, &Default::default()).unwrap();
    let moved = a.data.iter().zip(&content.data).filter(|(x, y)| (*x - *y).abs() > 2.0 / 255.0).count();
    println!("{name}: worst pixel difference {worst}, {moved} of {} values moved from the content", a.data.len());
    assert!(worst <= 1.0 / 255.0 + 1e-6, "{name}: tiled vs untiled output differ by {worst}");
    let rel = (rt.last.total() - rp.last.total()).abs() / rp.last.total();
    assert!(rel < 1e-4, "{name}: final loss tiled {} vs untiled {}", rt.last.total(), rp.last.total());
    assert!(rp.last.total() < rp.first.total(), "{name}: the render did not lower the loss");
}

#[test]
fn tiled_render_equals_untiled_render_end_to_end() {
    tiled_render_equals_untiled("adam", |o| o);
}

#[test]
fn tiled_lbfgs_render_equals_untiled_render() {
    // L-BFGS, projected (the default) and not (its iterates leave [0,1], the output is clamped).
    tiled_render_equals_untiled("lbfgs", |o| RenderOptions { optimizer: Optimizer::Lbfgs, lbfgs_history: 2, ..o });
    let unclamped = |o| RenderOptions { optimizer: Optimizer::Lbfgs, lbfgs_clamp: false, ..o };
    tiled_render_equals_untiled("lbfgs-unclamped", unclamped);
}

#[test]
fn tiled_average_render_equals_untiled_render() {
    // --avg-decay: the written image is the bias-corrected average of the iterates.
    tiled_render_equals_untiled("avg", |o| RenderOptions { avg_decay: 0.5, ..o });
}
