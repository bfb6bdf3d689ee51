//! VGG16 and VGG19 convolution weights: reading them from disk (recognising the model),
//! downloading them, or making random ones.
//!
//! Formats read (see weights/README.md for the details and the convention rule):
//! * PyTorch `.pth`, zip format (PyTorch >= 1.6): `<prefix>/data.pkl` + `<prefix>/data/<key>`.
//! * PyTorch `.pth`, legacy stream (`_use_new_zipfile_serialization=False`, and torchvision's
//!   own `vgg16-397923af.pth` and `vgg19-dcbb9e9d.pth`): magic, protocol, sys-info and state-dict pickles, the pickled
//!   list of storage keys, then each storage's raw bytes behind an 8-byte element count.
//! * NumPy `.npz` with `features.N.weight` or `conv1_1.weight` style names.
//!
//! Pickles are never executed: a small stack machine understands the opcodes `torch.save`
//! emits and only a short allow-list of globals (OrderedDict, torch's tensor/parameter
//! rebuild functions, storage and legacy tensor types, `torch.Size`). Every size a file
//! declares is checked against what the file can hold before anything is allocated, so a
//! truncated or hostile file gives an error, never a panic or a huge allocation.

mod catalogue;
mod download;
mod error;
mod inspect;
mod legacy;
mod npz;
mod pickle;
mod pickle_torch;
mod pickle_values;
mod plan;
mod rng;
mod tensor;
mod zipfile;

use crate::model::{ConvLayer, Preprocess};
use std::path::Path;

pub use crate::model::{Model, ModelEvidence};
pub use download::{cache_dir, default_weights, default_weights_from, default_weights_of, fetch, sha256_file};
pub use error::WeightsError;
pub use inspect::{info, recognise_convention};

use catalogue::Catalogue;
use error::Result;
use plan::{check_needed, plan_layers, recognise_in};
use rng::Normal;

/// VGG16's 13 conv layers in order: (name, cin, cout).
pub use crate::model::VGG16_CONVS;
/// VGG19's 16 conv layers in order: (name, cin, cout).
pub use crate::model::VGG19_CONVS;

/// torchvision `features.N` index of each VGG19 conv layer (ReLUs and pools take the other
/// indices); VGG16's: [`Model::torchvision_indices`].
pub const TORCHVISION_FEATURE_INDEX: [usize; 16] = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34];

/// Where torchvision's ImageNet VGG19 weights live (legacy torch.save format, 548 MB).
pub const TORCHVISION_URL: &str = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth";

/// SHA-256 of `vgg19-dcbb9e9d.pth`. torchvision names its files after the first 8 hex digits of
/// the SHA-256, and the full digest could not be obtained offline, so this is that prefix;
/// [`fetch`] accepts a full digest or any prefix of at least 8 hex digits.
pub const TORCHVISION_SHA256: &str = "dcbb9e9d";

/// File name under [`cache_dir`] of the default weights.
pub const TORCHVISION_FILE_NAME: &str = "vgg19-dcbb9e9d.pth";

/// torchvision's ImageNet VGG16 weights (legacy torch.save format, 553,433,881 bytes).
pub const TORCHVISION_VGG16_URL: &str = "https://download.pytorch.org/models/vgg16-397923af.pth";

/// SHA-256 of `vgg16-397923af.pth`: the full digest as published by several independent
/// projects that verify this download (checked to start with the 8 hex digits torchvision puts
/// in the file name).
pub const TORCHVISION_VGG16_SHA256: &str = "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0";

/// File name under [`cache_dir`] of torchvision's VGG16 weights.
pub const TORCHVISION_VGG16_FILE_NAME: &str = "vgg16-397923af.pth";

/// One of torchvision's ImageNet weight files: where it lives and how to check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TorchvisionFile {
    /// The network it holds.
    pub model: Model,
    /// Download address.
    pub url: &'static str,
    /// SHA-256, full or the 8-digit prefix in the file name.
    pub sha256: &'static str,
    /// File name (torchvision's, with the hash prefix).
    pub file_name: &'static str,
    /// Size in MB (for the download message).
    pub size_mb: u32,
}

/// torchvision's ImageNet weights of `model`.
pub fn torchvision(model: Model) -> TorchvisionFile {
    match model {
        Model::Vgg16 => TorchvisionFile {
            model,
            url: TORCHVISION_VGG16_URL,
            sha256: TORCHVISION_VGG16_SHA256,
            file_name: TORCHVISION_VGG16_FILE_NAME,
            size_mb: 553,
        },
        Model::Vgg19 => TorchvisionFile {
            model,
            url: TORCHVISION_URL,
            sha256: TORCHVISION_SHA256,
            file_name: TORCHVISION_FILE_NAME,
            size_mb: 548,
        },
    }
}

/// The first `needed` conv layers of VGG16 or VGG19.
#[derive(Clone, Debug)]
pub struct VggWeights {
    /// The network the layers belong to.
    pub model: Model,
    /// conv1_1 .. in order, exactly `needed` of them.
    pub layers: Vec<ConvLayer>,
    /// Recognised from the file (see [`recognise_convention`]); `None` if unknown.
    pub convention: Option<Preprocess>,
    /// The path the weights came from, or `random(seed=N)`.
    pub source: String,
}

/// Load `needed` conv layers (conv1_1 onwards) from a .pth (both torch.save formats) or .npz
/// file, of the model the file holds ([`recognise_model`]; VGG19 for a truncated file both
/// models share). Other tensors (classifier.*, deeper layers) are ignored.
pub fn load(path: &Path, needed: usize) -> Result<VggWeights> {
    let model = match recognise_model(path)? {
        ModelEvidence::Known(m) => m,
        ModelEvidence::Shared(_) | ModelEvidence::Any => Model::Vgg19,
    };
    load_model(path, model, needed)
}

/// Which model a weights file holds, from its tensors' names and shapes (metadata only): the
/// model whose table matches more leading layers (`features.N` or `convB_L` keys with the
/// table's shapes); [`ModelEvidence::Shared`] when the file holds only layers both models share
/// (conv1_1..conv3_3 or fewer). An error when the file holds no VGG conv1_1.
pub fn recognise_model(path: &Path) -> Result<ModelEvidence> {
    recognise_in(&Catalogue::open(path)?)
}

/// Load `needed` conv layers of `model` (conv1_1 .. `model.convs()[needed-1]`), as [`load`];
/// an error naming the file's model when it holds the other one.
pub fn load_model(path: &Path, model: Model, needed: usize) -> Result<VggWeights> {
    check_needed(model, needed)?;
    let mut cat = Catalogue::open(path)?;
    if let ModelEvidence::Known(found) = recognise_in(&cat)? {
        if found != model {
            return Err(WeightsError::WrongModel { path: path.to_path_buf(), wanted: model, found });
        }
    }
    let plan = plan_layers(&cat, model, needed)?;
    let wanted: Vec<usize> = plan.iter().flat_map(|&(w, b)| [w, b]).collect();
    let mut data = cat.read(&wanted)?;
    let mut layers = Vec::with_capacity(needed);
    for (i, &(wi, bi)) in plan.iter().enumerate() {
        let (name, cin, cout) = model.convs()[i];
        let weight = std::mem::take(&mut data[2 * i]);
        let bias = std::mem::take(&mut data[2 * i + 1]);
        for (tensor, values) in [(&cat.entries[wi].key, &weight), (&cat.entries[bi].key, &bias)] {
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(WeightsError::NonFinite {
                    path: path.to_path_buf(),
                    tensor: tensor.clone(),
                    index,
                    value: values[index],
                });
            }
        }
        layers.push(ConvLayer { name: name.to_string(), cin, cout, weight, bias });
    }
    let (convention, _) = recognise_convention(path)?;
    Ok(VggWeights { model, layers, convention, source: path.display().to_string() })
}

/// Seeded random weights with VGG19's shapes: see [`random_for`].
pub fn random(seed: u64, needed: usize) -> VggWeights {
    random_for(Model::Vgg19, seed, needed)
}

/// Seeded random weights with `model`'s shapes: He-normal weights (std sqrt(2/(cin*9))) and
/// N(0, 0.01) biases. Bit-identical on every platform: splitmix64 plus a Box-Muller transform
/// built from IEEE basic operations only (no libm calls, whose last bits vary by platform).
/// Layer i does not depend on `needed` (nor, where the shapes agree, conv1_1..conv3_3, on the
/// model). Panics only if `needed` is outside 1..=(the model's layer count).
pub fn random_for(model: Model, seed: u64, needed: usize) -> VggWeights {
    let convs = model.convs();
    assert!((1..=convs.len()).contains(&needed), "random(): needed must be 1..={}, got {needed}", convs.len());
    let layers = convs[..needed]
        .iter()
        .enumerate()
        .map(|(i, &(name, cin, cout))| {
            // One independent stream per layer, so a layer's values never depend on `needed`.
            let mut rng = Normal::new(seed ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let std = (2.0 / (cin as f64 * 9.0)).sqrt();
            let weight = (0..cout * cin * 9).map(|_| (rng.next() * std) as f32).collect();
            let bias = (0..cout).map(|_| (rng.next() * 0.01) as f32).collect();
            ConvLayer { name: name.to_string(), cin, cout, weight, bias }
        })
        .collect();
    let source = match model {
        Model::Vgg19 => format!("random(seed={seed})"),
        Model::Vgg16 => format!("random(seed={seed}, vgg16)"),
    };
    VggWeights { model, layers, convention: None, source }
}
