//! What the variant-by-variant kernel studies (benches/conv.rs, benches/gram.rs) share: their
//! command line, seeded inputs, the timer and the per-dispatch split.

use std::time::Instant;
use stylize::gpu::{AdapterChoice, Context, KernelOverrides, Op, Variant};

/// The GPU context of a study: `$STYLIZE_ADAPTER` picks the adapter, and `$STYLIZE_CONV`,
/// `$STYLIZE_GRAM`, `$STYLIZE_WINO_TUNE`, `$STYLIZE_WINO4_TUNE` set its kernel overrides as for
/// the CLI (an invalid value is reported and ignored).
pub fn context() -> Context {
    let adapter = std::env::var("STYLIZE_ADAPTER").unwrap_or_default();
    let mut ctx = Context::new(&AdapterChoice::parse(&adapter)).unwrap_or_else(|e| panic!("no GPU adapter: {e}"));
    let mut o = KernelOverrides::default();
    for (var, key) in [("CONV", "conv"), ("GRAM", "gram"), ("WINO_TUNE", "wino_tune"), ("WINO4_TUNE", "wino4_tune")] {
        if let Ok(v) = std::env::var(format!("STYLIZE_{var}")) {
            if let Err(e) = o.set(key, &v) {
                eprintln!("warning: STYLIZE_{var}={e}; ignored");
            }
        }
    }
    ctx.set_overrides(o);
    ctx
}

pub struct Args {
    pub variants: Vec<Variant>,
    pub sizes: Vec<usize>,
    pub runs: usize,
    pub budget_s: f64,
    pub filter: Option<String>,
    /// Also time each dispatch of a multi-dispatch op alone.
    pub split: bool,
}

/// `[--variant LIST] [--size LIST] [--runs N] [--budget S] [--split] [FILTER]` over `defaults`.
pub fn args(defaults: Args) -> Args {
    let mut a = defaults;
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--variant" => {
                let v = it.next().unwrap_or_default();
                // `gemm:all`: every GEMM tile (`GemmTile::ALL`: looped, unrolled, double-buffered, narrow).
                a.variants = v
                    .split(',')
                    .flat_map(|s| match s {
                        "gemm:all" => stylize::gpu::conv::GemmTile::ALL.map(Variant::Gemm).to_vec(),
                        _ => vec![Variant::parse(s).unwrap_or_else(|| panic!("unknown variant {s}"))],
                    })
                    .collect();
            }
            "--size" => {
                a.sizes = it.next().unwrap_or_default().split(',').map(|s| s.parse().expect("--size N")).collect()
            }
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
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    stylize::rng::SplitMix64::new(seed).vec(n, -0.5, 0.5)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median wall clock (ms) of submit + wait of `op` over up to `runs` runs after 2 warm-ups
/// (fewer when `budget_s` is spent, at least 3), the fastest, and how many ran.
pub fn time_op(ctx: &Context, op: &Op, runs: usize, budget_s: f64) -> (f64, f64, usize) {
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

/// With `--split`, times each dispatch of a multi-dispatch `op` alone and prints it indented by
/// `indent` columns.
pub fn print_split(ctx: &Context, a: &Args, op: Op, indent: usize) {
    if !a.split || op.dispatches.len() < 2 {
        return;
    }
    for d in op.dispatches {
        let name = d.name;
        let one = Op { dispatches: vec![d], scratch: vec![], textures: vec![] };
        let (ms, min, n) = time_op(ctx, &one, a.runs, a.budget_s);
        println!("{:indent$} {:<5} {name:<22} {ms:>10.3} ms, min {min:.3} ({n} runs)", "", "");
    }
}
