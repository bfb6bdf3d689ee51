//! Tests of `stylize::weights`: every format against values PyTorch printed, error messages,
//! random weights, the downloader against a local HTTP server, and a bounded fuzz loop.
//! Run: `cargo test --test weights` (no network, no GPU; shared/data is optional).
//! Fixtures under tests/data/ come from tools/make_test_pth.py (needs PyTorch; see its header).

mod common;
use common::tmpdir;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use stylize::model::Preprocess;
use stylize::weights::{self, Model, ModelEvidence, WeightsError, TORCHVISION_FEATURE_INDEX, VGG19_CONVS};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join(name)
}

// ---------------------------------------------------------------------------------------------
// Values printed by tools/make_test_pth.py
// ---------------------------------------------------------------------------------------------

struct Expected {
    shape: Vec<usize>,
    sum: f64,
    sumsq: f64,
    first: Vec<f64>,
}

/// (fixture group, tensor key) -> expected statistics.
fn expected() -> HashMap<(String, String), Expected> {
    let text = fs::read_to_string(data("vgg_tiny.expected.txt")).expect("read expected values");
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        // vgg_tiny features.0.weight [64, 3, 3, 3] sum=... sumsq=... first=a b c d
        let (group, rest) = line.split_once(' ').unwrap();
        let (key, rest) = rest.split_once(' ').unwrap();
        let (shape, rest) = rest.split_once("] ").unwrap();
        let shape = shape.trim_start_matches('[').split(", ").map(|d| d.parse().unwrap()).collect();
        let field = |name: &str| rest.split(name).nth(1).unwrap().split(' ').next().unwrap().parse::<f64>().unwrap();
        let first = rest.split("first=").nth(1).unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
        out.insert(
            (group.to_string(), key.to_string()),
            Expected { shape, sum: field("sum="), sumsq: field("sumsq="), first },
        );
    }
    out
}

fn check_values(group: &str, key: &str, values: &[f32], exp: &HashMap<(String, String), Expected>) {
    let e = exp
        .get(&(group.to_string(), key.to_string()))
        .unwrap_or_else(|| panic!("no expected values for {group} {key}"));
    assert_eq!(values.len(), e.shape.iter().product::<usize>(), "{key}: element count");
    let sum: f64 = values.iter().map(|&v| v as f64).sum();
    let sumsq: f64 = values.iter().map(|&v| v as f64 * v as f64).sum();
    // torch summed the same f32 values in f64: only summation order differs.
    assert!((sum - e.sum).abs() <= 1e-9 * e.sumsq.max(1.0), "{key}: sum {sum} vs torch {}", e.sum);
    assert!((sumsq - e.sumsq).abs() <= 1e-9 * e.sumsq.max(1.0), "{key}: sumsq {sumsq} vs torch {}", e.sumsq);
    for (i, (&got, &want)) in values.iter().zip(&e.first).enumerate() {
        assert_eq!(got as f64, want, "{key}[{i}]");
    }
}

// ---------------------------------------------------------------------------------------------
// .pth
// ---------------------------------------------------------------------------------------------

#[test]
fn layer_tables_are_consistent() {
    assert_eq!(TORCHVISION_FEATURE_INDEX, [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]);
    for w in VGG19_CONVS.windows(2) {
        assert_eq!(w[0].2, w[1].1, "{} feeds {}", w[0].0, w[1].0);
    }
    assert_eq!(VGG19_CONVS[8], ("conv4_1", 256, 512));
    assert_eq!(VGG19_CONVS[15], ("conv5_4", 512, 512));
}

#[test]
fn pth_both_formats_match_torch_values() {
    let exp = expected();
    for file in ["vgg_tiny_zip.pth", "vgg_tiny_legacy.pth"] {
        let w = weights::load(&data(file), 3).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(w.layers.len(), 3);
        assert_eq!(w.convention, None, "{file}: nothing identifies this file's convention");
        assert!(w.source.ends_with(file));
        for (i, layer) in w.layers.iter().enumerate() {
            let (name, cin, cout) = VGG19_CONVS[i];
            assert_eq!((layer.name.as_str(), layer.cin, layer.cout), (name, cin, cout));
            assert_eq!(layer.weight.len(), cout * cin * 9);
            let idx = TORCHVISION_FEATURE_INDEX[i];
            check_values("vgg_tiny", &format!("features.{idx}.weight"), &layer.weight, &exp);
            check_values("vgg_tiny", &format!("features.{idx}.bias"), &layer.bias, &exp);
        }
    }
}

#[test]
fn pth_formats_agree_bit_for_bit() {
    let a = weights::load(&data("vgg_tiny_zip.pth"), 3).unwrap();
    let b = weights::load(&data("vgg_tiny_legacy.pth"), 3).unwrap();
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!(x.weight, y.weight);
        assert_eq!(x.bias, y.bias);
    }
}

#[test]
fn pth_missing_deeper_layer_is_named() {
    for file in ["vgg_tiny_zip.pth", "vgg_tiny_legacy.pth"] {
        let err = weights::load(&data(file), 4).unwrap_err();
        match &err {
            WeightsError::MissingLayer { layer, tensor, needed, available, .. } => {
                assert_eq!((*layer, tensor.as_str(), *needed, *available), ("conv2_2", "features.7.weight", 4, 3));
            }
            other => panic!("{file}: expected MissingLayer, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("conv2_2") && msg.contains(file) && msg.contains("conv1_1..conv2_1 only"), "{msg}");
    }
}

#[test]
fn pth_parameters_with_named_keys() {
    let exp = expected();
    let w = weights::load(&data("conv1_1_params.pth"), 1).unwrap();
    check_values("conv1_1_params", "conv1_1.weight", &w.layers[0].weight, &exp);
    check_values("conv1_1_params", "conv1_1.bias", &w.layers[0].bias, &exp);
    let err = weights::load(&data("conv1_1_params.pth"), 2).unwrap_err();
    assert!(matches!(&err, WeightsError::MissingLayer { layer: "conv1_2", .. }), "{err:?}");
    assert!(err.to_string().contains("conv1_2.weight"), "{err}");

    let w = weights::load(&data("conv1_1_legacy.pth"), 1).unwrap();
    check_values("conv1_1_legacy", "features.0.weight", &w.layers[0].weight, &exp);
    check_values("conv1_1_legacy", "features.0.bias", &w.layers[0].bias, &exp);
}

#[test]
fn pth_half_precision_is_converted_exactly() {
    // features.0.weight is float16 and features.0.bias bfloat16: every value is an f32 exactly,
    // so the sums and first elements match torch's upcast values to the last bit.
    let exp = expected();
    for file in ["conv1_1_half_zip.pth", "conv1_1_half_legacy.pth"] {
        let w = weights::load(&data(file), 1).unwrap_or_else(|e| panic!("{file}: {e}"));
        check_values("conv1_1_half", "features.0.weight", &w.layers[0].weight, &exp);
        check_values("conv1_1_half", "features.0.bias", &w.layers[0].bias, &exp);
        // bfloat16 keeps 8 significant bits: every bias is a multiple of its own 2^-7 ulp.
        assert!(w.layers[0].bias.iter().all(|b| b.to_bits() & 0xffff == 0), "{file}: bias not bfloat16 values");
    }
}

#[test]
fn pth_forbidden_global_is_refused() {
    for file in ["forbidden_global_legacy.pth", "forbidden_global_zip.pth"] {
        let err = weights::load(&data(file), 1).unwrap_err();
        match &err {
            WeightsError::ForbiddenGlobal { global, .. } => assert_eq!(global, "os.system"),
            other => panic!("{file}: expected ForbiddenGlobal, got {other:?}"),
        }
        assert!(err.to_string().contains("os.system"), "{err}");
        assert!(weights::info(&data(file)).is_err());
    }
}

#[test]
fn pth_truncated_files_are_errors() {
    let dir = tmpdir("truncated");
    for file in ["vgg_tiny_zip.pth", "vgg_tiny_legacy.pth"] {
        let bytes = fs::read(data(file)).unwrap();
        let n = bytes.len();
        for cut in [0, 1, 7, 40, 500, 1200, n / 3, n / 2, n - 100, n - 1] {
            let p = dir.join(format!("cut{cut}-{file}"));
            fs::write(&p, &bytes[..cut]).unwrap();
            let err = match weights::load(&p, 3) {
                Ok(_) => panic!("{file} cut at {cut} of {n} loaded"),
                Err(e) => e,
            };
            let msg = err.to_string();
            if file.contains("legacy") && cut > 1200 {
                // The storage section: the loader knows exactly what is missing.
                assert!(matches!(err, WeightsError::Truncated { .. }), "cut {cut}: {err:?}");
            }
            assert!(msg.contains("truncated") || msg.contains("empty") || msg.contains("corrupt"), "cut {cut}: {msg}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn pth_legacy_oversized_storage_header_is_rejected_before_allocation() {
    // Rewrite the first storage's element count to 2^61: the loader must compare it with the
    // bytes left in the file, not try to allocate 8 EiB.
    let bytes = fs::read(data("conv1_1_legacy.pth")).unwrap();
    // The first storage (1728 float32 = conv1_1 weight) header is the 8 bytes before its data;
    // find it as the little-endian u64 1728 followed by 6912 data bytes.
    let needle = 1728u64.to_le_bytes();
    let pos = bytes.windows(8).rposition(|w| w == needle).expect("storage header");
    let mut bad = bytes.clone();
    bad[pos..pos + 8].copy_from_slice(&(1u64 << 61).to_le_bytes());
    let dir = tmpdir("oversized");
    let p = dir.join("huge.pth");
    fs::write(&p, &bad).unwrap();
    let err = weights::load(&p, 1).unwrap_err();
    assert!(matches!(err, WeightsError::Malformed { .. } | WeightsError::Truncated { .. }), "{err:?}");
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// .npz
// ---------------------------------------------------------------------------------------------

/// One .npy member: (name without .npy, numpy descr, shape, raw data bytes).
type Member = (String, &'static str, Vec<usize>, Vec<u8>);

fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(header.len() as u16).to_le_bytes());
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn write_npz(path: &Path, members: &[Member], deflate: bool) {
    use npyz::zip::{write::FileOptions, CompressionMethod, ZipWriter};
    let mut z = ZipWriter::new(fs::File::create(path).unwrap());
    let method = if deflate { CompressionMethod::Deflated } else { CompressionMethod::Stored };
    for (name, descr, shape, data) in members {
        z.start_file(format!("{name}.npy"), FileOptions::default().compression_method(method)).unwrap();
        z.write_all(&npy_bytes(descr, shape, data)).unwrap();
    }
    z.finish().unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// VGG-shaped members for the first `n` layers with values from `weights::random(seed)`.
fn vgg_members(n: usize, torchvision_keys: bool, seed: u64) -> (Vec<Member>, weights::VggWeights) {
    let w = weights::random(seed, n);
    let mut m = Vec::new();
    for (i, layer) in w.layers.iter().enumerate() {
        let stem =
            if torchvision_keys { format!("features.{}", TORCHVISION_FEATURE_INDEX[i]) } else { layer.name.clone() };
        m.push((format!("{stem}.weight"), "<f4", vec![layer.cout, layer.cin, 3, 3], f32_bytes(&layer.weight)));
        m.push((format!("{stem}.bias"), "<f4", vec![layer.cout], f32_bytes(&layer.bias)));
    }
    (m, w)
}

#[test]
fn npz_both_key_styles_and_compression() {
    let dir = tmpdir("npz-styles");
    for (torchvision_keys, deflate) in [(true, false), (false, false), (false, true)] {
        let (mut members, w) = vgg_members(3, torchvision_keys, 42);
        members.push(("classifier.0.weight".into(), "<f4", vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])));
        let p = dir.join(format!("w-{torchvision_keys}-{deflate}.npz"));
        write_npz(&p, &members, deflate);
        let got = weights::load(&p, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.layers.len(), 3);
        for (a, b) in got.layers.iter().zip(&w.layers) {
            assert_eq!(a.weight, b.weight);
            assert_eq!(a.bias, b.bias);
        }
        let err = weights::load(&p, 4).unwrap_err();
        assert!(matches!(&err, WeightsError::MissingLayer { layer: "conv2_2", available: 3, .. }), "{err:?}");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn npz_float64_and_float16_are_converted_and_big_endian_read() {
    let dir = tmpdir("npz-f64");
    let (mut members, w) = vgg_members(1, false, 5);
    members[0] = (
        "conv1_1.weight".into(),
        "<f8",
        vec![64, 3, 3, 3],
        w.layers[0].weight.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
    );
    members[1] =
        ("conv1_1.bias".into(), ">f4", vec![64], w.layers[0].bias.iter().flat_map(|x| x.to_be_bytes()).collect());
    let p = dir.join("f64.npz");
    write_npz(&p, &members, false);
    let got = weights::load(&p, 1).unwrap();
    assert_eq!(got.layers[0].weight, w.layers[0].weight);
    assert_eq!(got.layers[0].bias, w.layers[0].bias);

    // float16, both byte orders: 1 + k/1024 and -(2^-14)(k/1024) (subnormal) are exact halves.
    let halves: Vec<(u16, f32)> = (0..64u16)
        .map(|k| {
            if k % 2 == 0 {
                (0x3c00 | k, 1.0 + k as f32 / 1024.0)
            } else {
                (0x8000 | k, -(k as f32) * 2f32.powi(-24))
            }
        })
        .collect();
    members[1] = ("conv1_1.bias".into(), "<f2", vec![64], halves.iter().flat_map(|h| h.0.to_le_bytes()).collect());
    write_npz(&p, &members, false);
    let want: Vec<f32> = halves.iter().map(|h| h.1).collect();
    assert_eq!(weights::load(&p, 1).unwrap().layers[0].bias, want);
    members[1] = ("conv1_1.bias".into(), ">f2", vec![64], halves.iter().flat_map(|h| h.0.to_be_bytes()).collect());
    write_npz(&p, &members, false);
    assert_eq!(weights::load(&p, 1).unwrap().layers[0].bias, want);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn npz_errors_name_the_tensor() {
    let dir = tmpdir("npz-errors");
    let p = dir.join("bad.npz");

    // Wrong shape.
    let (mut members, _) = vgg_members(2, true, 1);
    members[2].2 = vec![64, 64, 5, 5];
    members[2].3 = vec![0; 64 * 64 * 25 * 4];
    write_npz(&p, &members, false);
    let err = weights::load(&p, 2).unwrap_err();
    match &err {
        WeightsError::BadShape { tensor, expected, found, .. } => {
            assert_eq!(tensor, "features.2.weight");
            assert_eq!(expected, &vec![64, 64, 3, 3]);
            assert_eq!(found, &vec![64, 64, 5, 5]);
        }
        other => panic!("expected BadShape, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("features.2.weight") && msg.contains("[64, 64, 5, 5]") && msg.contains("[64, 64, 3, 3]"),
        "{msg}"
    );
    // ... but layers before it load.
    assert!(weights::load(&p, 1).is_ok());

    // Wrong dtype.
    let (mut members, _) = vgg_members(1, false, 1);
    members[1] = ("conv1_1.bias".into(), "<i4", vec![64], vec![0; 256]);
    write_npz(&p, &members, false);
    let err = weights::load(&p, 1).unwrap_err();
    assert!(matches!(&err, WeightsError::BadDtype { tensor, .. } if tensor == "conv1_1.bias"), "{err:?}");

    // Non-finite value.
    let (mut members, w) = vgg_members(1, false, 1);
    let mut vals = w.layers[0].weight.clone();
    vals[17] = f32::NAN;
    members[0].3 = f32_bytes(&vals);
    write_npz(&p, &members, false);
    let err = weights::load(&p, 1).unwrap_err();
    assert!(matches!(&err, WeightsError::NonFinite { tensor, index: 17, .. } if tensor == "conv1_1.weight"), "{err:?}");

    // Not VGG at all.
    write_npz(&p, &[("embedding".into(), "<f4", vec![2], f32_bytes(&[1.0, 2.0]))], false);
    let err = weights::load(&p, 1).unwrap_err();
    assert!(matches!(err, WeightsError::NotVgg { .. }), "{err:?}");
    assert!(err.to_string().contains("not a VGG16/VGG19 weights file"), "{err}");

    // Data shorter than the header says.
    let (mut members, _) = vgg_members(1, false, 1);
    members[0].3.truncate(100);
    write_npz(&p, &members, false);
    let err = weights::load(&p, 1).unwrap_err();
    assert!(matches!(err, WeightsError::Truncated { .. }), "{err:?}");

    // A header whose shape overflows any element count (npyz's own arithmetic would panic in
    // a debug build; the loader turns that into an error).
    let (mut members, _) = vgg_members(1, false, 1);
    members[0].2 = vec![1 << 40, 1 << 40, 3, 3];
    members[0].3 = Vec::new();
    write_npz(&p, &members, false);
    assert!(weights::load(&p, 1).is_err());

    // Not a weights file; empty file; bad `needed`.
    fs::write(&p, b"hello world").unwrap();
    assert!(matches!(weights::load(&p, 1), Err(WeightsError::UnknownFormat { .. })));
    fs::write(&p, b"").unwrap();
    assert!(matches!(weights::load(&p, 1), Err(WeightsError::UnknownFormat { .. })));
    assert!(matches!(weights::load(&data("vgg_tiny_zip.pth"), 0), Err(WeightsError::InvalidArgument(_))));
    assert!(matches!(weights::load(&data("vgg_tiny_zip.pth"), 17), Err(WeightsError::InvalidArgument(_))));
    assert!(matches!(weights::load(&dir.join("absent.pth"), 1), Err(WeightsError::Io { .. })));
    let _ = fs::remove_dir_all(&dir);
}

/// The real Caffe VGG19 conv1_1..conv3_4 weights from shared/data, if this machine has them.
fn shared_caffe_npz() -> Option<PathBuf> {
    shared_file("vgg19-caffe-conv1_1-to-conv3_4.npz")
}

fn shared_file(name: &'static str) -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = vec![];
    if let Some(d) = std::env::var_os("STYLIZE_SHARED_DATA") {
        candidates.push(PathBuf::from(d).join(name));
    }
    candidates.push(manifest.join("shared/data").join(name));
    candidates.push(manifest.join("../shared/data").join(name));
    candidates.push(PathBuf::from("/work/shared/data").join(name));
    candidates.into_iter().find(|p| p.is_file())
}

#[test]
fn shared_caffe_npz_loads_eight_layers() {
    let Some(path) = shared_caffe_npz() else {
        eprintln!("SKIP shared_caffe_npz_loads_eight_layers: shared/data/vgg19-caffe-conv1_1-to-conv3_4.npz absent");
        return;
    };
    let w = weights::load(&path, 8).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.layers.len(), 8);
    assert_eq!(w.layers[7].name, "conv3_4");
    assert_eq!(w.convention, Some(Preprocess::Caffe));
    let err = weights::load(&path, 9).unwrap_err();
    assert!(matches!(&err, WeightsError::MissingLayer { layer: "conv4_1", available: 8, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("conv4_1") && msg.contains("conv1_1..conv3_4 only") && msg.contains("relu3_4"), "{msg}");
    // Renamed so the name says nothing: the sha256 still identifies it.
    let dir = tmpdir("shared-renamed");
    let copy = dir.join("weights.npz");
    fs::copy(&path, &copy).unwrap();
    assert_eq!(weights::load(&copy, 1).unwrap().convention, Some(Preprocess::Caffe));
    let info = weights::info(&copy).unwrap();
    assert!(info.contains("f45e91dffaaf9d0b6b3aca516f6239791be70e16c513c32b7db39611e9ababdb"), "{info}");
    assert!(info.contains("caffe") && info.contains("conv1_1..conv3_4"), "{info}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn convention_by_name() {
    let dir = tmpdir("convention");
    let (members, _) = vgg_members(1, true, 3);
    for (name, want) in [
        ("my-caffe-vgg.npz", Some(Preprocess::Caffe)),
        ("vgg19-dcbb9e9d.npz", Some(Preprocess::Torch)),
        ("vgg19-d01eb7cb.npz", Some(Preprocess::Caffe)),
        ("plain.npz", None),
    ] {
        let p = dir.join(name);
        write_npz(&p, &members, false);
        assert_eq!(weights::load(&p, 1).unwrap().convention, want, "{name}");
    }
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// VGG16: recognised from names and shapes, and the errors when file and model disagree
// ---------------------------------------------------------------------------------------------

#[test]
fn vgg16_pth_both_formats_recognised_and_match_torch_values() {
    let exp = expected();
    let m = Model::Vgg16;
    for file in ["vgg16_tiny_zip.pth", "vgg16_tiny_legacy.pth"] {
        assert_eq!(weights::recognise_model(&data(file)).unwrap(), ModelEvidence::Known(m), "{file}");
        let w = weights::load(&data(file), 13).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((w.model, w.layers.len()), (m, 13));
        for (i, layer) in w.layers.iter().enumerate() {
            let (name, cin, cout) = m.convs()[i];
            assert_eq!((layer.name.as_str(), layer.cin, layer.cout), (name, cin, cout));
            let idx = m.torchvision_indices()[i];
            check_values("vgg16_tiny", &format!("features.{idx}.weight"), &layer.weight, &exp);
            check_values("vgg16_tiny", &format!("features.{idx}.bias"), &layer.bias, &exp);
        }
        assert_eq!(w.layers[12].name, "conv5_3");
        assert_eq!(weights::load_model(&data(file), m, 8).unwrap().layers[7].name, "conv4_1");
        // Forcing VGG19 on it: one line naming both models and the option that fits.
        let err = weights::load_model(&data(file), Model::Vgg19, 3).unwrap_err();
        assert!(matches!(err, WeightsError::WrongModel { wanted: Model::Vgg19, found: Model::Vgg16, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(file) && msg.contains("holds VGG16 (conv1_1..conv5_3), not VGG19"), "{msg}");
        assert!(msg.contains("--model vgg16") && !msg.contains('\n'), "{msg}");
        // More layers than VGG16 has.
        assert!(matches!(weights::load(&data(file), 14), Err(WeightsError::InvalidArgument(_))));
    }
    let s = weights::info(&data("vgg16_tiny_legacy.pth")).unwrap();
    assert!(s.contains("model:      VGG16 (13 of its 13 conv layers"), "{s}");
    assert!(
        s.contains("conv5_3") && s.contains("features.28.weight [512, 512, 3, 3]") && !s.contains("conv5_4"),
        "{s}"
    );
    assert!(s.contains("conv1_1..conv5_3 (load with needed <= 13; taps up to relu5_3)"), "{s}");
    assert!(s.contains("classifier.6.bias"), "{s}");
}

#[test]
fn model_recognised_from_npz_names_and_shapes() {
    let dir = tmpdir("npz-models");
    // (model, layers, torchvision keys) -> what the file says.
    let cases = [
        (Model::Vgg16, 8, false, ModelEvidence::Known(Model::Vgg16)), // conv4_1 after conv3_3
        (Model::Vgg16, 8, true, ModelEvidence::Known(Model::Vgg16)),  // features.17
        (Model::Vgg19, 8, false, ModelEvidence::Known(Model::Vgg19)), // conv3_4
        (Model::Vgg19, 8, true, ModelEvidence::Known(Model::Vgg19)),  // features.16
        (Model::Vgg16, 7, false, ModelEvidence::Shared(7)),           // conv1_1..conv3_3: both
    ];
    for (k, &(model, n, tv, want)) in cases.iter().enumerate() {
        let w = weights::random_for(model, 40 + k as u64, n);
        let mut members = vec![];
        for (i, layer) in w.layers.iter().enumerate() {
            let stem = if tv { format!("features.{}", model.torchvision_indices()[i]) } else { layer.name.clone() };
            members.push((
                format!("{stem}.weight"),
                "<f4",
                vec![layer.cout, layer.cin, 3, 3],
                f32_bytes(&layer.weight),
            ));
            members.push((format!("{stem}.bias"), "<f4", vec![layer.cout], f32_bytes(&layer.bias)));
        }
        let p = dir.join(format!("{}-{n}-{tv}.npz", model.name()));
        write_npz(&p, &members, false);
        assert_eq!(weights::recognise_model(&p).unwrap(), want, "{}", p.display());
        let got = weights::load(&p, n).unwrap_or_else(|e| panic!("{e}"));
        // A shared-layers file loads as VGG19 (the same layers), or as VGG16 when asked.
        let loaded_as = if let ModelEvidence::Known(m) = want { m } else { Model::Vgg19 };
        assert_eq!(got.model, loaded_as);
        for (a, b) in got.layers.iter().zip(&w.layers) {
            assert_eq!((&a.name, &a.weight, &a.bias), (&b.name, &b.weight, &b.bias));
        }
        let other = if model == Model::Vgg16 { Model::Vgg19 } else { Model::Vgg16 };
        match want {
            ModelEvidence::Known(_) => {
                let err = weights::load_model(&p, other, 1).unwrap_err();
                assert!(matches!(err, WeightsError::WrongModel { .. }), "{err:?}");
            }
            _ => assert_eq!(weights::load_model(&p, other, n).unwrap().layers.len(), n),
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn shared_vgg16_caffe_npz_loads_thirteen_layers() {
    let Some(path) = shared_file("vgg16-caffe-imagenet.npz") else {
        eprintln!("SKIP shared_vgg16_caffe_npz_loads_thirteen_layers: shared/data/vgg16-caffe-imagenet.npz absent");
        return;
    };
    assert_eq!(weights::recognise_model(&path).unwrap(), ModelEvidence::Known(Model::Vgg16));
    let w = weights::load(&path, 13).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((w.model, w.layers.len(), w.layers[12].name.as_str()), (Model::Vgg16, 13, "conv5_3"));
    assert_eq!(w.convention, Some(Preprocess::Caffe));
    let err = weights::load_model(&path, Model::Vgg19, 9).unwrap_err().to_string();
    assert!(err.contains("holds VGG16") && err.contains("--model vgg16"), "{err}");
}

#[test]
fn info_summarises_a_file() {
    let s = weights::info(&data("vgg_tiny_legacy.pth")).unwrap();
    println!("{s}");
    assert!(s.contains("legacy"), "{s}");
    assert!(s.contains("features.0.weight [64, 3, 3, 3] float32"), "{s}");
    assert!(s.contains("conv2_2") && s.contains("missing"), "{s}");
    assert!(s.contains("classifier.0.weight") && s.contains("extra.num_batches_tracked"), "{s}");
    assert!(s.contains("conv1_1..conv2_1 (load with needed <= 3"), "{s}");
    let sha = weights::sha256_file(&data("vgg_tiny_legacy.pth")).unwrap();
    assert!(s.contains(&sha));
    // Three layers both models share: the model is not known from the file.
    assert!(s.contains("model:      VGG16 or VGG19"), "{s}");
    let s = weights::info(&data("vgg_tiny_zip.pth")).unwrap();
    assert!(s.contains("zip format"), "{s}");
}

// ---------------------------------------------------------------------------------------------
// random()
// ---------------------------------------------------------------------------------------------

#[test]
fn random_is_deterministic_and_he_scaled() {
    let a = weights::random(7, 16);
    let b = weights::random(7, 16);
    let c = weights::random(8, 16);
    assert_eq!(a.source, "random(seed=7)");
    assert_eq!(a.convention, None);
    assert_eq!(a.layers.len(), 16);
    for (i, ((x, y), z)) in a.layers.iter().zip(&b.layers).zip(&c.layers).enumerate() {
        let (name, cin, cout) = VGG19_CONVS[i];
        assert_eq!((x.name.as_str(), x.cin, x.cout), (name, cin, cout));
        assert_eq!(x.weight.len(), cout * cin * 9);
        assert_eq!(x.bias.len(), cout);
        assert_eq!(x.weight, y.weight);
        assert_eq!(x.bias, y.bias);
        assert_ne!(x.weight, z.weight);
        let n = x.weight.len() as f64;
        let mean = x.weight.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (x.weight.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let want = (2.0 / (cin as f64 * 9.0)).sqrt();
        // 1728 samples for conv1_1: the std estimate is within ~5% with overwhelming odds.
        assert!((std / want - 1.0).abs() < 0.06, "{name}: std {std} vs {want}");
        assert!(mean.abs() < 0.2 * want, "{name}: mean {mean}");
        let bstd = (x.bias.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cout as f64).sqrt();
        assert!((bstd / 0.01 - 1.0).abs() < 0.3, "{name}: bias std {bstd}");
    }
    // A layer does not depend on how many follow it.
    assert_eq!(weights::random(7, 2).layers[1].weight, a.layers[1].weight);
    // Pinned bits: the generator must stay identical across platforms and releases. These were
    // also reproduced by an independent Python transcription of the same algorithm (same bits).
    let first: Vec<u32> = a.layers[0].weight[..3].iter().map(|v| v.to_bits()).collect();
    assert_eq!(first, [1042209578, 3199319587, 1041662692], "random(7) changed: {:?}", &a.layers[0].weight[..3]);
}

// ---------------------------------------------------------------------------------------------
// fetch()
// ---------------------------------------------------------------------------------------------

enum Route {
    Ok(Vec<u8>),
    /// Announce `.0` bytes, send `.1`, then close the connection.
    Short(usize, Vec<u8>),
    Status(u16),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving fixed routes, one request per connection.
fn serve(routes: Vec<(&'static str, Route)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let routes: HashMap<&'static str, Route> = routes.into_iter().collect();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            let _ = match routes.get(path.as_str()) {
                Some(Route::Ok(body)) => s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|_| s.write_all(body)),
                Some(Route::Short(announced, body)) => s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .and_then(|_| s.write_all(body)),
                Some(Route::Status(code)) => s.write_all(
                    format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                ),
                None => s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
            let _ = s.flush();
            // Dropping `s` closes the connection (mid-body for Route::Short).
        }
    });
    format!("http://{addr}")
}

fn dir_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true)
}

#[test]
fn fetch_verifies_and_never_leaves_partial_files() {
    let good = fs::read(data("conv1_1_params.pth")).unwrap();
    let sha = weights::sha256_file(&data("conv1_1_params.pth")).unwrap();
    let mut corrupt = good.clone();
    corrupt[5000] ^= 0x40;
    let base = serve(vec![
        ("/good.pth", Route::Ok(good.clone())),
        ("/corrupt.pth", Route::Ok(corrupt)),
        ("/short.pth", Route::Short(good.len(), good[..good.len() / 2].to_vec())),
        ("/gone.pth", Route::Status(404)),
        ("/broken.pth", Route::Status(500)),
    ]);
    let dir = tmpdir("fetch");

    // Good file, full hash; the destination directory is created.
    let dest = dir.join("sub").join("w.pth");
    weights::fetch(&format!("{base}/good.pth"), &dest, &sha, false).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), good);
    assert_eq!(fs::read_dir(dir.join("sub")).unwrap().count(), 1, "only the verified file remains");
    weights::load(&dest, 1).unwrap();

    // Good file, 8-digit prefix in upper case (torchvision-style names carry only a prefix).
    let dest2 = dir.join("prefix").join("w.pth");
    weights::fetch(&format!("{base}/good.pth"), &dest2, &sha[..8].to_uppercase(), false).unwrap();
    assert_eq!(fs::read(&dest2).unwrap(), good);

    for (route, what) in [("corrupt", "hash"), ("short", "short"), ("gone", "404"), ("broken", "500")] {
        let d = dir.join(route);
        let dest = d.join("w.pth");
        let err = weights::fetch(&format!("{base}/{route}.pth"), &dest, &sha, false).unwrap_err();
        let msg = err.to_string();
        match what {
            "hash" => assert!(matches!(err, WeightsError::HashMismatch { .. }), "{err:?}"),
            "404" | "500" => assert!(msg.contains(what), "{msg}"),
            _ => assert!(matches!(err, WeightsError::Download { .. }), "{err:?}"),
        }
        assert!(!dest.exists(), "{route}: {msg}");
        assert!(dir_is_empty(&d), "{route}: leftover files in {}", d.display());
    }

    // Nothing listening: connection refused is an error too.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let d = dir.join("refused");
    assert!(weights::fetch(&format!("http://127.0.0.1:{port}/x.pth"), &d.join("w.pth"), &sha, false).is_err());
    assert!(dir_is_empty(&d));
    // The default weights from there: the error says what to do instead, with the exact path.
    for (model, retry) in
        [(Model::Vgg19, "`stylize weights fetch`"), (Model::Vgg16, "`stylize weights fetch --model vgg16`")]
    {
        let url = format!("http://127.0.0.1:{port}/{}", weights::torchvision(model).file_name);
        let err = weights::default_weights_from(model, &url, &d, false).unwrap_err();
        let msg = err.to_string();
        let path = d.join(weights::torchvision(model).file_name);
        assert!(matches!(&err, WeightsError::DefaultUnavailable { path: p, .. } if *p == path), "{err:?}");
        let needles =
            [format!("download of {url} failed"), "--weights PATH".into(), path.display().to_string(), retry.into()];
        for needle in &needles {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
        assert!(!msg.contains('\n'), "one line: {msg}");
        println!("{msg}");
        assert!(dir_is_empty(&d));
    }

    // Malformed hash strings are refused before any network traffic.
    for bad in ["", "abc", "xyz12345", &"0".repeat(65)] {
        let err = weights::fetch(&format!("{base}/good.pth"), &dir.join("never.pth"), bad, false).unwrap_err();
        assert!(matches!(err, WeightsError::InvalidArgument(_)), "{bad:?}: {err:?}");
    }
    assert!(!dir.join("never.pth").exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn cache_dir_and_default_weights_use_stylize_cache() {
    // The only test that touches the environment.
    let dir = tmpdir("cache");
    std::env::set_var("STYLIZE_CACHE", &*dir);
    assert_eq!(weights::cache_dir(), dir.to_path_buf());
    // Pretend the download already happened: default_weights must not touch the network.
    let cached = dir.join("vgg19-dcbb9e9d.pth");
    fs::copy(data("vgg_tiny_legacy.pth"), &cached).unwrap();
    assert_eq!(weights::default_weights(false).unwrap(), cached);
    // Recognised by its torchvision name.
    assert_eq!(weights::load(&cached, 1).unwrap().convention, Some(Preprocess::Torch));
    std::env::remove_var("STYLIZE_CACHE");
    let d = weights::cache_dir();
    assert!(d.ends_with("stylize") || d.ends_with("stylize-cache"), "{}", d.display());
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Fuzz: mutated and truncated files never panic
// ---------------------------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(base: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut v = base.to_vec();
    let n = v.len();
    let head = n.min(1500); // pickles, zip local headers and npy headers live here
    match rng.below(7) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(n);
                v[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(head);
                v[i] = rng.next() as u8;
            }
        }
        2 => {
            // The zip central directory sits at the end.
            for _ in 0..1 + rng.below(4) {
                let i = n - 1 - rng.below(n.min(800));
                v[i] = rng.next() as u8;
            }
        }
        3 => v.truncate(rng.below(n)),
        4 => {
            // Extreme integers over a length or size field.
            let i = rng.below(head.saturating_sub(8));
            let fill: [u8; 8] = match rng.below(4) {
                0 => [0xff; 8],
                1 => [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                2 => [0; 8],
                _ => (rng.next()).to_le_bytes(),
            };
            let w = [1, 2, 4, 8][rng.below(4)];
            v[i..i + w].copy_from_slice(&fill[..w]);
        }
        5 => {
            let i = rng.below(head);
            let len = rng.below(32).min(n - i);
            v.drain(i..i + len);
        }
        _ => {
            let i = rng.below(head);
            let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
            v.splice(i..i, extra);
        }
    }
    v
}

#[test]
fn fuzz_load_never_panics() {
    let dir = tmpdir("fuzz");
    let npz = dir.join("seed.npz");
    let (members, _) = vgg_members(1, false, 9);
    write_npz(&npz, &members, false);
    let npz_deflated = dir.join("seed-deflated.npz");
    write_npz(&npz_deflated, &members, true);
    let seeds: Vec<(Vec<u8>, usize, usize)> = vec![
        (fs::read(data("conv1_1_params.pth")).unwrap(), 1, 600),
        (fs::read(data("conv1_1_legacy.pth")).unwrap(), 1, 600),
        (fs::read(&npz).unwrap(), 1, 500),
        (fs::read(&npz_deflated).unwrap(), 1, 300),
        (fs::read(data("vgg_tiny_zip.pth")).unwrap(), 3, 100),
        (fs::read(data("vgg_tiny_legacy.pth")).unwrap(), 3, 100),
    ];
    // STYLIZE_FUZZ_SCALE=N runs N times as many iterations; STYLIZE_FUZZ_SEED picks another seed.
    let scale: usize = std::env::var("STYLIZE_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seed: u64 =
        std::env::var("STYLIZE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_1234_ABCD_0001);
    let mut rng = XorShift(seed | 1);
    let (mut total, mut ok, mut panics) = (0usize, 0usize, Vec::new());
    let start = std::time::Instant::now();
    for (s, (base, needed, iters)) in seeds.iter().enumerate() {
        for it in 0..*iters * scale {
            let bytes = mutate(base, &mut rng);
            let p = dir.join(format!("fuzz-{s}.bin"));
            fs::write(&p, &bytes).unwrap();
            let with_info = it % 8 == 0;
            let result = std::panic::catch_unwind(|| {
                let loaded = weights::load(&p, *needed).is_ok();
                if with_info {
                    let _ = weights::info(&p);
                }
                loaded
            });
            total += 1;
            match result {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(_) => {
                    let keep = dir.join(format!("panic-{s}-{it}.bin"));
                    let _ = fs::write(&keep, &bytes);
                    panics.push(keep);
                }
            }
        }
    }
    println!(
        "fuzz: {total} mutated files, {ok} still loaded, {} errors, {} panics, {:.1} s",
        total - ok - panics.len(),
        panics.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(panics.is_empty(), "load() panicked on: {panics:?}");
    let _ = fs::remove_dir_all(&dir);
}
