//! Every shader parses and validates with naga (no adapter needed), so a WGSL error fails
//! `cargo test` with the file and line; and every entry point a Rust wrapper names exists.

#[test]
fn all_shaders_validate() {
    for (file, src) in stylize::shaders::ALL {
        let module =
            naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(src, file)));
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
        v.validate(&module).unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(src, file)));
    }
}

#[test]
fn wrapper_entry_points_exist() {
    // Scans src/gpu/*.rs for ctx.dispatch(FILE, "entry", ...) and checks the entry exists.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/gpu");
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(file) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("const FILE: &str = \""))
            .map(|s| s.trim_end_matches("\";").to_string())
        else {
            continue;
        };
        let src = stylize::shaders::source(&file);
        let module = naga::front::wgsl::parse_str(src).unwrap();
        for part in text.split("ctx.dispatch(FILE, \"").skip(1) {
            let entry = &part[..part.find('"').unwrap()];
            assert!(
                module.entry_points.iter().any(|ep| ep.name == entry),
                "{}: entry point {entry} not found in {file}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} entry points found");
}

/// The conv3x3 texture kernels are generated at run time (gpu::conv::kernel_source): validate every
/// configuration the wrappers can pick, for each subgroup size they accept.
#[test]
fn generated_conv_shaders_validate() {
    use stylize::gpu::conv;
    let mut n = 0;
    for sg in [4, 8, 16, 32, 64] {
        for cfg in conv::tex_configs(sg) {
            let src = conv::kernel_source(&cfg);
            let name = format!("generated {cfg:?}");
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&src, &name)));
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            v.validate(&module).unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&src, &name)));
            let entry = if cfg.wino > 0 { "conv3x3_wino" } else { "conv3x3_tex" };
            assert!(module.entry_points.iter().any(|ep| ep.name == entry), "{entry} in {name}");
            n += 1;
        }
    }
    assert!(n >= 5);
    // The texture variant's fixed kernels, by the entry points gpu::conv names.
    for (file, entry) in [
        ("conv3x3_tex_pack.wgsl", "conv3x3_tex_pack_input"),
        ("conv3x3_tex_pack4.wgsl", "conv3x3_tex_pack_input4"),
        ("conv3x3_tex_weights.wgsl", "conv3x3_tex_pack_weights"),
        ("conv3x3_tex_weights.wgsl", "conv3x3_wino_pack_weights"),
        ("conv3x3_tex_weights.wgsl", "conv3x3_wino4_pack_weights"),
    ] {
        let module = naga::front::wgsl::parse_str(stylize::shaders::source(file)).unwrap();
        assert!(module.entry_points.iter().any(|ep| ep.name == entry), "{entry} not in {file}");
    }
}
