//! Per-kernel GFLOP/s and GB/s against the adapter's measured peak, and end-to-end
//! milliseconds per iteration: `stylize::bench` with defaults small enough for a CPU driver.
//!
//!     cargo bench --bench kernels                       # kernels at 64 px, e2e at 64 px
//!     cargo bench --bench kernels -- --sizes 256,512 --e2e-sizes 128,256,512,max --json
//!
//! Flags (as `stylize bench`): --sizes LIST, --e2e-sizes LIST (`max`: largest that fits),
//! --memory-sizes LIST, --iterations N, --adapter NAME, --model vgg16|vgg19, --edge reflect|zero,
//! --json, --no-kernels, --no-e2e, --no-memory, --quiet, --wall-clock. The adapter is also read from $STYLIZE_ADAPTER. With no
//! arguments at all (as `cargo test --benches` runs it) it does a quick smoke run at 32 px.

use std::process::ExitCode;
use stylize::bench::{self, BenchOptions};
use stylize::model::{Edge, Model};

fn list(v: Option<String>, flag: &str) -> Result<Vec<u32>, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.split(',').map(|s| bench::parse_size(s).map_err(|e| format!("{flag}: {e}"))).collect()
}

fn options() -> Result<BenchOptions, String> {
    // Small defaults: every kernel at the layer shapes of a 64 px input, one end-to-end size.
    let mut o =
        BenchOptions { sizes: vec![64], e2e_sizes: vec![64], memory: false, iterations: 10, ..Default::default() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        // No `--bench`: run by `cargo test --benches` / `--all-targets`; a quick smoke run.
        return Ok(BenchOptions {
            sizes: vec![32],
            e2e_sizes: vec![32],
            iterations: 1,
            kernel_budget_s: 0.0,
            e2e_budget_s: 0.0,
            progress: false,
            ..o
        });
    }
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => o.sizes = list(args.next(), &a)?,
            "--e2e-sizes" => o.e2e_sizes = list(args.next(), &a)?,
            "--memory-sizes" => {
                o.memory_sizes = list(args.next(), &a)?;
                o.memory = true;
            }
            "--iterations" => {
                o.iterations = args.next().and_then(|v| v.parse().ok()).ok_or("--iterations needs a number")?;
            }
            "--adapter" => o.adapter = args.next().ok_or("--adapter needs a value")?,
            "--model" => {
                o.model = match args.next().as_deref() {
                    Some("vgg16") => Model::Vgg16,
                    Some("vgg19") => Model::Vgg19,
                    _ => return Err("--model needs vgg16 or vgg19".into()),
                }
            }
            "--edge" => {
                o.edge = match args.next().as_deref() {
                    Some("reflect") => Edge::Reflect(stylize::render::DEFAULT_EDGE_MARGIN),
                    Some("zero") => Edge::Zero,
                    _ => return Err("--edge needs reflect or zero".into()),
                }
            }
            "--json" => o.json = true,
            "--no-kernels" => o.kernels = false,
            "--no-e2e" => o.e2e = false,
            "--no-memory" => o.memory = false,
            "--quiet" => o.progress = false,
            "--wall-clock" => o.wall_clock = true,
            // `cargo bench` passes --bench; a leading `bench` lets scripts call this binary like
            // `stylize bench`.
            "--bench" | "bench" => {}
            other => return Err(format!("unknown argument {other:?} (see benches/kernels.rs)")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match bench::run(&o) {
        Ok(r) => {
            bench::print(&r, o.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
