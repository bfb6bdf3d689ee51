//! The typed kernel boundary through a real context: bindings by name are checked at dispatch,
//! and kernel overrides parse from their string forms with clear errors.

mod common;
use common::ctx;
use stylize::gpu::{relu::ReluParams, KernelOverrides, Tensor, Variant};

#[test]
#[should_panic(expected = "relu.wgsl:relu_forward: binds \"Y\", which this entry point does not use")]
fn a_misspelt_binding_panics_at_dispatch() {
    let x = Tensor::new(ctx(), [4, 1, 1], "x").unwrap();
    let p = ReluParams { n: 4, gx: 1, ..Default::default() };
    ctx().dispatch("relu.wgsl", "relu_forward", &p, &[("A", &x), ("Y", &x)], (1, 1, 1));
}

#[test]
#[should_panic(expected = "relu.wgsl:relu_backward: no resource given for \"G\"")]
fn a_missing_binding_panics_at_dispatch() {
    let x = Tensor::new(ctx(), [4, 1, 1], "x").unwrap();
    let y = Tensor::new(ctx(), [4, 1, 1], "y").unwrap();
    let p = ReluParams { n: 4, gx: 1, ..Default::default() };
    ctx().dispatch("relu.wgsl", "relu_backward", &p, &[("A", &x), ("Out", &y)], (1, 1, 1));
}

#[test]
#[should_panic(expected = "ReluParams does not match WGSL struct Params")]
fn a_uniform_struct_of_another_kernel_panics_at_dispatch() {
    let x = Tensor::new(ctx(), [4, 1, 1], "x").unwrap();
    let q = ReluParams::default();
    // tile.wgsl's Params has 8 fields; ReluParams 4.
    ctx().dispatch("tile.wgsl", "mask_rect", &q, &[("R", &x), ("X", &x), ("Y", &x)], (1, 1, 1));
}

#[test]
fn overrides_parse_from_strings() {
    let o = KernelOverrides::parse([
        ("conv", "wino4"),
        ("gram", " Tiled "),
        ("wino_tune", "16, 2"),
        ("wino4_tune", ""),
        ("shader_checks", "1"),
    ])
    .unwrap();
    assert_eq!(
        o,
        KernelOverrides {
            conv: Some(Variant::Wino4),
            gram: Some(Variant::Tiled),
            wino_tune: Some((16, 2)),
            wino4_tune: None,
            shader_checks: true,
        }
    );
    assert_eq!(KernelOverrides::parse([("conv", "")]).unwrap(), KernelOverrides::default());
    let e = KernelOverrides::parse([("conv", "fast")]).unwrap_err();
    assert!(e.contains("\"fast\" is none of `tiled`, `tex`, `wino`, `wino4`"), "{e}");
    let e = KernelOverrides::parse([("wino4_tune", "0,4")]).unwrap_err();
    assert!(e.contains("CHANNELS,TILES"), "{e}");
    assert!(KernelOverrides::parse([("wino_tune", "16")]).is_err());
    assert!(KernelOverrides::parse([("conv2", "tex")]).unwrap_err().contains("unknown kernel override"));
    assert!(KernelOverrides::parse([("shader_checks", "yes")]).unwrap_err().contains("neither 1 nor 0"));
    assert!(!KernelOverrides::parse([("shader_checks", "0")]).unwrap().shader_checks);
}

/// Kernels are built without wgpu's runtime checks unless asked: both builds of the GEMM Gram
/// (index clamps, loop counters and division guards or none) give its f64 reference's values on
/// a 130-channel map (three 64-channel tiles a side, the last of 2: the edge clamps would act
/// if an index strayed).
#[test]
fn kernels_built_with_and_without_runtime_checks_agree() {
    let adapter = std::env::var("STYLIZE_ADAPTER").unwrap_or_default();
    let (c, h, w) = (130, 9, 7);
    let mut rng = common::Rng::new(31);
    let f = rng.vec(c * h * w, -1.0, 1.0);
    let want = stylize::reference::gram_forward(&f.iter().map(|&v| v as f64).collect::<Vec<_>>(), c, h * w);
    for checks in [false, true] {
        let mut ctx = stylize::gpu::Context::new(&stylize::gpu::AdapterChoice::parse(&adapter)).unwrap();
        ctx.set_overrides(KernelOverrides { shader_checks: checks, ..Default::default() });
        let tf = Tensor::from_slice(&ctx, [c, h, w], &f, "f").unwrap();
        let g = Tensor::from_slice(&ctx, [c, c, 1], &vec![f32::NAN; c * c], "g").unwrap();
        let op = stylize::gpu::gram::gram_forward_scaled_with(&ctx, Variant::GEMM, &tf, &g, 1.0, false);
        ctx.run(&[&op]).unwrap();
        let v = g.read(&ctx).unwrap();
        let scale = (c * h * w) as f64;
        for (i, (&a, &b)) in v.iter().zip(&want).enumerate() {
            assert!(
                (a as f64 - b * scale).abs() <= 1e-5 * (1.0 + (b * scale).abs()),
                "checks {checks}: G[{i}] {a} vs {}",
                b * scale
            );
        }
    }
}

#[test]
fn a_context_honours_its_overrides() {
    let adapter = std::env::var("STYLIZE_ADAPTER").unwrap_or_default();
    let mut c = stylize::gpu::Context::new(&stylize::gpu::AdapterChoice::parse(&adapter)).unwrap();
    assert_eq!(c.overrides(), &KernelOverrides::default());
    let default = stylize::gpu::conv::select_variant(&c, 64, 64, 32, 32);
    let forced = if default == Variant::Tiled { Variant::Tex } else { Variant::Tiled };
    c.set_overrides(KernelOverrides { conv: Some(forced), gram: Some(Variant::Tiled), ..Default::default() });
    let caps = stylize::gpu::conv::TexCaps::of(&c);
    // Where the texture kernels cannot run a forced `tex` falls back, as before.
    let want = stylize::gpu::conv::choose_variant(&caps, Some(forced), 64, 64, 32, 32);
    assert_eq!(stylize::gpu::conv::select_variant(&c, 64, 64, 32, 32), want);
    assert_eq!(stylize::gpu::gram::select_variant(&c, 64, 1024), Variant::Tiled);
}
