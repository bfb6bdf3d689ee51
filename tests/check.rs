//! `stylize check`'s comparisons pass on the test adapter, and a broken kernel would show.

use stylize::gpu::conv::{GemmTile, Variant};
use stylize::gpu::KernelOverrides;

fn assert_all_pass(kernels: KernelOverrides) {
    let adapter = std::env::var("STYLIZE_ADAPTER").unwrap_or_default();
    let (name, rows) = stylize::check::run_checks(&adapter, kernels).expect("checks run");
    assert!(rows.len() >= 12, "{} rows", rows.len());
    // The whole iteration with both borders (zero padding, the renderer's reflected margin).
    for border in ["zero edge", "reflected 16 px"] {
        assert_eq!(rows.iter().filter(|r| r.what.contains(border)).count(), 2, "{border}");
    }
    for r in &rows {
        println!("{name} {kernels:?}: {:<52} {:.2e} (tol {:.0e})", r.what, r.err, r.tol);
        assert!(r.err.is_finite() && r.err <= r.tol, "{}: {:.3e} > {:.0e}", r.what, r.err, r.tol);
        // Exact comparisons (tol 0, e.g. mask bits) and pools (a selection or a sum of 4) may be 0.
        assert!(
            r.err > 0.0 || r.tol == 0.0 || r.what.contains("pool"),
            "{}: exactly zero error is suspicious for f32 vs f64",
            r.what
        );
    }
}

#[test]
fn every_check_passes_on_the_test_adapter() {
    assert_all_pass(KernelOverrides::default());
}

/// The kernels a GPU runs untuned (CI has none): whole iterations on the unrolled GEMM conv and
/// the GEMM Gram (every other tile is checked op by op in tests/kernels.rs).
#[test]
fn every_check_passes_with_the_gpu_kernels() {
    let conv = Some(Variant::Gemm(GemmTile::DEFAULT_UNROLLED));
    assert_all_pass(KernelOverrides { conv, gram: Some(Variant::GEMM), ..Default::default() });
}
