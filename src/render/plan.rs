//! What a render will do before it does it: its frames, the size of every scale, and whether
//! a stage must be tiled to fit the adapter.

use super::{RenderOptions, TileMode};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::model::{LossSettings, StyleLoss};
use std::path::{Path, PathBuf};

/// Host memory a tiled render may use for its image-sized buffers (image, gradient, the
/// optimiser's state, the last good copy, content targets): beyond this, refuse rather than swap.
pub const MAX_HOST_BYTES: u64 = 32 << 30;

/// Whether (and with which tile size) an h x w image must be tiled on `ctx` under `o`. The
/// network runs on the image plus the reflected margin (`--edge reflect`) on every side: the
/// graph's size, what the limits and the budget are compared with.
pub fn decide_tile(ctx: &Context, s: &LossSettings, o: &RenderOptions, w: usize, h: usize) -> Result<Option<usize>> {
    let max_binding = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let budget = o.max_gpu_memory.map_or(u64::MAX, |m| m << 20);
    let r = o.edge.margin(s);
    let (pw, ph) = (w + 2 * r, h + 2 * r);
    let t = match o.tile {
        TileMode::Off => {
            check_fits(ctx, pw, ph)?;
            return Ok(None);
        }
        TileMode::Size(n) => Some(n),
        TileMode::Auto => crate::tiled::choose_tile(s, ph, pw, budget, max_binding)?,
    };
    if t.is_some() {
        // Image, gradient, the last good copy, the padded image, and the optimiser's state.
        let lbfgs = (o.optimizer == super::Optimizer::Lbfgs).then_some(o.lbfgs_history);
        let per_value = 4 + crate::tiled::optim::TiledOptimizer::values_per_pixel(lbfgs, o.avg_decay > 0.0);
        let host = 3 * pw as u64 * ph as u64 * 4 * per_value + crate::tiled::graph_bytes(s, ph, pw).0 / 4;
        if host > MAX_HOST_BYTES {
            let hint = if lbfgs.is_some() { "a smaller --lbfgs-history or --size" } else { "a smaller --size" };
            return Err(Error::TooLarge(format!(
                "a {w}x{h} render needs about {} GiB of host memory even when tiled (limit {} GiB); use {hint}",
                host >> 30,
                MAX_HOST_BYTES >> 30
            )));
        }
    }
    Ok(t)
}

/// The working size: longest side `size`, aspect kept.
pub fn working_size(w: u32, h: u32, size: u32) -> (usize, usize) {
    let s = size as f64 / w.max(h) as f64;
    (((w as f64 * s).round().max(1.0)) as usize, ((h as f64 * s).round().max(1.0)) as usize)
}

/// The longest side at each of `n` scales, spaced geometrically from `initial` to `last`
/// (crowsonkb/style-transfer-pytorch spaces them by sqrt(2); here the count is chosen).
pub fn scale_sizes(initial: u32, last: u32, n: u32) -> Vec<u32> {
    if n <= 1 {
        return vec![last];
    }
    let r = last as f64 / initial as f64;
    (0..n)
        .map(|k| {
            if k == n - 1 {
                last
            } else {
                (initial as f64 * r.powf(k as f64 / (n - 1) as f64)).round().max(1.0) as u32
            }
        })
        .collect()
}

/// Refuses early, with the largest size that fits, when the biggest activation (64 channels at
/// full resolution) would not fit one GPU buffer binding.
pub fn check_fits(ctx: &Context, w: usize, h: usize) -> Result<()> {
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let need = 64 * w as u64 * h as u64 * 4;
    if need > limit {
        let scale = (limit as f64 / need as f64).sqrt();
        let largest = ((w.max(h) as f64) * scale).floor() as u64;
        return Err(Error::TooLarge(format!(
            "a {w}x{h} render needs {} MiB per activation buffer but {} allows {} MiB; the largest \
             --size that fits this adapter is {largest}",
            need >> 20,
            ctx.info.name,
            limit >> 20
        )));
    }
    Ok(())
}

/// One content image and where its result goes.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The content image.
    pub content: PathBuf,
    /// Where its result is written.
    pub output: PathBuf,
}

fn is_image_name(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// The frames of a render: one (CONTENT -> OUT), or every image of a folder / of
/// `--content-list` -> `OUT/<same file name>`. The second value says whether it is a batch.
pub fn plan_frames(o: &RenderOptions) -> Result<(Vec<Frame>, bool)> {
    let contents: Vec<PathBuf> = if !o.content_list.is_empty() {
        o.content_list.clone()
    } else if o.content.is_dir() {
        let rd = std::fs::read_dir(&o.content)
            .map_err(|e| Error::Io { path: o.content.display().to_string(), source: e })?;
        let mut v: Vec<PathBuf> =
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_image_name(p)).collect();
        v.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        if v.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: the folder holds no .png or .jpg images",
                o.content.display()
            )));
        }
        v
    } else {
        return Ok((vec![Frame { content: o.content.clone(), output: o.output.clone() }], false));
    };
    let out = &o.output;
    if out.exists() && !out.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "-o {}: with several content images the output must be a folder, and a file of that name exists",
            out.display()
        )));
    }
    if !out.exists() && is_image_name(out) {
        return Err(Error::InvalidArgument(format!(
            "-o {}: with several content images the output must be a folder (e.g. -o frames_out/), not an image file",
            out.display()
        )));
    }
    let mut frames = vec![];
    let mut seen = std::collections::HashSet::new();
    for c in contents {
        let Some(name) = c.file_name() else {
            return Err(Error::InvalidArgument(format!("{}: not an image file name", c.display())));
        };
        if !seen.insert(name.to_os_string()) {
            return Err(Error::InvalidArgument(format!(
                "two content images are named {}: their results would overwrite each other in {}",
                name.to_string_lossy(),
                out.display()
            )));
        }
        if !is_image_name(&c) {
            return Err(Error::InvalidArgument(format!("{}: content images must be .png or .jpg files", c.display())));
        }
        let output = out.join(name);
        if let (Ok(a), Ok(b)) = (c.canonicalize(), output.canonicalize()) {
            if a == b {
                return Err(Error::InvalidArgument(format!(
                    "-o {}: the results would overwrite the content images; choose another folder",
                    out.display()
                )));
            }
        }
        frames.push(Frame { content: c, output });
    }
    Ok((frames, true))
}

/// One style image at one stage: its working size and whether its targets need tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StyleSize {
    /// Working width in pixels.
    pub width: usize,
    /// Working height in pixels.
    pub height: usize,
    /// Tile size for its targets, or None for one untiled pass.
    pub tile: Option<usize>,
}

/// One stage (one scale of one frame), planned once from the options and the input sizes and
/// then used by the untiled and tiled paths alike.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlan {
    /// Index of the scale (0: coarsest).
    pub scale: usize,
    /// Longest side of the output at this scale.
    pub size: u32,
    /// Working width of the image in pixels.
    pub width: usize,
    /// Working height of the image in pixels.
    pub height: usize,
    /// Tile size (interior side in pixels) when the stage is tiled.
    pub tile: Option<usize>,
    /// Optimiser steps at this scale.
    pub steps: u32,
    /// Longest side of the style images at this scale (the key of their cached targets).
    pub style_longest: u32,
    /// Each style image at this scale.
    pub styles: Vec<StyleSize>,
}

/// Plans every scale of a frame whose content image is `content` = (width, height) at full
/// resolution, with style images of sizes `styles` (width, height): sizes, steps and tiling,
/// each decided here once.
pub fn plan_stages(
    ctx: &Context,
    s: &LossSettings,
    o: &RenderOptions,
    content: (u32, u32),
    styles: &[(u32, u32)],
) -> Result<Vec<StagePlan>> {
    let sizes = scale_sizes(o.initial_size, o.size, o.scales);
    let steps = super::steps_per_scale(o);
    let mut out = vec![];
    // Coarse to fine; the finest (the output) is decided first so that a too-large render is
    // refused with the output's size in the message.
    for (scale, &size) in sizes.iter().enumerate().rev() {
        let (width, height) = working_size(content.0, content.1, size);
        let tile = decide_tile(ctx, s, o, width, height)?;
        if let (Some(_), StyleLoss::MeanCov) = (tile, s.style_loss) {
            // Each term's covariance square root spans the whole image, which no tile sees.
            return Err(Error::InvalidArgument(format!(
                "--style-loss mean-cov works untiled only, but the {width}x{height} stage would be tiled; {}",
                if matches!(o.tile, TileMode::Size(_)) { "drop --tile" } else { "use a smaller --size" }
            )));
        }
        if tile.is_some() && (!o.style_masks.is_empty() || o.content_mask.is_some()) {
            // A masked Gram's area and sum span the whole image, which no tile sees.
            let what = if o.style_masks.is_empty() { "--content-mask" } else { "--style-mask" };
            return Err(Error::InvalidArgument(format!(
                "{what} works untiled only, but the {width}x{height} stage would be tiled; {}",
                if matches!(o.tile, TileMode::Size(_)) { "drop --tile" } else { "use a smaller --size" }
            )));
        }
        if tile.is_some() && o.normalize_gradients {
            // A term's L1 norm spans the whole image, which no tile sees.
            let hint = match o.tile {
                TileMode::Size(_) => "drop --tile",
                _ => "use a smaller --size",
            };
            return Err(Error::InvalidArgument(format!(
                "--normalize-gradients works untiled only, but the {width}x{height} stage would be tiled; {hint}"
            )));
        }
        let style_longest = ((o.style_scale as f64 * size as f64).round() as u32).max(1);
        let styles = styles
            .iter()
            .map(|&(sw, sh)| {
                let (width, height) = working_size(sw, sh, style_longest);
                let tile = decide_tile(ctx, s, o, width, height)?;
                if tile.is_some() && s.style_loss == StyleLoss::MeanCov {
                    return Err(Error::InvalidArgument(format!(
                        "--style-loss mean-cov works untiled only, but the {width}x{height} style image would be \
                         tiled; use a smaller --size or --style-scale"
                    )));
                }
                Ok(StyleSize { width, height, tile })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(StagePlan { scale, size, width, height, tile, steps: steps[scale], style_longest, styles });
    }
    out.reverse();
    Ok(out)
}
