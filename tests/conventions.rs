//! Input conventions (issue: real Caffe weights): the same image through torchvision's
//! convention (RGB, [0,1], mean/std) and Caffe's (BGR, [0,255], mean subtraction), with conv1_1's
//! weights converted between them, gives the same relu1_1 features; and the real Caffe VGG19
//! layers in ../shared/data (when present) render with a falling style loss.

mod common;
use common::*;
use stylize::gpu::adam::AdamConfig;
use stylize::model::Pool;
use stylize::model::{ConvLayer, LossSettings, Model, Preprocess, Tap};
use stylize::runner::{compute_targets, Graph, Net, Targets};

fn settings(pre: Preprocess, content: &str, style: &[&str]) -> LossSettings {
    LossSettings {
        model: Model::Vgg19,
        content_layers: vec![Tap::parse(Model::Vgg19, content).unwrap()],
        style_layers: style.iter().map(|n| Tap::parse(Model::Vgg19, n).unwrap()).collect(),
        style_layer_weights: vec![1.0; style.len()],
        content_weight: 5.0,
        style_weight: 20.0,
        style_loss: Default::default(),
        tv_weight: 1e5,
        pool: Pool::Avg,
        preprocess: pre,
    }
}

#[test]
fn converted_weights_give_the_same_relu1_1_in_both_conventions() {
    let (h, w) = (11, 14);
    let mut rng = Rng::new(31);
    let img = rng.vec(3 * h * w, 0.0, 1.0);
    // Caffe-convention conv1_1 (input c[k] = 255 rgb[2-k] - mean_bgr[k]).
    let wc = rng.vec(64 * 3 * 9, -0.05, 0.05);
    let bc = rng.vec(64, -1.0, 1.0);
    // Torch input t[j] = (rgb[j] - mean[j]) / std[j], so c[k] = a_k t[2-k] + b_k with
    // a_k = 255 std[2-k], b_k = 255 mean[2-k] - mean_bgr[k]: swap the input channels, scale by a,
    // and fold b into the bias.
    let (mean, std, mean_bgr) = ([0.485f64, 0.456, 0.406], [0.229f64, 0.224, 0.225], [103.939f64, 116.779, 123.68]);
    let mut wt = vec![0.0f32; wc.len()];
    let mut bt: Vec<f64> = bc.iter().map(|&v| v as f64).collect();
    for o in 0..64 {
        for k in 0..3 {
            let a = 255.0 * std[2 - k];
            let b = 255.0 * mean[2 - k] - mean_bgr[k];
            for t in 0..9 {
                let v = wc[(o * 3 + k) * 9 + t] as f64;
                wt[(o * 3 + (2 - k)) * 9 + t] = (v * a) as f32;
                bt[o] += v * b;
            }
        }
    }
    let run = |pre: Preprocess, weight: Vec<f32>, bias: Vec<f32>| {
        let s = settings(pre, "relu1_1", &["relu1_1"]);
        let net = Net::new(ctx(), &[ConvLayer::new(Model::Vgg19, 0, weight, bias)]).unwrap();
        let t = compute_targets(ctx(), &net, &s, &img, h, w, true, false).unwrap();
        read(&t.content[0])
    };
    let caffe = run(Preprocess::Caffe, wc.clone(), bc.clone());
    let torch = run(Preprocess::Torch, wt, bt.iter().map(|&v| v as f32).collect());
    // The folded offset b is absent from the zero padding, so only positions whose 3x3 window
    // lies inside the image agree exactly: compare the interior.
    let (mut worst, mut scale) = (0.0f64, 0.0f64);
    for o in 0..64 {
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let i = (o * h + y) * w + x;
                worst = worst.max((caffe[i] - torch[i]).abs() as f64);
                scale = scale.max(caffe[i].abs() as f64);
            }
        }
    }
    println!("relu1_1 caffe vs converted torch weights: rel err {:.2e}", worst / scale);
    assert!(scale > 1.0 && worst / scale < 1e-5, "{worst} / {scale}");
}

#[test]
fn real_caffe_layers_render_with_falling_style_loss() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/vgg19-caffe-conv1_1-to-conv3_4.npz");
    if !path.exists() {
        println!("SKIPPED: {} is absent (optional real-weights test)", path.display());
        return;
    }
    let w = stylize::weights::load(&path, 6).expect("the shared Caffe weights load");
    assert_eq!(w.convention, Some(stylize::model::Preprocess::Caffe));
    let convs: Vec<ConvLayer> = w.layers;
    let s = settings(Preprocess::Caffe, "relu3_1", &["relu1_1", "relu2_1", "relu3_1"]);
    let (h, wd) = (32, 48);
    let photo = stylize::image_io::synthetic_photo(wd as u32, h as u32, 1);
    let painting = stylize::image_io::synthetic_painting(wd as u32, h as u32, 2);
    let net = Net::new(ctx(), &convs).unwrap();
    let tc = compute_targets(ctx(), &net, &s, &photo.data, h, wd, true, false).unwrap();
    let ts = compute_targets(ctx(), &net, &s, &painting.data, h, wd, false, true).unwrap();
    let cfg = AdamConfig { lr: 0.02, clamp: Some((0.0, 1.0)), ..Default::default() };
    let g = Graph::new(ctx(), &net, &s, &Targets { content: tc.content, style: ts.style }, &photo.data, h, wd, cfg)
        .unwrap();
    g.evaluate(ctx()).unwrap();
    let first = g.read_losses(ctx()).unwrap();
    g.step(ctx(), 20).unwrap();
    g.evaluate(ctx()).unwrap();
    let last = g.read_losses(ctx()).unwrap();
    println!("real Caffe layers, 20 Adam steps: style {:.4e} -> {:.4e}", first.style_total(), last.style_total());
    assert!(last.style_total() < 0.5 * first.style_total());
}
