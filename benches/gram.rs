//! Gram forward (G = scale F F^T) and backward (dF = scale (dG + dG^T) F), each variant
//! (`gpu::gram::Variant`) at the VGG19 style-tap shapes of a 128 px and a 256 px input.
//!
//!     cargo bench --bench gram [-- [--variant tiled|tex] [--size 128,256] [--runs N] [--budget S] [--split] [FILTER]]
//!
//! (`cargo build --bench gram` then `target/debug/deps/gram-*` skips the release build; the
//! kernels run on the GPU either way.) FILTER keeps the rows whose name contains it (e.g.
//! `relu3`). Each row: one op built once, 2 warm-up runs, then up to N timed runs (fewer when
//! the time budget per row is spent, at least 3); the median wall clock around submit + wait is
//! reported, as ms and GFLOP/s with 2 c c n flops (n = h w; the Gram's useful flops, although
//! the texture forward computes only the blocks on and above the diagonal). `--split` also times
//! each dispatch of a multi-dispatch op alone (packing, kernel, finish).

use std::time::Instant;
use stylize::gpu::{conv, gram, AdapterChoice, Context, Op, Tensor};

struct Args {
    variants: Vec<gram::Variant>,
    sizes: Vec<usize>,
    runs: usize,
    budget_s: f64,
    filter: Option<String>,
    split: bool,
}

fn args() -> Args {
    let mut a = Args { variants: vec![gram::Variant::Tiled, gram::Variant::Tex], sizes: vec![128, 256], runs: 7, budget_s: 3.0, filter: None, split: false };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--variant" => {
                let v = it.next().unwrap_or_default();
                a.variants = v.split(',').map(|s| gram::Variant::parse(s).unwrap_or_else(|| panic!("unknown variant {s}"))).collect();
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
    println!("{:<28} {:<5} {:<6} {:>10} {:>9} {:>10} {:>5}", "tap (c x h*w)", "dir", "var", "median ms", "GFLOP/s", "min ms", "runs");
    for &size in &a.sizes {
        let taps = [("relu1_1", 64, size), ("relu2_1", 128, size / 2), ("relu3_1", 256, size / 4), ("relu4_1", 512, size / 8), ("relu5_1", 512, size / 16)];
        for (ti, &(name, c, s)) in taps.iter().enumerate() {
            let label = format!("{name} {c} x {s}*{s} @{size}");
            if a.filter.as_ref().is_some_and(|f| !label.contains(f.as_str())) {
                continue;
            }
            let n = s * s;
            let seed = (size * 16 + ti) as u64;
            let t = |shape: [usize; 3], k: u64| Tensor::from_slice(&ctx, shape, &rand_vec(shape.iter().product(), seed * 8 + k), name).expect("alloc");
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
                    println!("{label:<28} {dir:<5} {:<6} {ms:>10.3} {:>9.2} {min:>10.3} {runs:>5}", format!("{ran:?}").to_lowercase(), flops / (ms * 1e-3) / 1e9);
                    if a.split && op.dispatches.len() > 1 {
                        let Op { dispatches, .. } = op;
                        for d in dispatches {
                            let name = d.name;
                            let one = Op { dispatches: vec![d], scratch: vec![], textures: vec![] };
                            let (ms, min, runs) = time_op(&ctx, &one, a.runs, a.budget_s);
                            println!("{:<28} {:<5} {name:<22} {ms:>10.3} ms, min {min:.3} ({runs} runs)", "", "");
                        }
                    }
                }
            }
        }
    }
}
