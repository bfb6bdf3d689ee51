//! `stylize::bench` end to end at a tiny size: every kernel row, the peaks, an end-to-end
//! iteration and the memory figure come out finite and positive, and the JSON names them all.

use stylize::bench::{self, BenchOptions, Unit};
use stylize::gpu::{AdapterChoice, Context};
use stylize::model::{Edge, Model};

#[test]
fn bench_runs_at_a_tiny_size() {
    let ctx = Context::new(&AdapterChoice::parse(&std::env::var("STYLIZE_ADAPTER").unwrap_or_default()))
        .expect("a GPU adapter (lavapipe in CI)");
    let o = BenchOptions {
        sizes: vec![32],
        e2e_sizes: vec![32],
        memory_sizes: vec![32],
        iterations: 1,
        kernel_budget_s: 0.0,
        e2e_budget_s: 0.0,
        progress: false,
        ..Default::default()
    };
    let r = bench::run_on(&ctx, &o).unwrap();
    assert!(r.peak.gflops > 0.0 && r.peak.gflops.is_finite(), "{:?}", r.peak);
    assert!(r.peak.gbps > 0.0 && r.peak.gbps.is_finite(), "{:?}", r.peak);
    // 9 distinct conv shapes x 2, 5 blocks x (relu 2 + mask pack 1 + gram 2), 4 pools x 4,
    // mse 2 x 3, tv 2, preprocess 2, adam 1.
    assert_eq!(r.kernels.len(), 18 + 25 + 16 + 6 + 5, "{:#?}", r.kernels.iter().map(|k| &k.kernel).collect::<Vec<_>>());
    for k in &r.kernels {
        assert!(k.median_ms > 0.0 && k.median_ms.is_finite(), "{k:?}");
        assert!(k.rate > 0.0 && k.rate.is_finite() && k.peak_pct > 0.0, "{k:?}");
        assert_eq!(k.runs, 1);
    }
    let conv = r.kernels.iter().find(|k| k.kernel == "conv3x3_forward" && k.layer == "conv1_2").unwrap();
    assert_eq!(conv.unit, Unit::Flop);
    assert_eq!(conv.work, 2.0 * (64 * 64 * 9 * 32 * 32) as f64);
    assert_eq!(r.e2e.len(), 1);
    let e = &r.e2e[0];
    assert!(e.ms_per_iter > 0.0 && e.ms_per_iter.is_finite() && e.iterations >= 1);
    // At least the image, its gradient and the two activation/gradient buffers.
    assert!(e.memory.graph_bytes >= (2 * 3 + 2 * 64) * 32 * 32 * 4, "{:?}", e.memory);
    assert!(e.memory.net_bytes > 0 && e.memory.target_bytes > 0);
    assert_eq!(r.memory.len(), 1);
    assert_eq!(r.memory[0].memory.as_ref().unwrap().total(), e.memory.total());
    let j = bench::to_json(&r);
    assert!(j.contains("\"gram_backward\"") && j.contains("\"ms_per_iter\"") && j.contains("\"total_bytes\""));
    assert!(!bench::table(&r).is_empty());
}

#[test]
fn bench_end_to_end_follows_the_model_and_the_border() {
    let ctx = Context::new(&AdapterChoice::parse(&std::env::var("STYLIZE_ADAPTER").unwrap_or_default()))
        .expect("a GPU adapter (lavapipe in CI)");
    let run = |edge| {
        let o = BenchOptions {
            kernels: false,
            e2e_sizes: vec![32],
            memory_sizes: vec![32],
            iterations: 1,
            e2e_budget_s: 0.0,
            progress: false,
            model: Model::Vgg16,
            edge,
            ..Default::default()
        };
        bench::run_on(&ctx, &o).unwrap()
    };
    let (zero, reflect) = (run(Edge::Zero), run(Edge::Reflect(16)));
    assert_eq!((zero.model.as_str(), zero.edge.as_str()), ("vgg16", "zero"));
    assert_eq!(reflect.edge, "reflect 16 px");
    assert!(bench::table(&reflect).contains("vgg16, default layers, avg pool, edge reflect 16 px"));
    assert!(bench::to_json(&zero).contains("\"model\": \"vgg16\""));
    let bytes = |r: &bench::BenchReport| r.e2e[0].memory.graph_bytes;
    // The reflected margin makes the network run on 64x64 instead of 32x32: the first layers'
    // activations (64 channels) alone grow by (64^2 - 32^2) * 64 * 4 bytes each.
    assert!(bytes(&reflect) > bytes(&zero) + (64 * 64 - 32 * 32) * 64 * 4, "{} vs {}", bytes(&reflect), bytes(&zero));
    // VGG16's network is smaller than VGG19's (13 convs, fewer at 512 channels).
    let e19 = bench::run_on(
        &ctx,
        &BenchOptions {
            kernels: false,
            memory: false,
            e2e_sizes: vec![32],
            iterations: 1,
            e2e_budget_s: 0.0,
            progress: false,
            edge: Edge::Zero,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(e19.model, "vgg19");
    assert!(zero.e2e[0].memory.net_bytes < e19.e2e[0].memory.net_bytes);
}
