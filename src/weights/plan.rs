//! Layer planning, shared by all formats: which model a file holds and which tensors hold each
//! of its conv layers, checked before any data is read.

use super::catalogue::Catalogue;
use super::error::Result;
use super::{Model, ModelEvidence, WeightsError};

pub(super) fn check_needed(model: Model, needed: usize) -> Result<()> {
    let n = model.convs().len();
    if (1..=n).contains(&needed) {
        Ok(())
    } else {
        Err(WeightsError::InvalidArgument(format!(
            "needed must be between 1 and {n} conv layers of {model}, got {needed}"
        )))
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
    /// The key of conv layer `layer` of `model`.
    pub(super) fn key(self, model: Model, layer: usize, suffix: &str) -> String {
        match self {
            KeyStyle::Torchvision(p) => format!("{p}features.{}.{suffix}", model.torchvision_indices()[layer]),
            KeyStyle::Named(p) => format!("{p}{}.{suffix}", model.convs()[layer].0),
        }
    }
}

/// The key style whose conv1_1 weight is present (conv1_1's key is the same in both models).
pub(super) fn key_style(cat: &Catalogue) -> Option<KeyStyle> {
    [KeyStyle::Torchvision(""), KeyStyle::Named(""), KeyStyle::Torchvision("module."), KeyStyle::Named("module.")]
        .into_iter()
        .find(|st| cat.find(&st.key(Model::Vgg19, 0, "weight")).is_some())
}

/// How many leading layers of `model` the file holds: weight and bias present with the table's
/// shapes.
pub(super) fn matching_layers(cat: &Catalogue, style: KeyStyle, model: Model) -> usize {
    let shape_ok = |key: String, expected: &[usize]| {
        cat.find(&key).is_some_and(|e| e.shape.iter().map(|&d| d as usize).eq(expected.iter().copied()))
    };
    model
        .convs()
        .iter()
        .enumerate()
        .take_while(|&(i, &(_, cin, cout))| {
            shape_ok(style.key(model, i, "weight"), &[cout, cin, 3, 3])
                && shape_ok(style.key(model, i, "bias"), &[cout])
        })
        .count()
}

/// Which model the file holds (see [`super::recognise_model`]).
pub(super) fn recognise_in(cat: &Catalogue) -> Result<ModelEvidence> {
    let style = key_style(cat).ok_or_else(|| not_vgg(cat))?;
    let (n16, n19) = (matching_layers(cat, style, Model::Vgg16), matching_layers(cat, style, Model::Vgg19));
    Ok(if n16 > n19 {
        ModelEvidence::Known(Model::Vgg16)
    } else if n19 > n16 {
        ModelEvidence::Known(Model::Vgg19)
    } else {
        // Equal: only layers both models share (or conv1_1 malformed, which loading reports).
        ModelEvidence::Shared(n16)
    })
}

fn not_vgg(cat: &Catalogue) -> WeightsError {
    WeightsError::NotVgg {
        path: cat.path.clone(),
        sample_keys: cat.entries.iter().take(5).map(|e| e.key.clone()).collect(),
    }
}

/// Validate names, shapes and dtypes of the first `needed` layers of `model` before reading any
/// data; returns the (weight, bias) entry indices per layer.
pub(super) fn plan_layers(cat: &Catalogue, model: Model, needed: usize) -> Result<Vec<(usize, usize)>> {
    let path = &cat.path;
    let style = key_style(cat).ok_or_else(|| not_vgg(cat))?;
    // Leading layers with both tensors present, for the "file only has ..." part of errors.
    let available = (0..model.convs().len())
        .take_while(|&i| {
            cat.find(&style.key(model, i, "weight")).is_some() && cat.find(&style.key(model, i, "bias")).is_some()
        })
        .count();
    let mut plan = Vec::with_capacity(needed);
    for (i, &(layer, cin, cout)) in model.convs()[..needed].iter().enumerate() {
        let mut pair = [0usize; 2];
        for (slot, (suffix, expected)) in
            [("weight", vec![cout, cin, 3, 3]), ("bias", vec![cout])].into_iter().enumerate()
        {
            let key = style.key(model, i, suffix);
            let Some(idx) = cat.find_index(&key) else {
                return Err(WeightsError::MissingLayer {
                    path: path.clone(),
                    model,
                    layer,
                    tensor: key,
                    needed,
                    available,
                });
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
