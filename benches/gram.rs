//! Gram forward (G = scale F F^T) and backward (dF = scale (dG + dG^T) F), each variant
//! (`gpu::gram::Variant`) at the VGG19 style-tap shapes of a 128 px and a 256 px input.
//!
//!     cargo bench --bench gram [-- [--variant tiled,gemm,tex] [--size 128,256] [--runs N] [--budget S] [--split] [FILTER]]
//!
//! (`cargo build --bench gram` then `target/debug/deps/gram-*` skips the release build; the
//! kernels run on the GPU either way.) FILTER keeps the rows whose name contains it (e.g.
//! `relu3`). Each row: one op built once, 2 warm-up runs, then up to N timed runs (fewer when
//! the time budget per row is spent, at least 3); the median wall clock around submit + wait is
//! reported, as ms and GFLOP/s with 2 c c n flops (n = h w; the Gram's useful flops, although
//! the texture and GEMM forwards compute only the blocks on and above the diagonal). `--split` also times
//! each dispatch of a multi-dispatch op alone (packing, kernel, finish).

mod common;
use common::{args, print_split, rand_vec, time_op, Args};
use stylize::gpu::{conv, gram, Tensor};

fn main() {
    let a = args(Args {
        variants: vec![gram::Variant::Tiled, gram::Variant::GEMM, gram::Variant::Tex],
        sizes: vec![128, 256],
        runs: 7,
        budget_s: 3.0,
        filter: None,
        split: false,
    });
    let ctx = common::context();
    println!("adapter: {}", ctx.describe());
    println!(
        "{:<28} {:<5} {:<21} {:>10} {:>9} {:>10} {:>5}",
        "tap (c x h*w)", "dir", "var", "median ms", "GFLOP/s", "min ms", "runs"
    );
    for &size in &a.sizes {
        let taps = [
            ("relu1_1", 64, size),
            ("relu2_1", 128, size / 2),
            ("relu3_1", 256, size / 4),
            ("relu4_1", 512, size / 8),
            ("relu5_1", 512, size / 16),
        ];
        for (ti, &(name, c, s)) in taps.iter().enumerate() {
            let label = format!("{name} {c} x {s}*{s} @{size}");
            if a.filter.as_ref().is_some_and(|f| !label.contains(f.as_str())) {
                continue;
            }
            let n = s * s;
            let seed = (size * 16 + ti) as u64;
            let t = |shape: [usize; 3], k: u64| {
                Tensor::from_slice(&ctx, shape, &rand_vec(shape.iter().product(), seed * 8 + k), name).expect("alloc")
            };
            let f = t([c, s, s], 0);
            let g = t([c, c, 1], 1);
            let dg = t([c, c, 1], 2);
            let df = t([c, s, s], 3);
            let scale = 1.0 / (c * n) as f32;
            let flops = 2.0 * (c * c * n) as f64;
            for dir in ["fwd", "bwd"] {
                for &v in &a.variants {
                    let op = match dir {
                        "fwd" => gram::gram_forward_scaled_with(&ctx, v, &f, &g, scale, false),
                        _ => gram::gram_backward_scaled_with(&ctx, v, &f, &dg, &df, scale, false),
                    };
                    let (ms, min, runs) = time_op(&ctx, &op, a.runs, a.budget_s);
                    // What really ran (a forced `tex` falls back to `tiled` where it cannot).
                    let ran = gram::choose_variant(&conv::TexCaps::of(&ctx), Some(v), c, n);
                    println!(
                        "{label:<28} {dir:<5} {:<21} {ms:>10.3} {:>9.2} {min:>10.3} {runs:>5}",
                        ran.name(),
                        flops / (ms * 1e-3) / 1e9
                    );
                    print_split(&ctx, &a, op, 28);
                }
            }
        }
    }
}
