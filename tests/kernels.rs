//! Every WGSL kernel against its CPU reference (`stylize::reference`, f64) on seeded random
//! inputs, at odd shapes that are multiples of no tile, with outputs poisoned with NaN first.
//! Every backward is also checked against central finite differences of the reference forward.
//!
//! Error measure: normwise relative error max|gpu - ref| / max|ref| (see common::rel_err).
//! Tolerances, for f32 arithmetic (unit roundoff u = 6e-8) against an f64 oracle:
//! - single-operation kernels (ReLU, pools, preprocess): 1e-6 (a few roundings: <= 4u).
//! - dot-product kernels (conv over K = 9*cin <= 576 terms, Gram/Gram-backward over <= 1024
//!   terms): 2e-5. The worst-case bound is K*u = 3.5e-5 (576 terms) to 6e-5 (1024); the
//!   typical sqrt(K)*u is ~2e-6, and we observe ~1e-6. 2e-5 catches any wrong term (an error
//!   of one term is ~1/K ~ 1e-3 of the scale) while staying well under 1e-4. The Winograd
//!   F(4x4) conv rounds through transforms with constants up to 8 and 1/24: ~5e-6 observed.
//! - reductions to a scalar (MSE, TV, sum over <= 64k terms, tree-summed): 1e-5; also for
//!   add_l1_normalized, whose error is its L1 norm's plus one rounding.
//! - finite differences (f64, h = 1e-6 on piecewise-linear or quadratic functions): the
//!   truncation error is ~0 and the cancellation error ~1e-10 relative; the comparison with
//!   the f32 GPU gradient is limited by f32: 1e-4.

mod common;
use common::*;
use stylize::gpu::{adam, conv, gram, image, pool, reduce, relu, Tensor};
use stylize::model::Preprocess;
use stylize::reference as r;

const TOL_ELEMENTWISE: f64 = 1e-6;
const TOL_DOT: f64 = 2e-5;
const TOL_REDUCE: f64 = 1e-5;
const TOL_FD: f64 = 1e-4;

/// Checks `gpu_grad` (the GPU backward for upstream gradient `up`) against finite differences of
/// L(x) = sum(up * forward(x)) at `k` random coordinates.
fn check_fd(
    what: &str,
    forward: &dyn Fn(&[f64]) -> Vec<f64>,
    x: &[f64],
    up: &[f64],
    gpu_grad: &[f32],
    k: usize,
    rng: &mut Rng,
) {
    let loss = |xv: &[f64]| forward(xv).iter().zip(up).map(|(a, b)| a * b).sum::<f64>();
    let scale = gpu_grad.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    let mut worst = 0.0f64;
    for _ in 0..k {
        let i = rng.below(x.len());
        let g = fd(&loss, x, i, 1e-6);
        worst = worst.max((g - gpu_grad[i] as f64).abs() / scale);
    }
    println!("{what:<60} finite-difference rel err {worst:.2e} (tol {TOL_FD:.0e})");
    assert!(worst <= TOL_FD, "{what}: gradient vs finite differences {worst:.3e}");
}

#[test]
fn conv3x3_forward_matches_reference() {
    let mut rng = Rng::new(1);
    for &(cin, cout, h, w) in
        &[(3, 64, 7, 13), (5, 3, 13, 7), (64, 64, 32, 32), (64, 5, 1, 1), (5, 64, 1, 7), (13, 17, 13, 13)]
    {
        for relu in [false, true] {
            let x = rng.vec(cin * h * w, -1.0, 1.0);
            let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
            let b = rng.vec(cout, -0.5, 0.5);
            let (tx, tw, tb) = (upload([cin, h, w], &x), upload([cout, cin, 9], &wt), upload([cout, 1, 1], &b));
            let y = poisoned([cout, h, w]);
            run(&conv::conv3x3_forward(ctx(), &tx, &tw, &tb, &y, relu));
            let want = r::conv3x3_forward(&f64s(&x), cin, h, w, &f64s(&wt), &f64s(&b), cout, relu);
            assert_close(&format!("conv3x3_forward {cin}->{cout} {h}x{w} relu={relu}"), &read(&y), &want, TOL_DOT);
        }
    }
}

#[test]
fn conv3x3_backward_input_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(2);
    for &(cin, cout, h, w) in &[(3, 64, 7, 13), (5, 3, 13, 7), (64, 64, 32, 32), (64, 5, 1, 1), (13, 17, 13, 13)] {
        let x = rng.vec(cin * h * w, -1.0, 1.0);
        let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
        let b = rng.vec(cout, -0.5, 0.5);
        let dy = rng.vec(cout * h * w, -1.0, 1.0);
        let (xd, wd, bd, dyd) = (f64s(&x), f64s(&wt), f64s(&b), f64s(&dy));
        let tflip = upload([cin, cout, 9], &conv::transpose_flip(&wt, cout, cin));
        let tdy = upload([cout, h, w], &dy);

        // Plain backward (no mask).
        let dx = poisoned([cin, h, w]);
        run(&conv::conv3x3_backward_input(ctx(), &tdy, None, &tflip, &dx));
        let got = read(&dx);
        let want = r::conv3x3_backward_input(&dyd, cout, h, w, &wd, cin);
        assert_close(&format!("conv3x3_backward_input {cout}->{cin} {h}x{w}"), &got, &want, TOL_DOT);
        let fwd = |xv: &[f64]| r::conv3x3_forward(xv, cin, h, w, &wd, &bd, cout, false);
        check_fd(&format!("conv3x3_backward_input {cout}->{cin} {h}x{w} vs FD"), &fwd, &xd, &dyd, &got, 24, &mut rng);

        // With the fused ReLU mask: the bits relu_mask_pack makes of the forward's ReLU output.
        let y = r::conv3x3_forward(&xd, cin, h, w, &wd, &bd, cout, true);
        let ty = upload([cout, h, w], &y.iter().map(|&v| v as f32).collect::<Vec<_>>());
        let mask = relu::Mask::new(ctx(), [cout, h, w], "mask").unwrap();
        run(&relu::relu_mask_pack(ctx(), &ty, &mask));
        let dx = poisoned([cin, h, w]);
        run(&conv::conv3x3_backward_input(ctx(), &tdy, Some(&mask), &tflip, &dx));
        let got = read(&dx);
        let masked = r::relu_backward(&y, &dyd);
        let want = r::conv3x3_backward_input(&masked, cout, h, w, &wd, cin);
        assert_close(&format!("conv3x3_backward_input+relu mask {cout}->{cin} {h}x{w}"), &got, &want, TOL_DOT);
        let fwd = |xv: &[f64]| r::conv3x3_forward(xv, cin, h, w, &wd, &bd, cout, true);
        check_fd(
            &format!("conv3x3_backward_input+relu mask {cout}->{cin} {h}x{w} vs FD"),
            &fwd,
            &xd,
            &dyd,
            &got,
            24,
            &mut rng,
        );
    }
}

/// Odd shapes for the per-variant conv tests: channels 3, 5, 13, 17, 64; sizes 1x1, 1x7, 7x13,
/// 13x13, 32x32, one wider than a 64-pixel tile row, and 4x7.
const CONV_SHAPES: &[(usize, usize, usize, usize)] = &[
    (3, 64, 7, 13),
    (5, 3, 13, 7),
    (64, 64, 32, 32),
    (64, 5, 1, 1),
    (5, 64, 1, 7),
    (13, 17, 13, 13),
    (17, 13, 32, 32),
    (3, 5, 1, 1),
    (17, 3, 7, 13),
    (5, 17, 9, 130),
    (13, 5, 4, 7), // h * w % 4 == 0 with w odd: the 4-pixel packing crosses rows
];

/// `Tiled` and, where the texture kernels run, `texture` too (on a CPU adapter, lavapipe, they
/// must really run, not fall back). `tex`: why the texture kernels cannot run, if so.
/// On a GPU they are skipped unless `STYLIZE_TEST_TEXTURE=1`: they are the CPU drivers' designs,
/// never chosen on a GPU, and on the H200 their many generated pipelines took minutes to build.
fn variants_with(what: &str, tex: Option<String>, texture: &[conv::Variant]) -> Vec<conv::Variant> {
    let cpu = conv::TexCaps::of(ctx()).device_type == wgpu::DeviceType::Cpu;
    if cpu {
        assert!(tex.is_none(), "texture {what} unavailable on the CPU adapter: {tex:?}");
    }
    let opted_in = std::env::var("STYLIZE_TEST_TEXTURE").is_ok_and(|v| v == "1");
    let tex = match tex {
        None if !cpu && !opted_in => {
            Some("a GPU adapter (the texture kernels are for CPU drivers; STYLIZE_TEST_TEXTURE=1 tests them)".into())
        }
        other => other,
    };
    match tex {
        None => [conv::Variant::Tiled].iter().chain(texture).copied().collect(),
        Some(why) => {
            println!("texture {what} not tested: {why}");
            vec![conv::Variant::Tiled]
        }
    }
}

/// Every conv variant that can run the shape (the Winograd ones wherever the direct texture one can).
fn conv_variants(cin: usize, cout: usize, h: usize, w: usize) -> Vec<conv::Variant> {
    let caps = conv::TexCaps::of(ctx());
    let tex = conv::tex_unsupported(&caps, cin, cout, h, w);
    if tex.is_none() {
        for v in [conv::Variant::Wino, conv::Variant::Wino4] {
            let why = conv::wino_unsupported(&caps, v, cin, cout, h, w);
            assert!(why.is_none(), "{v:?} conv unavailable where the texture conv runs: {why:?}");
        }
    }
    let mut v = variants_with(
        &format!("conv {cin}->{cout} {h}x{w}"),
        tex,
        &[conv::Variant::Tex, conv::Variant::Wino, conv::Variant::Wino4],
    );
    // The register-blocked GEMM kernels run wherever storage buffers do (Winograd on buffers
    // where its scratch fits, as at every test shape).
    for (i, m) in [2, 4].into_iter().enumerate() {
        assert!(conv::wino_gemm_unsupported(&ctx().limits, m, cin, cout, h, w).is_none());
        v.insert(1 + i, conv::Variant::GemmWino(m, conv::GemmTile::DEFAULT));
    }
    v.insert(1, conv::Variant::GEMM);
    v
}

/// Every GEMM tile the tuner may choose, and Winograd on buffers with two of them, across their
/// block edges: more than one channel block (70 > 64; 67 input channels for the backward), K = 9
/// cin (or cin) not a multiple of any K-chunk, a pixel count (99) that is not a multiple of 4 or
/// of any tile's pixel count, and 9 x 11 pixels that are not whole 2x2 or 4x4 Winograd tiles.
#[test]
fn conv3x3_gemm_tiles_cross_their_block_edges() {
    let mut rng = Rng::new(14);
    let (cin, cout, h, w) = (67, 70, 9, 11);
    let x = rng.vec(cin * h * w, -1.0, 1.0);
    let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
    let b = rng.vec(cout, -0.5, 0.5);
    let dy = rng.vec(cout * h * w, -1.0, 1.0);
    let (xd, wd, bd, dyd) = (f64s(&x), f64s(&wt), f64s(&b), f64s(&dy));
    let (tx, tw, tb) = (upload([cin, h, w], &x), upload([cout, cin, 9], &wt), upload([cout, 1, 1], &b));
    let want_y = r::conv3x3_forward(&xd, cin, h, w, &wd, &bd, cout, true);
    let mask = relu::Mask::from_words(ctx(), [cout, h, w], &r::relu_mask_pack(&want_y), "mask").unwrap();
    let tflip = upload([cin, cout, 9], &conv::transpose_flip(&wt, cout, cin));
    let tdy = upload([cout, h, w], &dy);
    let want_dx = r::conv3x3_backward_input(&r::relu_backward(&want_y, &dyd), cout, h, w, &wd, cin);
    let want_dx_unmasked = r::conv3x3_backward_input(&dyd, cout, h, w, &wd, cin);
    let wino = [conv::GemmTile::DEFAULT, conv::GemmTile::parse("gemm:r8x8w16x16k8").unwrap()]
        .into_iter()
        .flat_map(|t| [conv::Variant::GemmWino(2, t), conv::Variant::GemmWino(4, t)]);
    for v in conv::GemmTile::ALL.map(conv::Variant::Gemm).into_iter().chain(wino) {
        let (conv::Variant::Gemm(t) | conv::Variant::GemmWino(_, t)) = v else { unreachable!() };
        assert!(t.unsupported(&ctx().limits).is_none(), "{} does not run here", t.name());
        let y = poisoned([cout, h, w]);
        run(&conv::conv3x3_forward_with(ctx(), v, &tx, &tw, &tb, &y, true));
        assert_close(&format!("conv3x3_forward {v} {cin}->{cout} {h}x{w}"), &read(&y), &want_y, TOL_DOT);
        let dx = poisoned([cin, h, w]);
        run(&conv::conv3x3_backward_input_with(ctx(), v, &tdy, Some(&mask), &tflip, &dx));
        assert_close(&format!("conv3x3_backward_input+mask {v} {cout}->{cin} {h}x{w}"), &read(&dx), &want_dx, TOL_DOT);
        let dx = poisoned([cin, h, w]);
        run(&conv::conv3x3_backward_input_with(ctx(), v, &tdy, None, &tflip, &dx));
        assert_close(
            &format!("conv3x3_backward_input {v} {cout}->{cin} {h}x{w}"),
            &read(&dx),
            &want_dx_unmasked,
            TOL_DOT,
        );
    }
}

/// Tile names read back, invalid tiles are refused, and the figures of merit are what the
/// design says (benches/README.md quotes them).
#[test]
fn gemm_tiles_parse_and_report_their_work_per_load() {
    for t in conv::GemmTile::ALL {
        assert!(t.valid(), "{t:?}");
        assert_eq!(conv::GemmTile::parse(&t.name()), Some(t));
        assert_eq!(conv::Variant::parse(&t.name()), Some(conv::Variant::Gemm(t)));
    }
    assert_eq!(conv::Variant::parse("GEMM"), Some(conv::Variant::GEMM));
    let suffixes = ["gemm:r4x4w16x16k16du", "gemm:r4x4w16x16k16dd", "gemm:r4x4w16x16k16x"];
    for bad in ["gemm:r3x4w16x16k16", "gemm:r4x4w64x64k16", "gemm:r4x4w16x16k2", "gemm:r4x4", "gemmx"]
        .into_iter()
        .chain(suffixes)
    {
        assert_eq!(conv::GemmTile::parse(bad), None, "{bad}");
    }
    for m in [2, 4] {
        for t in conv::GemmTile::ALL {
            let v = conv::Variant::GemmWino(m, t);
            assert_eq!(conv::Variant::parse(&v.name()), Some(v), "{v}");
        }
    }
    assert_eq!(conv::Variant::parse("gemm-wino4").unwrap().name(), "gemm-wino4");
    for bad in ["gemm-wino3", "gemm-wino2x", "gemm-wino4:r3x3w8x8k16"] {
        assert_eq!(conv::Variant::parse(bad), None, "{bad}");
    }
    let d = conv::GemmTile::DEFAULT;
    assert_eq!((d.tile(), d.fmas_per_workgroup_load(), d.fmas_per_global_load()), ((64, 64), 8.0, 32.0));
    let big = conv::GemmTile::parse("gemm:r8x8w16x16k8").unwrap();
    assert_eq!((big.tile(), big.fmas_per_workgroup_load(), big.fmas_per_global_load()), ((128, 128), 16.0, 64.0));
    assert_eq!(big.workgroup_bytes(), 8192);
    let small = wgpu::Limits { max_compute_workgroup_storage_size: 4096, ..wgpu::Limits::default() };
    assert!(big.unsupported(&small).is_some() && big.unsupported(&wgpu::Limits::default()).is_none());
}

#[test]
fn conv3x3_forward_variants_match_reference() {
    let mut rng = Rng::new(11);
    for &(cin, cout, h, w) in CONV_SHAPES {
        let x = rng.vec(cin * h * w, -1.0, 1.0);
        let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
        let b = rng.vec(cout, -0.5, 0.5);
        let (tx, tw, tb) = (upload([cin, h, w], &x), upload([cout, cin, 9], &wt), upload([cout, 1, 1], &b));
        for v in conv_variants(cin, cout, h, w) {
            for relu in [false, true] {
                let y = poisoned([cout, h, w]);
                run(&conv::conv3x3_forward_with(ctx(), v, &tx, &tw, &tb, &y, relu));
                let want = r::conv3x3_forward(&f64s(&x), cin, h, w, &f64s(&wt), &f64s(&b), cout, relu);
                assert_close(
                    &format!("conv3x3_forward {v:?} {cin}->{cout} {h}x{w} relu={relu}"),
                    &read(&y),
                    &want,
                    TOL_DOT,
                );
            }
        }
    }
}

#[test]
fn conv3x3_backward_input_variants_match_reference() {
    let mut rng = Rng::new(12);
    for &(cin, cout, h, w) in CONV_SHAPES {
        let x = rng.vec(cin * h * w, -1.0, 1.0);
        let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
        let b = rng.vec(cout, -0.5, 0.5);
        let dy = rng.vec(cout * h * w, -1.0, 1.0);
        let (xd, wd, bd, dyd) = (f64s(&x), f64s(&wt), f64s(&b), f64s(&dy));
        let tflip = upload([cin, cout, 9], &conv::transpose_flip(&wt, cout, cin));
        let tdy = upload([cout, h, w], &dy);
        let y = r::conv3x3_forward(&xd, cin, h, w, &wd, &bd, cout, true);
        let mask = relu::Mask::from_words(ctx(), [cout, h, w], &r::relu_mask_pack(&y), "mask").unwrap();
        let plain = r::conv3x3_backward_input(&dyd, cout, h, w, &wd, cin);
        let masked = r::conv3x3_backward_input(&r::relu_backward(&y, &dyd), cout, h, w, &wd, cin);
        // The backward's "input" has cout channels and its output cin.
        for v in conv_variants(cout, cin, h, w) {
            let dx = poisoned([cin, h, w]);
            run(&conv::conv3x3_backward_input_with(ctx(), v, &tdy, None, &tflip, &dx));
            assert_close(&format!("conv3x3_backward_input {v:?} {cout}->{cin} {h}x{w}"), &read(&dx), &plain, TOL_DOT);
            let dx = poisoned([cin, h, w]);
            run(&conv::conv3x3_backward_input_with(ctx(), v, &tdy, Some(&mask), &tflip, &dx));
            assert_close(
                &format!("conv3x3_backward_input+relu mask {v:?} {cout}->{cin} {h}x{w}"),
                &read(&dx),
                &masked,
                TOL_DOT,
            );
        }
    }
}

/// An op is built once and recorded every iteration with new data in its input: the texture
/// variant must repack the input each time (and keep its weights).
#[test]
fn conv3x3_ops_rerun_with_new_inputs() {
    let mut rng = Rng::new(13);
    let (cin, cout, h, w) = (13, 17, 13, 13);
    let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
    let b = rng.vec(cout, -0.5, 0.5);
    let (tw, tb) = (upload([cout, cin, 9], &wt), upload([cout, 1, 1], &b));
    for v in conv_variants(cin, cout, h, w) {
        let tx = upload([cin, h, w], &vec![0.0; cin * h * w]);
        let y = poisoned([cout, h, w]);
        let op = conv::conv3x3_forward_with(ctx(), v, &tx, &tw, &tb, &y, true);
        for round in 0..3 {
            let x = rng.vec(cin * h * w, -1.0, 1.0);
            tx.write(ctx(), &x);
            y.fill(ctx(), f32::NAN);
            run(&op);
            let want = r::conv3x3_forward(&f64s(&x), cin, h, w, &f64s(&wt), &f64s(&b), cout, true);
            assert_close(&format!("conv3x3_forward {v:?} rerun {round}"), &read(&y), &want, TOL_DOT);
        }
    }
}

/// Ops of one input shape share the texture variant's packed-input scratch texture: several of
/// them recorded into one pass (independent, and chained) must each still be right.
#[test]
fn conv3x3_ops_of_one_shape_in_one_pass() {
    let mut rng = Rng::new(15);
    let (c, h, w) = (13, 7, 13);
    let wa = rng.vec(c * c * 9, -0.5, 0.5);
    let wb = rng.vec(c * c * 9, -0.5, 0.5);
    let b = rng.vec(c, -0.5, 0.5);
    let x1 = rng.vec(c * h * w, -1.0, 1.0);
    let x2 = rng.vec(c * h * w, -1.0, 1.0);
    let (twa, twb, tb) = (upload([c, c, 9], &wa), upload([c, c, 9], &wb), upload([c, 1, 1], &b));
    let (tx1, tx2) = (upload([c, h, w], &x1), upload([c, h, w], &x2));
    for v in conv_variants(c, c, h, w) {
        let (y1, y2, z) = (poisoned([c, h, w]), poisoned([c, h, w]), poisoned([c, h, w]));
        let ops = [
            conv::conv3x3_forward_with(ctx(), v, &tx1, &twa, &tb, &y1, true),
            conv::conv3x3_forward_with(ctx(), v, &tx2, &twb, &tb, &y2, false),
            conv::conv3x3_forward_with(ctx(), v, &y1, &twb, &tb, &z, true),
        ];
        ctx().run(&ops.iter().collect::<Vec<_>>()).expect("gpu run");
        let r1 = r::conv3x3_forward(&f64s(&x1), c, h, w, &f64s(&wa), &f64s(&b), c, true);
        let r2 = r::conv3x3_forward(&f64s(&x2), c, h, w, &f64s(&wb), &f64s(&b), c, false);
        let rz = r::conv3x3_forward(&r1, c, h, w, &f64s(&wb), &f64s(&b), c, true);
        assert_close(&format!("conv3x3_forward {v:?} shared pass 1"), &read(&y1), &r1, TOL_DOT);
        assert_close(&format!("conv3x3_forward {v:?} shared pass 2"), &read(&y2), &r2, TOL_DOT);
        assert_close(&format!("conv3x3_forward {v:?} shared pass chained"), &read(&z), &rz, TOL_DOT);
    }
}

#[test]
fn conv3x3_variant_selection() {
    use conv::{choose_variant, TexCaps, Variant::*};
    let cpu = TexCaps {
        device_type: wgpu::DeviceType::Cpu,
        subgroup_size: Some(8),
        max_texture_dimension_2d: 16384,
        max_texture_array_layers: 2048,
    };
    let gpu = TexCaps { device_type: wgpu::DeviceType::DiscreteGpu, subgroup_size: Some(32), ..cpu.clone() };
    let no_sg = TexCaps { subgroup_size: None, ..cpu.clone() };
    // Default: per adapter class; on the CPU adapter Winograd where its 32-channel x 2x4-pixel
    // blocks are full, the direct texture kernel elsewhere.
    for &(cin, cout, s, cpu_default) in &[
        (3, 64, 512, Wino4),
        (64, 64, 512, Wino4),
        (128, 128, 256, Wino4),
        (256, 256, 128, Wino4),
        (512, 512, 16, Wino4),
        (512, 512, 15, Wino),
        (512, 512, 8, Wino),
        (512, 512, 4, Tex),
        (64, 3, 1024, Tex),
        (64, 16, 64, Tex),
    ] {
        assert_eq!(choose_variant(&cpu, None, cin, cout, s, s), cpu_default, "{cin}->{cout} @{s}");
        assert_eq!(choose_variant(&gpu, None, cin, cout, s, s), conv::gpu_default(cout, s, s));
        assert_eq!(choose_variant(&no_sg, None, cin, cout, s, s), Tiled);
        // Forced.
        assert_eq!(choose_variant(&cpu, Some(Tiled), cin, cout, s, s), Tiled);
        assert_eq!(choose_variant(&cpu, Some(Tex), cin, cout, s, s), Tex);
        assert_eq!(choose_variant(&cpu, Some(Wino), cin, cout, s, s), Wino);
        assert_eq!(choose_variant(&cpu, Some(Wino4), cin, cout, s, s), Wino4);
        assert_eq!(choose_variant(&gpu, Some(Tex), cin, cout, s, s), Tex);
        assert_eq!(choose_variant(&no_sg, Some(Tex), cin, cout, s, s), Tiled);
        assert_eq!(choose_variant(&no_sg, Some(Wino), cin, cout, s, s), Tiled);
        assert_eq!(choose_variant(&no_sg, Some(Wino4), cin, cout, s, s), Tiled);
    }
    // GPUs, untuned: the unrolled 64x64 GEMM tile where it makes >= 128 workgroups, else the
    // unrolled 32x32 one, which also takes fewer than 16 output channels.
    let (big, small) = (Gemm(conv::GemmTile::DEFAULT_UNROLLED), Gemm(conv::GemmTile::SMALL_UNROLLED));
    for &(cout, s, want) in &[
        (64, 512, big),
        (512, 64, big),
        (512, 32, big),
        (512, 16, small),
        (64, 32, small),
        (16, 8, small),
        (3, 512, small),
        (8, 512, small),
    ] {
        assert_eq!(choose_variant(&gpu, None, 64, cout, s, s), want, "GPU default for {cout} outputs @{s}");
    }
    // Texture limits: the bordered input must fit max_texture_dimension_2d per side, the channel
    // quads max_texture_array_layers, the weights one 2-D texture (9 rows per 4 input channels
    // direct, 16 F(2x2), 36 F(4x4): past that Winograd falls back to the smaller tile, then to
    // the direct kernel).
    assert_eq!(choose_variant(&cpu, None, 64, 64, 16382, 16382), Wino4);
    assert_eq!(choose_variant(&cpu, None, 64, 64, 16383, 8), Tiled);
    assert_eq!(choose_variant(&cpu, None, 64, 64, 8, 16383), Tiled);
    assert_eq!(choose_variant(&cpu, Some(Tex), 64, 64, 8, 16383), Tiled);
    assert_eq!(choose_variant(&cpu, None, 4 * 455, 64, 16, 16), Wino4); // 36 * 455 + 1 rows
    assert_eq!(choose_variant(&cpu, None, 4 * 456, 64, 16, 16), Wino);
    assert_eq!(choose_variant(&cpu, None, 4 * 1023, 64, 8, 8), Wino); // 16 * 1023 + 1 rows
    assert_eq!(choose_variant(&cpu, None, 4 * 1024, 64, 8, 8), Tex);
    assert_eq!(choose_variant(&cpu, Some(Wino4), 4 * 1024, 64, 8, 8), Tex);
    assert_eq!(choose_variant(&cpu, None, 4 * 1820, 64, 8, 8), Tex);
    assert_eq!(choose_variant(&cpu, None, 4 * 1821, 64, 8, 8), Tiled); // 9 * 1821 + 1 rows > 16384
    let few_layers = TexCaps { max_texture_array_layers: 16, ..cpu.clone() };
    assert_eq!(choose_variant(&few_layers, None, 64, 64, 8, 8), Wino);
    assert_eq!(choose_variant(&few_layers, None, 65, 64, 8, 8), Tiled);
    assert_eq!(choose_variant(&cpu, None, 64, 16384, 8, 8), Wino);
    assert_eq!(choose_variant(&cpu, None, 64, 16385, 8, 8), Tiled);
    // The texture kernel's tiling: the shapes above exercise workgroups that span several channel
    // blocks (tz > 1, small images) as well as one (tz = 1).
    let plans: Vec<_> = CONV_SHAPES
        .iter()
        .flat_map(|&(cin, cout, h, w)| [conv::TexPlan::new(8, cout, h, w), conv::TexPlan::new(8, cin, h, w)])
        .collect();
    assert!(plans.iter().any(|p| p.tz > 1) && plans.iter().any(|p| p.tz == 1));
    for p in &plans {
        assert_eq!(p.tw * p.th * p.tz, 64);
        assert_eq!((p.tw * p.th) % 8, 0);
    }
    let p = conv::TexPlan::new(8, 512, 8, 8); // conv5 at a 128 px input: 8 x 8 pixels, no waste
    assert!(8 % p.tw == 0 && 8 % (p.th * p.cfg.py) == 0 && p.tz > 1, "{p:?}");
    assert_eq!(conv::Variant::parse("TEX"), Some(Tex));
    assert_eq!(conv::Variant::parse(" tiled"), Some(Tiled));
    assert_eq!(conv::Variant::parse("fast"), None);
}

/// A shape past the texture limit falls back to the tiled kernel and is still right.
#[test]
fn conv3x3_too_wide_for_textures_falls_back() {
    let ctx = ctx();
    let caps = conv::TexCaps::of(ctx);
    let (cin, cout, h, w) = (3, 5, 2, caps.max_texture_dimension_2d as usize);
    assert!(conv::tex_unsupported(&caps, cin, cout, h, w).is_some());
    assert_eq!(conv::select_variant(ctx, cin, cout, h, w), conv::Variant::Tiled);
    let mut rng = Rng::new(14);
    let x = rng.vec(cin * h * w, -1.0, 1.0);
    let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
    let b = rng.vec(cout, -0.5, 0.5);
    let (tx, tw, tb) = (upload([cin, h, w], &x), upload([cout, cin, 9], &wt), upload([cout, 1, 1], &b));
    let y = poisoned([cout, h, w]);
    run(&conv::conv3x3_forward_with(ctx, conv::Variant::Tex, &tx, &tw, &tb, &y, true));
    let want = r::conv3x3_forward(&f64s(&x), cin, h, w, &f64s(&wt), &f64s(&b), cout, true);
    assert_close(&format!("conv3x3_forward fallback {cin}->{cout} {h}x{w}"), &read(&y), &want, TOL_DOT);
}

#[test]
fn relu_forward_backward() {
    let mut rng = Rng::new(3);
    for &n in &[1usize, 7, 13 * 7 * 5, 64 * 32 * 32 + 3] {
        let x = rng.vec(n, -1.0, 1.0);
        let dy = rng.vec(n, -1.0, 1.0);
        let (tx, tdy) = (upload([n, 1, 1], &x), upload([n, 1, 1], &dy));
        let y = poisoned([n, 1, 1]);
        run(&relu::relu_forward(ctx(), &tx, &y));
        let yv = read(&y);
        assert_close(&format!("relu_forward n={n}"), &yv, &r::relu_forward(&f64s(&x)), TOL_ELEMENTWISE);
        let dx = poisoned([n, 1, 1]);
        run(&relu::relu_backward(ctx(), &y, &tdy, &dx));
        let got = read(&dx);
        assert_close(&format!("relu_backward n={n}"), &got, &r::relu_backward(&f64s(&yv), &f64s(&dy)), TOL_ELEMENTWISE);
        check_fd(
            &format!("relu_backward n={n} vs FD"),
            &|xv| r::relu_forward(xv),
            &f64s(&x),
            &f64s(&dy),
            &got,
            16,
            &mut rng,
        );
    }
}

/// The 1-bit ReLU mask must match the reference bit for bit: sizes below one word, off word
/// boundaries, and over several 8192-element workgroups; exact zeros (both signs) must give 0
/// bits, as relu_backward masks by y > 0. The words are poisoned first.
#[test]
fn relu_mask_pack_matches_reference() {
    let mut rng = Rng::new(31);
    for &n in &[1usize, 31, 32, 33, 13 * 7 * 5, 8192, 8193, 3 * 8192 + 4095, 64 * 32 * 32 + 3] {
        let mut y = rng.vec(n, -1.0, 1.0);
        for (i, v) in y.iter_mut().enumerate() {
            match i % 7 {
                3 => *v = 0.0,
                5 => *v = -0.0,
                _ => {}
            }
        }
        let ty = upload([n, 1, 1], &y);
        let mask = relu::Mask::new(ctx(), [n, 1, 1], "mask").unwrap();
        mask.words.fill(ctx(), f32::from_bits(0xdead_beef));
        run(&relu::relu_mask_pack(ctx(), &ty, &mask));
        let got = mask.read(ctx()).unwrap();
        let want = r::relu_mask_pack(&f64s(&y));
        assert_eq!(got.len(), want.len());
        let wrong: Vec<usize> = (0..want.len()).filter(|&j| got[j] != want[j]).collect();
        println!("relu_mask_pack n={n:<8} words {:<6} wrong {}", want.len(), wrong.len());
        assert!(
            wrong.is_empty(),
            "relu_mask_pack n={n}: words {wrong:?} differ (first: got {:#x}, want {:#x})",
            got[wrong[0]],
            want[wrong[0]]
        );
        // Not all one value: the test would not see swapped bits otherwise.
        assert!(want.iter().any(|&w| w != 0 && w != u32::MAX) || n < 32);
    }
}

#[test]
fn pools_forward_backward() {
    let mut rng = Rng::new(4);
    for &(c, h, w) in &[(3, 7, 13), (5, 13, 7), (64, 32, 32), (3, 2, 2), (5, 3, 33)] {
        let x = rng.vec(c * h * w, -1.0, 1.0);
        let (oh, ow) = r::pool_out(h, w);
        let dy = rng.vec(c * oh * ow, -1.0, 1.0);
        let (xd, dyd) = (f64s(&x), f64s(&dy));
        let (tx, tdy) = (upload([c, h, w], &x), upload([c, oh, ow], &dy));
        for kind in [pool::Pool::Avg, pool::Pool::Max] {
            let y = poisoned([c, oh, ow]);
            run(&pool::pool_forward(ctx(), kind, &tx, &y));
            let (want_y, want_dx, fwd): (Vec<f64>, Vec<f64>, RefFn) = match kind {
                pool::Pool::Avg => (
                    r::avgpool2x2_forward(&xd, c, h, w),
                    r::avgpool2x2_backward(&dyd, c, h, w),
                    Box::new(move |v: &[f64]| r::avgpool2x2_forward(v, c, h, w)),
                ),
                pool::Pool::Max => (
                    r::maxpool2x2_forward(&xd, c, h, w),
                    r::maxpool2x2_backward(&xd, &dyd, c, h, w),
                    Box::new(move |v: &[f64]| r::maxpool2x2_forward(v, c, h, w)),
                ),
            };
            assert_close(&format!("{kind:?}pool2x2_forward {c}x{h}x{w}"), &read(&y), &want_y, TOL_ELEMENTWISE);
            let dx = poisoned([c, h, w]);
            run(&pool::pool_backward(ctx(), kind, &tx, &tdy, &dx));
            let got = read(&dx);
            assert_close(&format!("{kind:?}pool2x2_backward {c}x{h}x{w}"), &got, &want_dx, TOL_ELEMENTWISE);
            check_fd(&format!("{kind:?}pool2x2_backward {c}x{h}x{w} vs FD"), &*fwd, &xd, &dyd, &got, 24, &mut rng);
        }
    }
}

/// An f64 reference function of one input, boxed so either pool kind's fits one variable.
type RefFn = Box<dyn Fn(&[f64]) -> Vec<f64>>;

#[test]
fn maxpool_ties_route_to_first_maximum() {
    // After a ReLU whole windows are 0: the gradient must go to the first element, as PyTorch.
    let x = [0.0f32, 0.0, 0.0, 0.0, /* second window */ 0.5, 0.5, 0.0, 0.5];
    // (1, 2, 4): windows at columns 0-1 and 2-3.
    let x = vec![x[0], x[1], x[4], x[5], x[2], x[3], x[6], x[7]];
    let tx = upload([1, 2, 4], &x);
    let tdy = upload([1, 1, 2], &[3.0, 5.0]);
    let dx = poisoned([1, 2, 4]);
    run(&pool::maxpool2x2_backward(ctx(), &tx, &tdy, &dx));
    let want = r::maxpool2x2_backward(&f64s(&x), &[3.0, 5.0], 1, 2, 4);
    assert_eq!(want, vec![3.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_close("maxpool2x2_backward ties", &read(&dx), &want, 0.0);
}

#[test]
fn gram_forward_backward() {
    let mut rng = Rng::new(5);
    for &(c, h, w) in &[(3, 7, 13), (5, 13, 7), (64, 32, 32), (17, 1, 1), (33, 5, 3), (5, 64, 80)] {
        let f = rng.vec(c * h * w, -1.0, 1.0);
        let fd_ = f64s(&f);
        let tf = upload([c, h, w], &f);
        let g = poisoned([c, c, 1]);
        run(&gram::gram_forward(ctx(), &tf, &g));
        assert_close(&format!("gram_forward {c}x{h}x{w}"), &read(&g), &r::gram_forward(&fd_, c, h * w), TOL_DOT);

        // Non-symmetric dG exercises the (dG + dG^T) term.
        let dg = rng.vec(c * c, -1.0, 1.0);
        let dgd = f64s(&dg);
        let tdg = upload([c, c, 1], &dg);
        let df = poisoned([c, h, w]);
        run(&gram::gram_backward(ctx(), &tf, &tdg, &df, false));
        let got = read(&df);
        let want = r::gram_backward(&fd_, &dgd, c, h * w);
        assert_close(&format!("gram_backward {c}x{h}x{w}"), &got, &want, TOL_DOT);
        check_fd(
            &format!("gram_backward {c}x{h}x{w} vs FD"),
            &|v| r::gram_forward(v, c, h * w),
            &fd_,
            &dgd,
            &got,
            24,
            &mut rng,
        );

        // accumulate = true adds onto what is there.
        let base = rng.vec(c * h * w, -1.0, 1.0);
        let acc = upload([c, h, w], &base);
        run(&gram::gram_backward(ctx(), &tf, &tdg, &acc, true));
        let want_acc: Vec<f64> = want.iter().zip(&base).map(|(a, b)| a + *b as f64).collect();
        assert_close(&format!("gram_backward accumulate {c}x{h}x{w}"), &read(&acc), &want_acc, TOL_DOT);
    }
}

/// Gram shapes for the variant tests: c = 3 .. 130 (130: three 64-channel tiles a side, the last
/// of 2 channels, so the GEMM's upper tiles and their mirrors) against n = 1 .. 5120 (odd, 4k,
/// 4k + 3, more than one 256-position split, one split shorter than the rest).
const GRAM_CHANNELS: &[usize] = &[3, 5, 17, 33, 64, 128, 130];
const GRAM_PLANES: &[(usize, usize)] = &[(1, 1), (1, 15), (5, 3), (64, 80), (25, 40)];

/// Both Gram variants where the texture one can run the shape.
fn gram_variants(c: usize, n: usize) -> Vec<gram::Variant> {
    let tex = gram::tex_unsupported(&conv::TexCaps::of(ctx()), c, n);
    let mut v = variants_with(&format!("gram {c}x{n}"), tex, &[gram::Variant::Tex]);
    // The register-blocked GEMM kernels run wherever storage buffers do.
    v.insert(1, gram::Variant::GEMM);
    v
}

#[test]
fn gram_forward_variants_match_reference() {
    let mut rng = Rng::new(21);
    for &c in GRAM_CHANNELS {
        for &(h, w) in GRAM_PLANES {
            let n = h * w;
            let f = rng.vec(c * n, -1.0, 1.0);
            let fd_ = f64s(&f);
            let tf = upload([c, h, w], &f);
            let want = r::gram_forward(&fd_, c, n);
            let base = rng.vec(c * c, -1.0, 1.0);
            let scale = 0.37f32;
            let k = (c * n) as f64 * scale as f64;
            let want_acc: Vec<f64> = want.iter().zip(&base).map(|(g, b)| *b as f64 + g * k).collect();
            for v in gram_variants(c, n) {
                let tag = format!("{v:?}").to_lowercase();
                let g = poisoned([c, c, 1]);
                let [cc, hh, ww] = tf.shape;
                run(&gram::gram_forward_scaled_with(ctx(), v, &tf, &g, 1.0 / (cc * hh * ww) as f32, false));
                assert_close(&format!("gram_forward {tag} {c}x{h}x{w}"), &read(&g), &want, TOL_DOT);
                // A custom scale, accumulated onto what is there.
                let acc = upload([c, c, 1], &base);
                run(&gram::gram_forward_scaled_with(ctx(), v, &tf, &acc, scale, true));
                assert_close(
                    &format!("gram_forward scaled accumulate {tag} {c}x{h}x{w}"),
                    &read(&acc),
                    &want_acc,
                    TOL_DOT,
                );
            }
        }
    }
}

#[test]
fn gram_backward_variants_match_reference() {
    let mut rng = Rng::new(22);
    for &c in GRAM_CHANNELS {
        for &(h, w) in GRAM_PLANES {
            let n = h * w;
            let f = rng.vec(c * n, -1.0, 1.0);
            let fd_ = f64s(&f);
            let tf = upload([c, h, w], &f);
            // Non-symmetric dG exercises the (dG + dG^T) term.
            let dg = rng.vec(c * c, -1.0, 1.0);
            let tdg = upload([c, c, 1], &dg);
            let want = r::gram_backward(&fd_, &f64s(&dg), c, n);
            let base = rng.vec(c * n, -1.0, 1.0);
            let scale = 0.37f32;
            let k = (c * n) as f64 * scale as f64;
            let want_acc: Vec<f64> = want.iter().zip(&base).map(|(g, b)| *b as f64 + g * k).collect();
            for v in gram_variants(c, n) {
                let tag = format!("{v:?}").to_lowercase();
                let df = poisoned([c, h, w]);
                run(&gram::gram_backward_scaled_with(ctx(), v, &tf, &tdg, &df, 1.0 / (c * n) as f32, false));
                assert_close(&format!("gram_backward {tag} {c}x{h}x{w}"), &read(&df), &want, TOL_DOT);
                let acc = upload([c, h, w], &base);
                run(&gram::gram_backward_scaled_with(ctx(), v, &tf, &tdg, &acc, scale, true));
                assert_close(
                    &format!("gram_backward scaled accumulate {tag} {c}x{h}x{w}"),
                    &read(&acc),
                    &want_acc,
                    TOL_DOT,
                );
            }
        }
    }
}

/// More positions than 65535 workgroups of 16 cover (a 1024x1024 layer): each Gram kernel must
/// fold its grid (the tiled backward once did not, and failed at 1024 px on an H200). 5 channels
/// keep the f64 reference and lavapipe quick.
#[test]
fn gram_of_a_megapixel_layer_folds_its_grid() {
    let mut rng = Rng::new(23);
    let (c, h, w): (usize, usize, usize) = (5, 1025, 1024);
    let n = h * w;
    assert!(n.div_ceil(16) > 65535);
    let f = rng.vec(c * n, -1.0, 1.0);
    let fd_ = f64s(&f);
    let tf = upload([c, h, w], &f);
    let dg = rng.vec(c * c, -1.0, 1.0);
    let tdg = upload([c, c, 1], &dg);
    let want_g = r::gram_forward(&fd_, c, n);
    let want = r::gram_backward(&fd_, &f64s(&dg), c, n);
    for v in gram_variants(c, n) {
        let tag = format!("{v:?}").to_lowercase();
        let g = poisoned([c, c, 1]);
        run(&gram::gram_forward_scaled_with(ctx(), v, &tf, &g, 1.0 / (c * n) as f32, false));
        assert_close(&format!("gram_forward {tag} {c}x{h}x{w}"), &read(&g), &want_g, TOL_DOT);
        let df = poisoned([c, h, w]);
        run(&gram::gram_backward_scaled_with(ctx(), v, &tf, &tdg, &df, 1.0 / (c * n) as f32, false));
        assert_close(&format!("gram_backward {tag} {c}x{h}x{w}"), &read(&df), &want, TOL_DOT);
    }
}

/// Ops of one shape share the texture variant's scratch textures: several in one pass, each on
/// its own input, must not disturb one another.
#[test]
fn gram_ops_of_one_shape_in_one_pass() {
    let mut rng = Rng::new(23);
    let (c, h, w) = (33, 9, 11);
    let n = h * w;
    for v in gram_variants(c, n) {
        let fs: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(c * n, -1.0, 1.0)).collect();
        let dgs: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(c * c, -1.0, 1.0)).collect();
        let tfs: Vec<Tensor> = fs.iter().map(|f| upload([c, h, w], f)).collect();
        let tdgs: Vec<Tensor> = dgs.iter().map(|d| upload([c, c, 1], d)).collect();
        let gs: Vec<Tensor> = (0..3).map(|_| poisoned([c, c, 1])).collect();
        let dfs: Vec<Tensor> = (0..3).map(|_| poisoned([c, h, w])).collect();
        let s = 1.0 / (c * n) as f32;
        let mut ops = vec![];
        for i in 0..3 {
            ops.push(gram::gram_forward_scaled_with(ctx(), v, &tfs[i], &gs[i], s, false));
            ops.push(gram::gram_backward_scaled_with(ctx(), v, &tfs[i], &tdgs[i], &dfs[i], s, false));
        }
        ctx().run(&ops.iter().collect::<Vec<_>>()).expect("run");
        for i in 0..3 {
            let fd_ = f64s(&fs[i]);
            assert_close(
                &format!("gram_forward {v:?} one pass #{i}"),
                &read(&gs[i]),
                &r::gram_forward(&fd_, c, n),
                TOL_DOT,
            );
            assert_close(
                &format!("gram_backward {v:?} one pass #{i}"),
                &read(&dfs[i]),
                &r::gram_backward(&fd_, &f64s(&dgs[i]), c, n),
                TOL_DOT,
            );
        }
    }
}

#[test]
fn gram_variant_selection() {
    use gram::{choose_variant, Variant::*};
    let cpu = conv::TexCaps {
        device_type: wgpu::DeviceType::Cpu,
        subgroup_size: Some(8),
        max_texture_dimension_2d: 16384,
        max_texture_array_layers: 2048,
    };
    let gpu = conv::TexCaps { device_type: wgpu::DeviceType::DiscreteGpu, subgroup_size: Some(32), ..cpu.clone() };
    let no_sg = conv::TexCaps { subgroup_size: None, ..cpu.clone() };
    let sg64 = conv::TexCaps { subgroup_size: Some(64), ..cpu.clone() };
    for &(c, n) in &[(64, 512 * 512), (128, 128 * 128), (256, 64 * 64), (512, 32 * 32), (512, 64), (3, 1)] {
        assert_eq!(choose_variant(&cpu, None, c, n), Tex);
        assert_eq!(choose_variant(&gpu, None, c, n), Tiled);
        assert_eq!(choose_variant(&no_sg, None, c, n), Tiled);
        assert_eq!(choose_variant(&sg64, None, c, n), Tiled);
        assert_eq!(choose_variant(&cpu, Some(Tiled), c, n), Tiled);
        assert_eq!(choose_variant(&gpu, Some(Tex), c, n), Tiled); // subgroups of 32: unsupported
        assert_eq!(choose_variant(&no_sg, Some(Tex), c, n), Tiled);
    }
    assert_eq!(choose_variant(&cpu, None, 0, 64), Tiled);
    assert_eq!(choose_variant(&cpu, None, 16384, 64), Tex);
    assert_eq!(choose_variant(&cpu, None, 16385, 64), Tiled);
    let few_layers = conv::TexCaps { max_texture_array_layers: 4, ..cpu.clone() };
    assert_eq!(choose_variant(&few_layers, None, 64, 4 * 16384), Tex);
    assert_eq!(choose_variant(&few_layers, None, 64, 4 * 16384 + 1), Tiled);
    // Splits: multiples of 4 positions, covering n, within the texture width.
    for &(c, n) in &[(64, 512 * 512), (64, 1), (3, 15), (512, 64), (128, 1000), (64, 16384 * 40)] {
        let (chunk, splits) = gram::tex_splits(8, c, n, 16384, 2048);
        assert!(
            chunk % 4 == 0 && chunk <= 4 * 16384 && chunk * splits >= n && chunk * (splits - 1) < n,
            "{c}x{n}: {chunk} x {splits}"
        );
    }
    assert_eq!(gram::Variant::parse("TEX"), Some(Tex));
    assert_eq!(gram::Variant::parse(" tiled"), Some(Tiled));
    assert_eq!(gram::Variant::parse("fast"), None);
}

/// The texture kernels are generated at run time: every subgroup size they accept validates.
#[test]
fn gram_generated_shaders_validate() {
    for sg in [4, 8, 16] {
        for (name, src, entry) in [
            ("forward", gram::tex_forward_source(sg), "gram_tex_forward"),
            ("backward out1", gram::tex_backward_source(sg, false), "gram_tex_backward"),
            ("backward out4", gram::tex_backward_source(sg, true), "gram_tex_backward"),
        ] {
            let name = format!("generated gram {name} sg{sg}");
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&src, &name)));
            let mut val =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            val.validate(&module).unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&src, &name)));
            assert!(module.entry_points.iter().any(|ep| ep.name == entry));
        }
    }
}

#[test]
fn mse_forward_backward() {
    let mut rng = Rng::new(6);
    let losses = Tensor::new(ctx(), [4, 1, 1], "losses").unwrap();
    for &n in &[1usize, 7, 13 * 7 * 5, 64 * 32 * 32, 300_001] {
        let x = rng.vec(n, -1.0, 1.0);
        let t = rng.vec(n, -1.0, 1.0);
        let (xd, td) = (f64s(&x), f64s(&t));
        let (tx, tt) = (upload([n, 1, 1], &x), upload([n, 1, 1], &t));
        let weight = 3.5f32;
        losses.fill(ctx(), f32::NAN);
        run(&reduce::mse_forward(ctx(), &tx, &tt, &losses, 2, weight));
        let l = read(&losses);
        assert!(l[0].is_nan() && l[1].is_nan() && l[3].is_nan(), "only slot 2 may be written");
        assert_close(&format!("mse_forward n={n}"), &l[2..3], &[weight as f64 * r::mse_forward(&xd, &td)], TOL_REDUCE);

        let dx = poisoned([n, 1, 1]);
        run(&reduce::mse_backward(ctx(), &tx, &tt, &dx, weight, false));
        let got = read(&dx);
        assert_close(
            &format!("mse_backward n={n}"),
            &got,
            &r::mse_backward(&xd, &td, weight as f64),
            TOL_ELEMENTWISE * 4.0,
        );
        if n < 100_000 {
            let f = |v: &[f64]| vec![weight as f64 * r::mse_forward(v, &td)];
            check_fd(&format!("mse_backward n={n} vs FD"), &f, &xd, &[1.0], &got, 16, &mut rng);
        }

        // Fused: the loss into its slot and the gradient (fresh, then accumulated) in one pass.
        let want_dx = r::mse_backward(&xd, &td, weight as f64);
        for accumulate in [false, true] {
            let base = rng.vec(n, -1.0, 1.0);
            let dx = if accumulate { upload([n, 1, 1], &base) } else { poisoned([n, 1, 1]) };
            losses.fill(ctx(), f32::NAN);
            run(&reduce::mse_forward_backward(ctx(), &tx, &tt, &losses, 1, weight, &dx, accumulate));
            let l = read(&losses);
            assert!(l[0].is_nan() && l[2].is_nan() && l[3].is_nan(), "only slot 1 may be written");
            assert_close(
                &format!("mse_forward_backward loss n={n}"),
                &l[1..2],
                &[weight as f64 * r::mse_forward(&xd, &td)],
                TOL_REDUCE,
            );
            let want: Vec<f64> = if accumulate {
                want_dx.iter().zip(&base).map(|(a, b)| a + *b as f64).collect()
            } else {
                want_dx.clone()
            };
            assert_close(
                &format!("mse_forward_backward dx n={n} accumulate={accumulate}"),
                &read(&dx),
                &want,
                TOL_ELEMENTWISE * 4.0,
            );
        }
    }
}

#[test]
fn mse_forward_backward_split_weighs_loss_and_gradient_apart() {
    // The loss keeps its weight, the gradient takes its own (1 under --normalize-gradients).
    let mut rng = Rng::new(16);
    let n = 13 * 7 * 5;
    let (x, t) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let (xd, td) = (f64s(&x), f64s(&t));
    let losses = Tensor::new(ctx(), [2, 1, 1], "losses").unwrap();
    losses.fill(ctx(), f32::NAN);
    let dx = poisoned([n, 1, 1]);
    let (tx, tt) = (upload([n, 1, 1], &x), upload([n, 1, 1], &t));
    run(&reduce::mse_forward_backward_split(ctx(), &tx, &tt, &losses, 1, 3.5, 1.0, &dx, false));
    assert_close(
        "mse_forward_backward_split loss",
        &read(&losses)[1..2],
        &[3.5 * r::mse_forward(&xd, &td)],
        TOL_REDUCE,
    );
    assert_close("mse_forward_backward_split dx", &read(&dx), &r::mse_backward(&xd, &td, 1.0), TOL_ELEMENTWISE * 4.0);
}

#[test]
fn add_l1_normalized() {
    // dx (+)= w g / (|g|_1 + 1e-8): the norm is tree-summed (TOL_REDUCE), then one rounding.
    let mut rng = Rng::new(17);
    for &(n, scale) in &[(1usize, 1.0f32), (7, 1e-9), (13 * 7 * 5, 1.0), (64 * 32 * 32, 1e-3), (300_001, 5.0)] {
        let g: Vec<f32> = rng.vec(n, -1.0, 1.0).iter().map(|v| v * scale).collect();
        let gd = f64s(&g);
        let tg = upload([n, 1, 1], &g);
        let weight = 2.5f32;
        for accumulate in [false, true] {
            let base = rng.vec(n, -1.0, 1.0);
            let dx = if accumulate { upload([n, 1, 1], &base) } else { poisoned([n, 1, 1]) };
            run(&reduce::add_l1_normalized(ctx(), &tg, weight, &dx, accumulate));
            let mut want = if accumulate { f64s(&base) } else { vec![0.0; n] };
            r::add_l1_normalized(&mut want, &gd, weight as f64);
            let got = read(&dx);
            assert_close(
                &format!("add_l1_normalized n={n} |g|~{scale:e} accumulate={accumulate}"),
                &got,
                &want,
                TOL_REDUCE,
            );
            if !accumulate {
                // The normalised gradient's L1 norm is the weight, but for the 1e-8 guard,
                // which shrinks it visibly only when |g|_1 is itself ~1e-8 (the 7 x 1e-9 case).
                let l1: f64 = want.iter().map(|v| v.abs()).sum();
                let norm: f64 = gd.iter().map(|v| v.abs()).sum();
                assert!((l1 - weight as f64 * norm / (norm + r::L1_EPS)).abs() < 1e-9 * l1);
                if scale < 1e-6 {
                    assert!(l1 < 0.5 * weight as f64, "the epsilon must matter for |g|_1 = {norm:e}");
                }
            }
        }
    }
    // A zero gradient stays zero (no 0/0).
    let z = upload([9, 1, 1], &[0.0; 9]);
    let dx = poisoned([9, 1, 1]);
    run(&reduce::add_l1_normalized(ctx(), &z, 3.0, &dx, false));
    assert!(read(&dx).iter().all(|v| *v == 0.0));
}

#[test]
fn tv_forward_backward() {
    let mut rng = Rng::new(7);
    let losses = Tensor::new(ctx(), [2, 1, 1], "losses").unwrap();
    for &(c, h, w) in &[(3, 7, 13), (5, 13, 7), (3, 1, 7), (3, 7, 1), (1, 1, 1), (3, 64, 80)] {
        let x = rng.vec(c * h * w, 0.0, 1.0);
        let xd = f64s(&x);
        let tx = upload([c, h, w], &x);
        let weight = 0.7f32;
        losses.fill(ctx(), f32::NAN);
        run(&reduce::tv_forward(ctx(), &tx, &losses, 1, weight));
        let l = read(&losses);
        assert!(l[0].is_nan());
        let want = weight as f64 * r::tv_forward(&xd, c, h, w);
        assert_close(&format!("tv_forward {c}x{h}x{w}"), &l[1..2], &[want], if want == 0.0 { 0.0 } else { TOL_REDUCE });

        let base = rng.vec(c * h * w, -1.0, 1.0);
        let dx = upload([c, h, w], &base);
        run(&reduce::tv_backward(ctx(), &tx, &dx, weight, true));
        let got = read(&dx);
        let g = r::tv_backward(&xd, c, h, w, weight as f64);
        let want: Vec<f64> = g.iter().zip(&base).map(|(a, b)| a + *b as f64).collect();
        assert_close(&format!("tv_backward accumulate {c}x{h}x{w}"), &got, &want, TOL_ELEMENTWISE * 4.0);
        let dx = poisoned([c, h, w]);
        run(&reduce::tv_backward(ctx(), &tx, &dx, weight, false));
        let got = read(&dx);
        if g.iter().any(|v| *v != 0.0) {
            assert_close(&format!("tv_backward {c}x{h}x{w}"), &got, &g, TOL_ELEMENTWISE * 4.0);
            let f = |v: &[f64]| vec![weight as f64 * r::tv_forward(v, c, h, w)];
            check_fd(&format!("tv_backward {c}x{h}x{w} vs FD"), &f, &xd, &[1.0], &got, 16, &mut rng);
        } else {
            assert!(got.iter().all(|v| *v == 0.0), "1x1 image: zero gradient");
        }
    }
}

#[test]
fn sum_reduction() {
    let mut rng = Rng::new(8);
    let out = Tensor::new(ctx(), [3, 1, 1], "out").unwrap();
    for &n in &[1usize, 255, 256, 257, 131_073, 1_000_003] {
        let x = rng.vec(n, 0.0, 1.0);
        out.fill(ctx(), f32::NAN);
        run(&reduce::sum_forward(ctx(), &upload([n, 1, 1], &x), &out, 0, 0.5));
        assert_close(&format!("sum_forward n={n}"), &read(&out)[..1], &[0.5 * r::sum(&f64s(&x))], TOL_REDUCE);
    }
}

#[test]
fn adam_matches_textbook_over_steps() {
    let mut rng = Rng::new(9);
    for &n in &[1usize, 7, 3 * 13 * 7, 70_001] {
        let p0 = rng.vec(n, 0.0, 1.0);
        let cfg = adam::AdamConfig { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, clamp: None };
        let param = upload([n, 1, 1], &p0);
        let grad = upload([n, 1, 1], &vec![0.0; n]);
        let opt = adam::Adam::new(ctx(), &param, &grad, cfg).unwrap();
        let (mut p, mut m, mut v) = (f64s(&p0), vec![0.0; n], vec![0.0; n]);
        let a = r::AdamParams { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
        for t in 1..=6u32 {
            let g = rng.vec(n, -1.0, 1.0);
            grad.write(ctx(), &g);
            run(&opt.op);
            r::adam_step(&mut p, &f64s(&g), &mut m, &mut v, t, a);
        }
        // Updates are ~lr per step on values ~1: the f32 state limits agreement to ~1e-6.
        assert_close(&format!("adam_step n={n} after 6 steps (params)"), &read(&param), &p, TOL_REDUCE);
        assert_close(&format!("adam_step n={n} after 6 steps (m)"), &read(&opt.m), &m, TOL_REDUCE);
        assert_close(&format!("adam_step n={n} after 6 steps (v)"), &read(&opt.v), &v, TOL_REDUCE);
    }
}

#[test]
fn adam_clamps_when_asked() {
    let param = upload([4, 1, 1], &[0.0, 0.5, 1.0, 0.99]);
    let grad = upload([4, 1, 1], &[1.0, -1.0, -1.0, -1.0]);
    let cfg = adam::AdamConfig { lr: 0.1, clamp: Some((0.0, 1.0)), ..Default::default() };
    let opt = adam::Adam::new(ctx(), &param, &grad, cfg).unwrap();
    run(&opt.op);
    let got = read(&param);
    let want = [0.0, 0.6, 1.0, 1.0];
    assert_close("adam_step clamp", &got, &want, 1e-6);
}

#[test]
fn preprocess_forward_backward() {
    // Margins: none, one pixel, wider than the image (repeated reflection), on odd shapes and
    // 1-pixel sides (every margin pixel mirrors the one row/column).
    let mut rng = Rng::new(10);
    for pre in [Preprocess::Torch, Preprocess::Caffe] {
        let t = pre.affine();
        for &(h, w, r) in
            &[(1, 1, 0), (7, 13, 0), (32, 33, 0), (7, 13, 1), (7, 13, 16), (13, 7, 5), (1, 5, 3), (2, 9, 4)]
        {
            let (ph, pw) = (h + 2 * r, w + 2 * r);
            let x = rng.vec(3 * h * w, 0.0, 1.0);
            let y = poisoned([3, ph, pw]);
            run(&image::preprocess_forward(ctx(), &t, &upload([3, h, w], &x), &y));
            let want = r::step::preprocess_forward(&f64s(&x), &t, h, w, r);
            assert_close(&format!("preprocess_forward {pre:?} {h}x{w} margin {r}"), &read(&y), &want, TOL_ELEMENTWISE);
            let dy = rng.vec(3 * ph * pw, -1.0, 1.0);
            let dx = poisoned([3, h, w]);
            run(&image::preprocess_backward(ctx(), &t, &upload([3, ph, pw], &dy), &dx));
            let got = read(&dx);
            assert_close(
                &format!("preprocess_backward {pre:?} {h}x{w} margin {r}"),
                &got,
                &r::step::preprocess_backward(&f64s(&dy), &t, h, w, r),
                TOL_ELEMENTWISE,
            );
            check_fd(
                &format!("preprocess_backward {pre:?} {h}x{w} margin {r} vs FD"),
                &|v| r::step::preprocess_forward(v, &t, h, w, r),
                &f64s(&x),
                &f64s(&dy),
                &got,
                8,
                &mut rng,
            );
        }
    }
}

#[test]
fn reflect_pad_mirrors_without_repeating_the_edge() {
    use stylize::model::{reflect, reflect_fold, reflect_pad};
    // numpy.pad([0, 1, 2, 3], 5, mode='reflect') = [1 2 3 2 1 | 0 1 2 3 | 2 1 0 1 2]
    let got: Vec<usize> = (-5..9).map(|i| reflect(i, 4)).collect();
    assert_eq!(got, [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
    assert_eq!((-3..4).map(|i| reflect(i, 1)).collect::<Vec<_>>(), [0; 7]);
    // One plane 2x3, margin 1.
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let p = reflect_pad(&x, 1, 2, 3, 1);
    #[rustfmt::skip]
    assert_eq!(p, [5.0, 4.0, 5.0, 6.0, 5.0,
                   2.0, 1.0, 2.0, 3.0, 2.0,
                   5.0, 4.0, 5.0, 6.0, 5.0,
                   2.0, 1.0, 2.0, 3.0, 2.0]);
    // The fold is the adjoint: <pad(x), g> = <x, fold(g)>.
    let mut rng = Rng::new(11);
    let (c, h, w, r) = (2, 5, 3, 7);
    let (xv, g) = (f64s(&rng.vec(c * h * w, -1.0, 1.0)), f64s(&rng.vec(c * (h + 2 * r) * (w + 2 * r), -1.0, 1.0)));
    let lhs: f64 = reflect_pad(&xv, c, h, w, r).iter().zip(&g).map(|(a, b)| a * b).sum();
    let rhs: f64 = xv.iter().zip(reflect_fold(&g, c, h, w, r)).map(|(a, b)| a * b).sum();
    assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
}
