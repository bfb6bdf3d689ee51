//! conv3x3 forward (bias + fused ReLU) and backward-data (with the fused ReLU mask), each
//! variant (`gpu::conv::Variant`) at the VGG19 layer shapes of a 128 px and a 64 px input.
//!
//!     cargo bench --bench conv [-- [--variant tiled|tex] [--size 128] [--runs N] [--budget S] [--split] [FILTER]]
//!
//! (`cargo build --bench conv` then `target/debug/deps/conv-*` skips the release build; the
//! kernels run on the GPU either way.) FILTER keeps the rows whose name contains it (e.g.
//! `conv3`). Each row: one op built once (pipelines compiled, weights packed), 2 warm-up runs,
//! then up to N timed runs (fewer when the time budget per row is reached, at least 3); the
//! median of the wall clock around submit + wait is reported, as ms and GFLOP/s with
//! 2 cin cout 9 H W flops (the useful ones; padding channels are not counted). `--split` also
//! times each dispatch of a multi-dispatch op alone (the texture variant's input packing and its
//! conv kernel).

use std::time::Instant;
use stylize::gpu::{conv, AdapterChoice, Context, Op, Tensor};

struct Args {
    variants: Vec<conv::Variant>,
    sizes: Vec<usize>,
    runs: usize,
    budget_s: f64,
    filter: Option<String>,
    /// Also time each dispatch of a multi-dispatch op alone (e.g. the texture variant's input
    /// packing and its conv kernel).
    split: bool,
}

fn args() -> Args {
    let mut a = Args { variants: vec![conv::Variant::Tiled, conv::Variant::Tex, conv::Variant::Wino], sizes: vec![128, 64], runs: 9, budget_s: 4.0, filter: None, split: false };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--variant" => {
                let v = it.next().unwrap_or_default();
                a.variants = v.split(',').map(|s| conv::Variant::parse(s).unwrap_or_else(|| panic!("unknown variant {s}"))).collect();
            }
            "--size" => a.sizes = it.next().unwrap_or_default().split(',').map(|s| s.parse().expect("--size N")).collect(),
            "--runs" => a.runs = it.next().and_then(|s| s.parse().ok()).expect("--runs N"),
            "--budget" => a.budget_s = it.next().and_then(|s| s.parse().ok()).expect("--budget SECONDS"),
            "--split" => a.split = true,
            "--bench" => {}
            s if s.starts_with("--") => panic!("unknown option {s}"),
            s => a.filter = Some(s.to_string()),
        }
    }
    a
}

/// splitmix64 values in [-0.5, 0.5).
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median wall clock (ms) of submit + wait of `op` over up to `runs` runs after 2 warm-ups
/// (fewer when `budget_s` is spent, at least 3), the fastest, and how many ran.
fn time_op(ctx: &Context, op: &Op, runs: usize, budget_s: f64) -> (f64, f64, usize) {
    for _ in 0..2 {
        ctx.run(&[op]).expect("run");
    }
    let mut ts = vec![];
    let start = Instant::now();
    while ts.len() < runs.max(3) && (ts.len() < 3 || start.elapsed().as_secs_f64() < budget_s) {
        let t0 = Instant::now();
        ctx.run(&[op]).expect("run");
        ts.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let min = ts.iter().copied().fold(f64::INFINITY, f64::min);
    (median(&mut ts), min, ts.len())
}

fn main() {
    let a = args();
    let ctx = Context::new(&AdapterChoice::from_env()).unwrap_or_else(|e| panic!("no GPU adapter: {e}"));
    println!("adapter: {}", ctx.describe());
    println!("{:<26} {:<5} {:<6} {:>10} {:>9} {:>10} {:>5}", "layer (cin->cout @ HxW)", "dir", "var", "median ms", "GFLOP/s", "min ms", "runs");
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
            let t = |shape: [usize; 3], k: u64| Tensor::from_slice(&ctx, shape, &rand_vec(shape.iter().product(), seed * 8 + k), name).expect("alloc");
            let x = t([cin, s, s], 0);
            let w = t([cout, cin, 9], 1);
            let b = t([cout, 1, 1], 2);
            let y = t([cout, s, s], 3);
            let wt = Tensor::from_slice(&ctx, [cin, cout, 9], &conv::transpose_flip(&rand_vec(cout * cin * 9, seed * 8 + 1), cout, cin), name).expect("alloc");
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
                    println!("{label:<26} {dir:<5} {:<6} {ms:>10.3} {:>9.2} {min:>10.3} {:>5}", format!("{ran:?}").to_lowercase(), flops / (ms * 1e-3) / 1e9, n);
                    if a.split && op.dispatches.len() > 1 {
                        let Op { dispatches, .. } = op;
                        for d in dispatches {
                            let name = d.name;
                            let one = Op { dispatches: vec![d], scratch: vec![], textures: vec![] };
                            let (ms, min, n) = time_op(&ctx, &one, a.runs, a.budget_s);
                            println!("{:<26} {:<5} {name:<22} {ms:>10.3} ms, min {min:.3} ({n} runs)", "", "");
                        }
                    }
                }
            }
        }
    }
}
