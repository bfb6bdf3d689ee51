//! conv3x3 forward (bias + fused ReLU) and backward-data (with the fused ReLU mask), each
//! variant (`gpu::conv::Variant`) at the VGG19 layer shapes of a 128 px and a 64 px input.
//!
//!     cargo bench --bench conv [-- [--variant tiled,gemm,gemm:all,gemm:r8x8w16x16k8,tex,wino,wino4] [--size 128] [--runs N] [--budget S] [--split] [FILTER]]
//!
//! (`cargo build --bench conv` then `target/debug/deps/conv-*` skips the release build; the
//! kernels run on the GPU either way.) FILTER keeps the rows whose name contains it (e.g.
//! `conv3`). Each row: one op built once (pipelines compiled, weights packed), 2 warm-up runs,
//! then up to N timed runs (fewer when the time budget per row is reached, at least 3); the
//! median of the wall clock around submit + wait is reported, as ms and GFLOP/s with
//! 2 cin cout 9 H W flops (the useful ones; padding channels are not counted). `--split` also
//! times each dispatch of a multi-dispatch op alone (the texture variant's input packing and its
//! conv kernel).

mod common;
use common::{args, print_split, rand_vec, time_op, Args};
use stylize::gpu::{conv, Tensor};

fn main() {
    let a = args(Args {
        variants: vec![
            conv::Variant::Tiled,
            conv::Variant::GEMM,
            conv::Variant::Tex,
            conv::Variant::Wino,
            conv::Variant::Wino4,
        ],
        sizes: vec![128, 64],
        runs: 9,
        budget_s: 4.0,
        filter: None,
        split: false,
    });
    let ctx = common::context();
    println!("adapter: {}", ctx.describe());
    println!(
        "{:<26} {:<5} {:<21} {:>10} {:>9} {:>10} {:>5}",
        "layer (cin->cout @ HxW)", "dir", "var", "median ms", "GFLOP/s", "min ms", "runs"
    );
    for &size in &a.sizes {
        let layers = [
            ("conv1_1", 3, 64, size),
            ("conv1_2", 64, 64, size),
            ("conv2_x", 128, 128, size / 2),
            ("conv3_x", 256, 256, size / 4),
            ("conv4_x", 512, 512, size / 8),
            ("conv5_x", 512, 512, size / 16),
        ];
        for (li, &(name, cin, cout, s)) in layers.iter().enumerate() {
            let label = format!("{name} {cin}->{cout} @{s}");
            if a.filter.as_ref().is_some_and(|f| !label.contains(f.as_str())) {
                continue;
            }
            let seed = (size * 16 + li) as u64;
            let t = |shape: [usize; 3], k: u64| {
                Tensor::from_slice(&ctx, shape, &rand_vec(shape.iter().product(), seed * 8 + k), name).expect("alloc")
            };
            let x = t([cin, s, s], 0);
            let w = t([cout, cin, 9], 1);
            let b = t([cout, 1, 1], 2);
            let y = t([cout, s, s], 3);
            let wt = Tensor::from_slice(
                &ctx,
                [cin, cout, 9],
                &conv::transpose_flip(&rand_vec(cout * cin * 9, seed * 8 + 1), cout, cin),
                name,
            )
            .expect("alloc");
            let dy = t([cout, s, s], 4);
            let mask = stylize::gpu::relu::Mask::new(&ctx, [cout, s, s], name).expect("alloc");
            ctx.run(&[&stylize::gpu::relu::relu_mask_pack(&ctx, &y, &mask)]).expect("mask");
            let dx = t([cin, s, s], 5);
            let flops = 2.0 * (cin * cout * 9 * s * s) as f64;
            for dir in ["fwd", "bwd"] {
                for &v in &a.variants {
                    let op = match dir {
                        "fwd" => conv::conv3x3_forward_with(&ctx, v, &x, &w, &b, &y, true),
                        _ => conv::conv3x3_backward_input_with(&ctx, v, &dy, Some(&mask), &wt, &dx),
                    };
                    let (ms, min, n) = time_op(&ctx, &op, a.runs, a.budget_s);
                    // What really ran (a forced `tex` falls back to `tiled` where it cannot).
                    let (ci, co) = if dir == "fwd" { (cin, cout) } else { (cout, cin) };
                    let ran = conv::choose_variant(&conv::TexCaps::of(&ctx), Some(v), ci, co, s, s);
                    println!(
                        "{label:<26} {dir:<5} {:<21} {ms:>10.3} {:>9.2} {min:>10.3} {:>5}",
                        ran.name(),
                        flops / (ms * 1e-3) / 1e9,
                        n
                    );
                    print_split(&ctx, &a, op, 26);
                }
            }
        }
    }
}
