//! Describing a weights file: the `info` summary and recognising which preprocessing it expects.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::Path;

use super::catalogue::Catalogue;
use super::error::{io_err, Result};
use super::plan::{key_style, matching_layers, recognise_in};
use super::{sha256_file, Model, ModelEvidence, Preprocess};

/// Human summary for `stylize weights info PATH`: format, model, layers found with shapes,
/// convention, sha256. Reads metadata only (plus one hashing pass over the file).
pub fn info(path: &Path) -> Result<String> {
    use fmt::Write as _;
    let cat = Catalogue::open(path)?;
    let size = fs::metadata(path).map_err(io_err(path, "read metadata of"))?.len();
    let sha = sha256_file(path)?;
    let (convention, reason) = recognise_convention_with_hash(path, Some(&sha));
    let mut s = String::new();
    let _ = writeln!(s, "file:       {} ({:.1} MB)", path.display(), size as f64 / 1e6);
    let _ = writeln!(s, "format:     {}", cat.format.describe());
    let _ = writeln!(s, "sha256:     {sha}");
    let _ = writeln!(
        s,
        "convention: {} ({reason})",
        match convention {
            Some(Preprocess::Torch) => "torch: RGB 0..1, ImageNet mean/std",
            Some(Preprocess::Caffe) => "caffe: BGR 0..255 minus mean",
            None => "unknown",
        }
    );
    let style = key_style(&cat);
    // The model decides which tensors are listed; a file that is not VGG lists VGG19's.
    let (model, model_line) = match (style, recognise_in(&cat)) {
        (Some(st), Ok(ModelEvidence::Known(m))) => {
            let n = matching_layers(&cat, st, m);
            (m, format!("{m} ({n} of its {} conv layers, by tensor names and shapes)", m.convs().len()))
        }
        (Some(_), Ok(ModelEvidence::Shared(n))) => (
            Model::Vgg19,
            format!(
                "VGG16 or VGG19: the file holds only the {n} leading conv layers both share (read as VGG19 \
                 unless --model vgg16 or a pool3 tap asks for VGG16)"
            ),
        ),
        _ => (Model::Vgg19, "unknown (no VGG conv1_1 tensor)".to_string()),
    };
    let _ = writeln!(s, "model:      {model_line}");
    let mut used = HashSet::new();
    let mut usable = 0;
    let _ = writeln!(s, "layers:");
    for (i, &(name, cin, cout)) in model.convs().iter().enumerate() {
        let mut line = format!("  {name:<8}");
        let mut ok = style.is_some();
        let mut missing = 0;
        for (suffix, expected) in [("weight", vec![cout, cin, 3, 3]), ("bias", vec![cout])] {
            let key = style.map(|st| st.key(model, i, suffix)).unwrap_or_default();
            match cat.find(&key) {
                Some(e) => {
                    used.insert(key.clone());
                    let good = e.shape.iter().map(|&d| d as usize).eq(expected.iter().copied()) && e.readable;
                    ok &= good;
                    let verdict = if good { String::new() } else { format!(" (expected {expected:?} float32)") };
                    let _ = write!(line, " {key} {:?} {}{verdict}", e.shape, e.dtype);
                }
                None => {
                    ok = false;
                    missing += 1;
                    let _ = write!(line, " {} missing", if key.is_empty() { suffix.to_string() } else { key });
                }
            }
        }
        if ok && usable == i {
            usable += 1;
        }
        if missing == 2 {
            line = format!("  {name:<8} missing");
        }
        let _ = writeln!(s, "{line}");
    }
    let ignored: Vec<&str> = cat.entries.iter().map(|e| e.key.as_str()).filter(|k| !used.contains(*k)).collect();
    let _ = writeln!(
        s,
        "ignored:    {} other tensor(s){}{}",
        ignored.len(),
        if ignored.is_empty() { "" } else { ": " },
        preview(&ignored, 6)
    );
    let _ = write!(
        s,
        "usable:     {}",
        if usable == 0 {
            "no layers (not VGG16/VGG19 weights?)".to_string()
        } else {
            format!(
                "conv1_1..{} (load with needed <= {usable}; taps up to {})",
                model.convs()[usable - 1].0,
                model.convs()[usable - 1].0.replace("conv", "relu")
            )
        }
    );
    Ok(s)
}

fn preview(items: &[&str], n: usize) -> String {
    let mut s = items.iter().take(n).copied().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        s.push_str(&format!(", ... ({} more)", items.len() - n));
    }
    s
}

/// Weight files whose convention is known, by SHA-256 (full digest or torch-hub style prefix).
const KNOWN_FILES: [(&str, Preprocess, &str); 4] = [
    (
        "f45e91dffaaf9d0b6b3aca516f6239791be70e16c513c32b7db39611e9ababdb",
        Preprocess::Caffe,
        "the Caffe VGG19 conv1_1..conv3_4 npz from shared/data",
    ),
    (
        "8b61505a1068f04bdb12a0c9f168554b59070b8d184bffeb3b86ba3c0de0af73",
        Preprocess::Caffe,
        "the Caffe VGG16 conv1_1..conv5_3 npz from shared/data",
    ),
    ("dcbb9e9d", Preprocess::Torch, "torchvision's vgg19-dcbb9e9d.pth"),
    ("397923af", Preprocess::Torch, "torchvision's vgg16-397923af.pth"),
];

/// Which preprocessing a weights file expects, and why we think so (see weights/README.md):
/// 1. the file name: contains "caffe" or jcjohnson's Caffe conversion `vgg19-d01eb7cb`
///    => Caffe; contains torchvision's `vgg19-dcbb9e9d` or `vgg16-397923af` => Torch;
/// 2. otherwise the file's SHA-256 against `KNOWN_FILES` (costs one read of the file);
/// 3. otherwise `None`: the caller picks (torch is the usual default).
pub fn recognise_convention(path: &Path) -> Result<(Option<Preprocess>, String)> {
    if let (Some(c), reason) = recognise_by_name(path) {
        return Ok((Some(c), reason));
    }
    let sha = sha256_file(path)?;
    Ok(recognise_convention_with_hash(path, Some(&sha)))
}

fn recognise_by_name(path: &Path) -> (Option<Preprocess>, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.contains("caffe") {
        (Some(Preprocess::Caffe), "file name contains \"caffe\"".into())
    } else if name.contains("vgg19-d01eb7cb") {
        (Some(Preprocess::Caffe), "file name is jcjohnson's Caffe conversion vgg19-d01eb7cb".into())
    } else if name.contains("vgg19-dcbb9e9d") {
        (Some(Preprocess::Torch), "file name is torchvision's vgg19-dcbb9e9d".into())
    } else if name.contains("vgg16-397923af") {
        (Some(Preprocess::Torch), "file name is torchvision's vgg16-397923af".into())
    } else {
        (None, String::new())
    }
}

fn recognise_convention_with_hash(path: &Path, sha: Option<&str>) -> (Option<Preprocess>, String) {
    if let (Some(c), reason) = recognise_by_name(path) {
        return (Some(c), reason);
    }
    if let Some(sha) = sha {
        for (known, conv, what) in KNOWN_FILES {
            if sha.starts_with(known) {
                return (Some(conv), format!("sha256 identifies {what}"));
            }
        }
    }
    (None, "neither the file name nor the sha256 is known; choose the preprocessing yourself".into())
}
