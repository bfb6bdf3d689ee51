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
    let o =
        KernelOverrides::parse([("conv", "wino4"), ("gram", " Tiled "), ("wino_tune", "16, 2"), ("wino4_tune", "")])
            .unwrap();
    assert_eq!(
        o,
        KernelOverrides {
            conv: Some(Variant::Wino4),
            gram: Some(Variant::Tiled),
            wino_tune: Some((16, 2)),
            wino4_tune: None
        }
    );
    assert_eq!(KernelOverrides::parse([("conv", "")]).unwrap(), KernelOverrides::default());
    let e = KernelOverrides::parse([("conv", "fast")]).unwrap_err();
    assert!(e.contains("\"fast\" is none of `tiled`, `tex`, `wino`, `wino4`"), "{e}");
    let e = KernelOverrides::parse([("wino4_tune", "0,4")]).unwrap_err();
    assert!(e.contains("CHANNELS,TILES"), "{e}");
    assert!(KernelOverrides::parse([("wino_tune", "16")]).is_err());
    assert!(KernelOverrides::parse([("conv2", "tex")]).unwrap_err().contains("unknown kernel override"));
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
