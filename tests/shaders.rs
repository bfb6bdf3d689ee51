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

/// Every Rust uniform struct matches its WGSL twin: size, and each field's name, offset and
/// scalar type (files of shaders/ and every generated source the wrappers can select).
#[test]
fn uniform_structs_match_wgsl() {
    use stylize::gpu::kernel::{check_uniform, uniform_struct};
    let table = stylize::shaders::uniforms();
    for (file, src) in stylize::shaders::ALL {
        let wgsl = uniform_struct(src);
        let rust = table.iter().find(|(f, _)| f == file).map(|(_, l)| l);
        match (wgsl, rust) {
            (Some(w), Some(r)) => check_uniform(r, &w).unwrap_or_else(|e| panic!("{file}: {e}")),
            (None, None) => {}
            (w, r) => panic!("{file}: WGSL uniform {w:?} but Rust struct {r:?}"),
        }
    }
    assert!(table.iter().all(|(f, _)| stylize::shaders::ALL.iter().any(|(g, _)| g == f)), "a file not in ALL");
    let generated = stylize::shaders::generated();
    assert!(generated.len() >= 10, "only {} generated sources", generated.len());
    for g in &generated {
        // The declarations precede the first entry point: parse only them (the unrolled bodies
        // take long to parse and hold no uniform).
        let head = &g.source[..g.source.find("@compute").unwrap_or(g.source.len())];
        let w = uniform_struct(head).unwrap_or_else(|| panic!("{}: no uniform", g.key));
        check_uniform(&g.uniform, &w).unwrap_or_else(|e| panic!("{}: {e}", g.key));
    }
    // And the check itself catches a mismatch.
    let conv = table.iter().find(|(f, _)| *f == "conv3x3.wgsl").unwrap().1;
    let reduce = uniform_struct(stylize::shaders::source("reduce.wgsl")).unwrap();
    let err = check_uniform(&conv, &reduce).unwrap_err();
    assert!(err.contains("ConvParams") && err.contains("field cin"), "{err}");
}

/// Each entry point binds only the globals it uses: the per-entry layouts leave out what an entry
/// point does not touch (so no wrapper binds a placeholder).
#[test]
fn entry_layouts_hold_only_used_globals() {
    use stylize::gpu::kernel::entry_layout;
    let names = |file: &str, entry: &str| -> Vec<String> {
        let l = entry_layout(stylize::shaders::source(file), file, entry);
        let mut v: Vec<String> = l.resources.iter().map(|(n, _)| n.clone()).collect();
        if let Some((u, _, _)) = l.uniform {
            v.insert(0, u);
        }
        v
    };
    assert_eq!(names("pool.wgsl", "avgpool2x2_backward"), ["P", "G", "Out"]);
    assert_eq!(names("pool.wgsl", "maxpool2x2_backward"), ["P", "X", "G", "Out"]);
    assert_eq!(names("conv3x3.wgsl", "conv3x3_forward"), ["P", "X", "Wt", "B", "Y"]);
    assert_eq!(names("conv3x3.wgsl", "conv3x3_backward_input"), ["P", "X", "Wt", "Y"]);
    assert_eq!(names("conv3x3.wgsl", "conv3x3_backward_input_masked"), ["P", "X", "Wt", "M", "Y"]);
    assert_eq!(names("reduce.wgsl", "reduce_finish"), ["P", "X", "Out"]);
    assert_eq!(names("lbfgs.wgsl", "lbfgs_scalar"), ["P", "S"]);
    assert_eq!(names("conv3x3_tex_weights.wgsl", "conv3x3_tex_pack_weights"), ["P", "Wt", "Wp"]);
}

fn resolve(entry: &str, given: &[&str]) -> Vec<usize> {
    let l = stylize::gpu::kernel::entry_layout(stylize::shaders::source("relu.wgsl"), "relu.wgsl", entry);
    l.resolve(&format!("relu.wgsl:{entry}"), given)
}

#[test]
fn bindings_resolve_by_name_in_any_order() {
    // Layout order is by binding (A, G, Out); the result indexes into the given names.
    assert_eq!(resolve("relu_backward", &["Out", "A", "G"]), [1, 2, 0]);
}

#[test]
#[should_panic(expected = "relu.wgsl:relu_backward: no resource given for \"G\"")]
fn a_missing_binding_is_an_error() {
    resolve("relu_backward", &["A", "Out"]);
}

#[test]
#[should_panic(expected = "relu.wgsl:relu_forward: binds \"G\", which this entry point does not use")]
fn an_extra_binding_is_an_error() {
    resolve("relu_forward", &["A", "G", "Out"]);
}

#[test]
#[should_panic(expected = "relu.wgsl:relu_forward: binds \"Y\", which this entry point does not use")]
fn a_misspelt_binding_is_an_error() {
    resolve("relu_forward", &["A", "Y"]);
}

#[test]
#[should_panic(expected = "binding \"A\" given twice")]
fn a_binding_given_twice_is_an_error() {
    resolve("relu_forward", &["A", "A", "Out"]);
}
