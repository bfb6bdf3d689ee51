//! `--style-mask` and `--content-mask` files: loaded as grey masks in \[0,1\], resized to each
//! stage's working size by area averaging, and turned into a stage's [`Regions`].

use crate::error::{Error, Result};
use crate::gpu::{Context, Tensor};
use crate::image_io::{DecodeLimits, Planar};
use crate::model::LossSettings;
use crate::regional::{ContentMask, RegionalStyles, Regions};
use std::path::{Path, PathBuf};

/// A mask as loaded (`--style-mask`, `--content-mask`): its luma at the file's size.
#[derive(Clone, Debug)]
pub struct MaskImage {
    /// The file, for messages.
    pub path: PathBuf,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Luma (Rec. 601, the Y of YIQ) in \[0,1\], row by row: white = the style applies fully.
    pub luma: Vec<f32>,
}

impl MaskImage {
    /// Reads an image file (any format the content images may have) as a grey mask.
    pub fn load(path: &Path) -> Result<MaskImage> {
        let img = crate::image_io::load_image(path, &DecodeLimits::default())?;
        Ok(MaskImage::from_image(path, &img))
    }

    /// The luma of `img` as a mask named `path`.
    pub fn from_image(path: &Path, img: &Planar) -> MaskImage {
        let n = img.plane_len();
        let luma = (0..n)
            .map(|i| (0.299 * img.data[i] + 0.587 * img.data[n + i] + 0.114 * img.data[2 * n + i]).clamp(0.0, 1.0));
        MaskImage {
            path: path.to_path_buf(),
            width: img.width as usize,
            height: img.height as usize,
            luma: luma.collect(),
        }
    }

    /// The mask at (w, h) by area averaging ([`resize_area`]).
    pub fn resized(&self, w: usize, h: usize) -> Vec<f32> {
        resize_area(&self.luma, self.width, self.height, w, h)
    }
}

/// Loads every `--style-mask` (none: no masks).
pub fn load_masks(paths: &[PathBuf]) -> Result<Vec<MaskImage>> {
    paths.iter().map(|p| MaskImage::load(p)).collect()
}

/// Resizes one plane (sw x sh) to (dw x dh) by area averaging: each output pixel is the mean of
/// the source over its footprint, each source pixel weighted by the share of it the footprint
/// covers. Unlike Lanczos it neither rings nor leaves \[0,1\], and a mask's white share is kept,
/// as the network's average pools keep it further down.
pub fn resize_area(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    assert_eq!(src.len(), sw * sh);
    // Per output index along one axis: the (source index, weight) pairs of its footprint.
    let axis = |s: usize, d: usize| -> Vec<Vec<(usize, f64)>> {
        let step = s as f64 / d as f64;
        (0..d)
            .map(|o| {
                let (a, b) = (o as f64 * step, (o + 1) as f64 * step);
                let mut v = vec![];
                let mut i = a.floor() as usize;
                while (i as f64) < b && i < s {
                    let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                    if overlap > 0.0 {
                        v.push((i, overlap / step));
                    }
                    i += 1;
                }
                v
            })
            .collect()
    };
    let (xs, ys) = (axis(sw, dw), axis(sh, dh));
    let mut out = Vec::with_capacity(dw * dh);
    for row in &ys {
        for col in &xs {
            let mut v = 0.0;
            for &(y, wy) in row {
                for &(x, wx) in col {
                    v += wy * wx * src[y * sw + x] as f64;
                }
            }
            out.push(v.clamp(0.0, 1.0) as f32);
        }
    }
    out
}

/// A stage's masks at (w, h): regional styles when `masks` is not empty (`targets` then holds
/// each style's Gram targets, style after style, as `Engine::style_targets` returns them with
/// masks; `blend` the styles' weights as given, None: 1 each), and the content mask.
#[allow(clippy::too_many_arguments)]
pub(super) fn regions(
    ctx: &Context,
    s: &LossSettings,
    masks: &[MaskImage],
    content: Option<&MaskImage>,
    targets: &[Tensor],
    blend: Option<&Vec<f32>>,
    w: usize,
    h: usize,
) -> Result<Regions> {
    let content = match content {
        Some(m) => Some(ContentMask::new(ctx, s, &m.path.display().to_string(), &m.resized(w, h), h, w)?),
        None => None,
    };
    if masks.is_empty() {
        return Ok(Regions { styles: None, content });
    }
    let ns = s.style_layers.len();
    if targets.len() != masks.len() * ns {
        return Err(Error::InvalidArgument(format!(
            "{} style targets for {} masks of {ns} layers",
            targets.len(),
            masks.len()
        )));
    }
    let mut it = targets.iter().cloned();
    let per_style = masks.iter().map(|_| it.by_ref().take(ns).collect()).collect();
    let named = masks.iter().map(|m| (m.path.display().to_string(), m.resized(w, h))).collect::<Vec<_>>();
    let weights = blend.cloned().unwrap_or_else(|| vec![1.0; masks.len()]);
    Ok(Regions { styles: Some(RegionalStyles::new(ctx, s, &named, h, w, per_style, weights)?), content })
}
