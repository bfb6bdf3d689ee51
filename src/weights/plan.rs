//! Layer planning, shared by all formats: which tensors hold each VGG19 conv layer, checked before any data is read.

use super::catalogue::Catalogue;
use super::error::Result;
use super::{WeightsError, TORCHVISION_FEATURE_INDEX, VGG19_CONVS};

pub(super) fn check_needed(needed: usize) -> Result<()> {
    if (1..=16).contains(&needed) {
        Ok(())
    } else {
        Err(WeightsError::InvalidArgument(format!("needed must be between 1 and 16 conv layers, got {needed}")))
    }
}

/// How the file names its tensors.
#[derive(Clone, Copy)]
pub(super) enum KeyStyle {
    /// `features.N.weight` with an optional prefix such as `module.` (DataParallel).
    Torchvision(&'static str),
    /// `conv1_1.weight`, with an optional prefix.
    Named(&'static str),
}

impl KeyStyle {
    pub(super) fn key(self, layer: usize, suffix: &str) -> String {
        match self {
            KeyStyle::Torchvision(p) => {
                format!("{p}features.{}.{suffix}", TORCHVISION_FEATURE_INDEX[layer])
            }
            KeyStyle::Named(p) => format!("{p}{}.{suffix}", VGG19_CONVS[layer].0),
        }
    }
}

/// The key style whose conv1_1 weight is present.
pub(super) fn key_style(cat: &Catalogue) -> Option<KeyStyle> {
    [KeyStyle::Torchvision(""), KeyStyle::Named(""), KeyStyle::Torchvision("module."), KeyStyle::Named("module.")]
        .into_iter()
        .find(|st| cat.find(&st.key(0, "weight")).is_some())
}

/// Validate names, shapes and dtypes of the needed layers before reading any data; returns the
/// (weight, bias) entry indices per layer.
pub(super) fn plan_layers(cat: &Catalogue, needed: usize) -> Result<Vec<(usize, usize)>> {
    let path = &cat.path;
    let Some(style) = key_style(cat) else {
        let keys: Vec<&str> = cat.entries.iter().map(|e| e.key.as_str()).collect();
        return Err(WeightsError::NotVgg {
            path: path.clone(),
            sample_keys: keys.iter().take(5).map(|s| s.to_string()).collect(),
        });
    };
    // Leading layers with both tensors present, for the "file only has ..." part of errors.
    let available = (0..16)
        .take_while(|&i| cat.find(&style.key(i, "weight")).is_some() && cat.find(&style.key(i, "bias")).is_some())
        .count();
    let mut plan = Vec::with_capacity(needed);
    for (i, &(layer, cin, cout)) in VGG19_CONVS[..needed].iter().enumerate() {
        let mut pair = [0usize; 2];
        for (slot, (suffix, expected)) in
            [("weight", vec![cout, cin, 3, 3]), ("bias", vec![cout])].into_iter().enumerate()
        {
            let key = style.key(i, suffix);
            let Some(idx) = cat.find_index(&key) else {
                return Err(WeightsError::MissingLayer { path: path.clone(), layer, tensor: key, needed, available });
            };
            let e = &cat.entries[idx];
            if !e.shape.iter().map(|&d| d as usize).eq(expected.iter().copied())
                || e.shape.iter().any(|&d| d > u32::MAX as u64)
            {
                return Err(WeightsError::BadShape {
                    path: path.clone(),
                    tensor: key,
                    expected,
                    found: e.shape.clone(),
                });
            }
            if !e.readable {
                return Err(WeightsError::BadDtype { path: path.clone(), tensor: key, dtype: e.dtype.clone() });
            }
            pair[slot] = idx;
        }
        plan.push((pair[0], pair[1]));
    }
    Ok(plan)
}
