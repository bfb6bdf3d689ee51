//! Shared test helpers: one GPU context per test binary, a seeded RNG, error metrics.
#![allow(dead_code)]

use std::sync::OnceLock;
use stylize::gpu::{AdapterChoice, Context, Op, Tensor};

/// One context (and so one pipeline cache) per test binary: pipelines compile slowly on lavapipe.
/// No adapter is a FAILURE, never a skip: CI always has lavapipe, so a skip would hide a broken
/// setup.
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        match Context::new(&AdapterChoice::parse(&std::env::var("STYLIZE_ADAPTER").unwrap_or_default())) {
            Ok(c) => {
                eprintln!("test adapter: {}", c.describe());
                c
            }
            Err(e) => panic!("no usable GPU adapter for the tests: {e}"),
        }
    })
}

/// The crate's splitmix64: tiny, seeded, identical everywhere.
pub use stylize::rng::SplitMix64 as Rng;

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Normwise relative error max|a - r| / max|r|: the f32-vs-f64 accuracy measure used
/// throughout (elementwise relative error is meaningless where r crosses zero). Any non-finite
/// GPU value (e.g. a NaN poison left unwritten) makes it infinite.
pub fn rel_err(gpu: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(gpu.len(), reference.len(), "length mismatch");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let mut worst = 0.0f64;
    for (g, r) in gpu.iter().zip(reference) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        worst = worst.max((*g as f64 - r).abs());
    }
    worst / scale
}

pub fn assert_close(what: &str, gpu: &[f32], reference: &[f64], tol: f64) {
    let e = rel_err(gpu, reference);
    println!("{what:<60} max rel err {e:.2e} (tol {tol:.0e})");
    assert!(e <= tol, "{what}: relative error {e:.3e} exceeds {tol:.1e}");
}

pub fn upload(shape: [usize; 3], data: &[f32]) -> Tensor {
    Tensor::from_slice(ctx(), shape, data, "test input").expect("upload")
}

/// An output tensor filled with NaN, so any element the kernel fails to write fails the test.
pub fn poisoned(shape: [usize; 3]) -> Tensor {
    let t = Tensor::new(ctx(), shape, "test output").expect("alloc");
    t.fill(ctx(), f32::NAN);
    t
}

pub fn run(op: &Op) {
    ctx().run(&[op]).expect("gpu run");
}

pub fn read(t: &Tensor) -> Vec<f32> {
    t.read(ctx()).expect("readback")
}

/// Central finite difference of a scalar f at x along coordinate i, in f64.
pub fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64], i: usize, h: f64) -> f64 {
    let mut xp = x.to_vec();
    xp[i] += h;
    let fp = f(&xp);
    xp[i] -= 2.0 * h;
    let fm = f(&xp);
    (fp - fm) / (2.0 * h)
}

/// He-uniform random weights with the VGG19 shapes of the first `n` conv layers (biases in
/// +-0.05): healthy activations through the whole network.
pub fn random_convs(rng: &mut Rng, n: usize) -> Vec<stylize::model::ConvLayer> {
    random_convs_of(stylize::model::Model::Vgg19, rng, n)
}

/// As [`random_convs`] with `model`'s shapes.
pub fn random_convs_of(model: stylize::model::Model, rng: &mut Rng, n: usize) -> Vec<stylize::model::ConvLayer> {
    model.convs()[..n]
        .iter()
        .enumerate()
        .map(|(i, &(_, cin, cout))| {
            let a = (6.0 / (cin * 9) as f32).sqrt();
            stylize::model::ConvLayer::new(model, i, rng.vec(cout * cin * 9, -a, a), rng.vec(cout, -0.05, 0.05))
        })
        .collect()
}

/// The binary's small, fast render settings (24 px, 3 steps, random weights, shallow layers),
/// quiet; [`fast_with_progress`] keeps the progress output.
pub const FAST: &[&str] = &[
    "--size",
    "24",
    "--steps",
    "3",
    "--weights",
    "random:1",
    "--content-layers",
    "relu2_1",
    "--style-layers",
    "relu1_1,relu2_1",
    "--quiet",
];

/// [`FAST`] without `--quiet`.
pub fn fast_with_progress() -> &'static [&'static str] {
    &FAST[..FAST.len() - 1]
}

/// Runs the `stylize` binary with `args`.
pub fn stylize(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stylize")).args(args).output().expect("run stylize")
}

/// Asserts the binary refuses `args` with `needle` (any case) in its one-line error, no panic.
pub fn fails_with(args: &[&str], needle: &str) {
    let out = stylize(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "for {args:?}: expected {needle:?} in: {err}");
    println!("{args:?}\n  -> {}", err.trim());
}

/// A fresh scratch folder for test `name` of this test binary (its crate name and the process
/// id in the path, so binaries and runs never share one), removed when dropped unless the test
/// is failing (then it stays for a look: its path is in the test's output).
pub fn tmpdir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("stylize-{}-{name}-{}", env!("CARGO_CRATE_NAME"), std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// See [`tmpdir`]; derefs to its path.
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} (the test failed)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A 40x30 content photo and a 36x36 style painting written into `dir`.
pub fn images(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use stylize::image_io;
    let (c, s) = (dir.join("content.png"), dir.join("style.png"));
    image_io::save_image(&c, &image_io::synthetic_photo(40, 30, 1), &[]).unwrap();
    image_io::save_image(&s, &image_io::synthetic_painting(36, 36, 2), &[]).unwrap();
    (c, s)
}
