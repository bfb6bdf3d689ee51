//! VGG19 convolution weights: reading them from disk, downloading them, or making random ones.
//!
//! Formats read (see weights/README.md for the details and the convention rule):
//! * PyTorch `.pth`, zip format (PyTorch >= 1.6): `<prefix>/data.pkl` + `<prefix>/data/<key>`.
//! * PyTorch `.pth`, legacy stream (`_use_new_zipfile_serialization=False`, and torchvision's
//!   own `vgg19-dcbb9e9d.pth`): magic, protocol, sys-info and state-dict pickles, the pickled
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

pub use download::{cache_dir, default_weights, fetch, sha256_file};
pub use error::WeightsError;
pub use inspect::{info, recognise_convention};

use catalogue::Catalogue;
use error::Result;
use plan::{check_needed, plan_layers};
use rng::Normal;

/// VGG19's 16 conv layers in order: (name, cin, cout).
pub use crate::model::CONVS as VGG19_CONVS;

/// torchvision `features.N` index of each conv layer (ReLUs and pools take the other indices).
pub const TORCHVISION_FEATURE_INDEX: [usize; 16] = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34];

/// Where torchvision's ImageNet VGG19 weights live (legacy torch.save format, 548 MB).
pub const TORCHVISION_URL: &str = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth";

/// SHA-256 of `vgg19-dcbb9e9d.pth`. torchvision names its files after the first 8 hex digits of
/// the SHA-256, and the full digest could not be obtained offline, so this is that prefix;
/// [`fetch`] accepts a full digest or any prefix of at least 8 hex digits.
pub const TORCHVISION_SHA256: &str = "dcbb9e9d";

/// File name under [`cache_dir`] of the default weights.
pub const TORCHVISION_FILE_NAME: &str = "vgg19-dcbb9e9d.pth";

/// The first `needed` conv layers of VGG19.
#[derive(Clone, Debug)]
pub struct VggWeights {
    /// conv1_1 .. in order, exactly `needed` of them.
    pub layers: Vec<ConvLayer>,
    /// Recognised from the file (see [`recognise_convention`]); `None` if unknown.
    pub convention: Option<Preprocess>,
    /// The path the weights came from, or `random(seed=N)`.
    pub source: String,
}

/// Load `needed` conv layers (conv1_1 .. `VGG19_CONVS[needed-1]`) from a .pth (both torch.save
/// formats) or .npz file. Other tensors (classifier.*, deeper layers) are ignored.
pub fn load(path: &Path, needed: usize) -> Result<VggWeights> {
    check_needed(needed)?;
    let mut cat = Catalogue::open(path)?;
    let plan = plan_layers(&cat, needed)?;
    let wanted: Vec<usize> = plan.iter().flat_map(|&(w, b)| [w, b]).collect();
    let mut data = cat.read(&wanted)?;
    let mut layers = Vec::with_capacity(needed);
    for (i, &(wi, bi)) in plan.iter().enumerate() {
        let (name, cin, cout) = VGG19_CONVS[i];
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
    Ok(VggWeights { layers, convention, source: path.display().to_string() })
}

/// Seeded random weights with VGG19's shapes: He-normal weights (std sqrt(2/(cin*9))) and
/// N(0, 0.01) biases. Bit-identical on every platform: splitmix64 plus a Box-Muller transform
/// built from IEEE basic operations only (no libm calls, whose last bits vary by platform).
/// Layer i does not depend on `needed`. Panics only if `needed` is outside 1..=16.
pub fn random(seed: u64, needed: usize) -> VggWeights {
    assert!((1..=16).contains(&needed), "random(): needed must be 1..=16, got {needed}");
    let layers = VGG19_CONVS[..needed]
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
    VggWeights { layers, convention: None, source: format!("random(seed={seed})") }
}
