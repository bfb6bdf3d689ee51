//! Regional styles (`--style-mask`) on the GPU: each style's mask at every style tap and the
//! masked Gram terms a [`crate::runner::Graph`] records at each tap (oracle:
//! `reference::step::evaluate_masked`), built by [`Graph::new_regional`] (here to keep the runner's
//! graph.rs small). [`ContentMask`] is `--content-mask`.
//!
//! With masks the styles are not blended: every (style k, style tap l) pair is its own term,
//! loss = style_weight * layer_weight_l * b_k * mean((G_kl - A_kl)^2), where A_kl is style k's
//! plain Gram at tap l (of the whole style image) and G_kl the masked Gram of the generated
//! image's features F at tap l, (F m)(F m)^T / (C * sum(m^2)) with m = mask k at tap l's
//! resolution ([`crate::gpu::mask::mask_levels`]). A layer's loss slot holds the sum over k.

use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::{gram, mask, reduce, Context, Op, Tensor};
use crate::model::{LossSettings, StyleLoss};
use crate::runner::{Graph, Net, Targets};

/// The styles' targets and masks of one graph (one image size), and the scratch its terms share.
pub struct RegionalStyles {
    /// Per style k, per style tap l: style k's Gram target at tap l, (c, c, 1).
    pub targets: Vec<Vec<Tensor>>,
    /// Per style k, per style tap l: mask k at tap l's resolution, (1, h_l, w_l).
    pub masks: Vec<Vec<Tensor>>,
    /// Per style k, per style tap l: sum(m^2) of that mask (> 0).
    pub areas: Vec<Vec<f32>>,
    /// Per style k: its weight b_k (`--style-blend-weights` as given, not normalised).
    pub weights: Vec<f32>,
    /// The masked Gram (max c^2), its gradient, and the masked features' gradient (the largest
    /// style tap); the masked features themselves go into the graph's free gradient buffer.
    gram: Tensor,
    dgram: Tensor,
    dfm: Tensor,
}

impl RegionalStyles {
    /// Uploads the masks for an (h, w) image: `masks[k]` = (its name for messages, h * w values
    /// in \[0,1\]), resized to every style tap's resolution by the network's 2x2 average pools.
    /// `targets[k][l]` is style k's Gram at tap l. Refuses a mask that is black everywhere at
    /// some tap's resolution, naming it.
    pub fn new(
        ctx: &Context,
        s: &LossSettings,
        masks: &[(String, Vec<f32>)],
        h: usize,
        w: usize,
        targets: Vec<Vec<Tensor>>,
        weights: Vec<f32>,
    ) -> Result<RegionalStyles> {
        let ns = s.style_layers.len();
        if masks.len() != targets.len() || weights.len() != targets.len() {
            return Err(Error::InvalidArgument(format!(
                "{} style masks and {} blend weights for {} styles",
                masks.len(),
                weights.len(),
                targets.len()
            )));
        }
        let deepest = s.style_layers.iter().map(|t| t.level(s.model)).max().unwrap_or(0);
        let (mut up, mut areas) = (vec![], vec![]);
        for (k, (name, m)) in masks.iter().enumerate() {
            if m.len() != h * w {
                return Err(Error::InvalidArgument(format!(
                    "style mask {name} has {} values for a {w}x{h} image",
                    m.len()
                )));
            }
            let levels = mask::mask_levels(m, h, w, deepest);
            let (mut ts, mut ars) = (vec![], vec![]);
            for (l, t) in s.style_layers.iter().enumerate() {
                let (lm, lh, lw) = &levels[t.level(s.model)];
                let area: f64 = lm.iter().map(|&v| v as f64 * v as f64).sum();
                if area <= 0.0 {
                    return Err(Error::InvalidArgument(format!(
                        "--style-mask {name}: the mask is black everywhere at {}'s resolution ({lw}x{lh}); \
                         give it a white region (larger at small sizes) or drop that style",
                        t.name(s.model)
                    )));
                }
                let c = t.channels(s.model);
                if targets[k].len() != ns || targets[k][l].len() != c * c {
                    return Err(Error::InvalidArgument(format!(
                        "style {k}'s targets do not fit the style layers ({} for {ns}, {c} channels at layer {l})",
                        targets[k].len()
                    )));
                }
                ts.push(Tensor::from_slice(ctx, [1, *lh, *lw], lm, "style mask")?);
                ars.push(area as f32);
            }
            up.push(ts);
            areas.push(ars);
        }
        let (mut max_c, mut max_len) = (1, 1);
        for t in &s.style_layers {
            let (c, l) = (t.channels(s.model), t.level(s.model));
            max_c = max_c.max(c);
            max_len = max_len.max(c * (h >> l) * (w >> l));
        }
        Ok(RegionalStyles {
            targets,
            masks: up,
            areas,
            weights,
            gram: Tensor::new(ctx, [max_c * max_c, 1, 1], "masked gram")?,
            dgram: Tensor::new(ctx, [max_c * max_c, 1, 1], "masked gram gradient")?,
            dfm: Tensor::new(ctx, [max_len, 1, 1], "masked features gradient")?,
        })
    }

    /// Records style tap `l`'s terms, one per style, on its activation `a` (c, h_l, w_l): the
    /// losses summed into `losses[slot]`, the gradients into `g` (written fresh unless `have`).
    /// `free` (as large as any activation, not aliasing `a` or `g`) holds the masked features.
    /// With `normalize`, each term's gradient is L1-normalised before its weight, as every other
    /// term's under `--normalize-gradients` (it lands in `free` once the features are used).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        ctx: &Context,
        ops: &mut Vec<Op>,
        l: usize,
        a: &Tensor,
        losses: &Tensor,
        slot: usize,
        layer_weight: f32,
        normalize: bool,
        g: &Tensor,
        mut have: bool,
        free: &Tensor,
    ) {
        let [c, ..] = a.shape;
        let view = |t: &Tensor, shape: [usize; 3]| Tensor { buf: t.buf.clone(), shape };
        let (fm, dfm) = (view(free, a.shape), view(&self.dfm, a.shape));
        let (gk, dg) = (view(&self.gram, [c, c, 1]), view(&self.dgram, [c, c, 1]));
        for (k, b) in self.weights.iter().enumerate() {
            let m = &self.masks[k][l];
            let scale = 1.0 / (c as f32 * self.areas[k][l]);
            let wk = layer_weight * b;
            ops.push(mask::mask_mul(ctx, a, m, &fm, false));
            ops.push(gram::gram_forward_scaled(ctx, &fm, &gk, scale, false));
            let gw = if normalize { 1.0 } else { wk };
            let t = &self.targets[k][l];
            ops.push(reduce::mse_forward_backward_summed(ctx, &gk, t, losses, slot, wk, gw, &dg, false, k > 0));
            ops.push(gram::gram_backward_scaled(ctx, &fm, &dg, &dfm, scale, false));
            if normalize {
                ops.push(mask::mask_mul(ctx, &dfm, m, &fm, false));
                ops.push(reduce::add_l1_normalized(ctx, &fm, wk, g, have));
            } else {
                ops.push(mask::mask_mul(ctx, &dfm, m, g, have));
            }
            have = true;
        }
    }

    /// The tensors the recorded ops bind (kept alive with the graph).
    pub(crate) fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.targets.iter().flatten().chain(self.masks.iter().flatten()).chain([&self.gram, &self.dgram, &self.dfm])
    }
}

/// `--content-mask` on the GPU: the content loss weighted per position, per content tap l:
/// cw * sum_{c,p} m_p (F - P)^2 / (C * sum_p m_p), m the mask at tap l's resolution (a weighted
/// mean over the region: an all-white mask is the plain content loss). Recorded as the plain MSE
/// of sqrt(m) F against sqrt(m) P, its gradient multiplied by sqrt(m) once more.
pub struct ContentMask {
    /// Per content tap: sqrt(m) at its resolution, (1, h_l, w_l).
    roots: Vec<Tensor>,
    /// Per content tap: h_l * w_l / sum(m), the MSE's mean turned into the masked mean.
    scales: Vec<f32>,
    /// Per content tap: the masked features, the masked target and the masked gradient.
    scratch: Vec<[Tensor; 3]>,
}

impl ContentMask {
    /// The mask `m` (named `name`, h * w values in \[0,1\]) at every content tap of an (h, w)
    /// image; refuses one black everywhere at some content tap's resolution.
    pub fn new(ctx: &Context, s: &LossSettings, name: &str, m: &[f32], h: usize, w: usize) -> Result<ContentMask> {
        if m.len() != h * w {
            return Err(Error::InvalidArgument(format!(
                "content mask {name} has {} values for a {w}x{h} image",
                m.len()
            )));
        }
        let deepest = s.content_layers.iter().map(|t| t.level(s.model)).max().unwrap_or(0);
        let levels = mask::mask_levels(m, h, w, deepest);
        let mut out = ContentMask { roots: vec![], scales: vec![], scratch: vec![] };
        for t in &s.content_layers {
            let (lm, lh, lw) = &levels[t.level(s.model)];
            let area: f64 = lm.iter().map(|&v| v as f64).sum();
            if area <= 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "--content-mask {name}: the mask is black everywhere at {}'s resolution ({lw}x{lh}); \
                     give it a white region (larger at small sizes)",
                    t.name(s.model)
                )));
            }
            let root: Vec<f32> = lm.iter().map(|v| v.sqrt()).collect();
            out.roots.push(Tensor::from_slice(ctx, [1, *lh, *lw], &root, "content mask")?);
            out.scales.push(((lh * lw) as f64 / area) as f32);
            let shape = [t.channels(s.model), *lh, *lw];
            out.scratch.push([
                Tensor::new(ctx, shape, "masked content features")?,
                Tensor::new(ctx, shape, "masked content target")?,
                Tensor::new(ctx, shape, "masked content gradient")?,
            ]);
        }
        Ok(out)
    }

    /// Records content tap `k`'s masked term on its activation `a` against `target`: the loss
    /// into `losses[k]`, the gradient into `g` (fresh unless `have`); with `normalize`, the
    /// term's gradient L1-normalised in `free` (not aliasing `a` or `g`) before its weight.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        ctx: &Context,
        ops: &mut Vec<Op>,
        k: usize,
        a: &Tensor,
        target: &Tensor,
        losses: &Tensor,
        weight: f32,
        normalize: bool,
        g: &Tensor,
        have: bool,
        free: &Tensor,
    ) {
        let [xm, tm, d] = &self.scratch[k];
        let root = &self.roots[k];
        ops.push(mask::mask_mul(ctx, a, root, xm, false));
        ops.push(mask::mask_mul(ctx, target, root, tm, false));
        let lw = weight * self.scales[k];
        ops.push(reduce::mse_forward_backward_split(
            ctx,
            xm,
            tm,
            losses,
            k,
            lw,
            if normalize { 1.0 } else { lw },
            d,
            false,
        ));
        if normalize {
            let f = Tensor { buf: free.buf.clone(), shape: a.shape };
            ops.push(mask::mask_mul(ctx, d, root, &f, false));
            ops.push(reduce::add_l1_normalized(ctx, &f, weight, g, have));
        } else {
            ops.push(mask::mask_mul(ctx, d, root, g, have));
        }
    }

    /// The tensors the recorded ops bind.
    pub(crate) fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.roots.iter().chain(self.scratch.iter().flatten())
    }
}

/// What a [`crate::runner::Graph`] masks: regional styles, a content mask, or both.
#[derive(Default)]
pub struct Regions {
    /// `--style-mask`: the style terms are these styles' masked ones.
    pub styles: Option<RegionalStyles>,
    /// `--content-mask`: the content terms are weighted by it.
    pub content: Option<ContentMask>,
}

impl Graph {
    /// [`Graph::new_with`] with masks (see [`crate::regional`]). With `regions.styles`
    /// (`--style-mask`, Gram style loss only) the style terms are its masked ones,
    /// `targets.style` is ignored and each style layer's loss slot holds the sum of its
    /// per-style terms; with `regions.content` (`--content-mask`) the content terms are masked.
    pub fn new_regional(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        targets: &Targets,
        regions: &Regions,
        init: &[f32],
        h: usize,
        w: usize,
        adam_cfg: AdamConfig,
        normalize_gradients: bool,
    ) -> Result<Graph> {
        if regions.styles.is_some() && s.style_loss != StyleLoss::Gram {
            return Err(Error::InvalidArgument(format!(
                "--style-mask works with --style-loss gram only, not {}",
                s.style_loss.name()
            )));
        }
        Graph::new_inner(ctx, net, s, targets, Some(regions), init, h, w, adam_cfg, normalize_gradients)
    }
}
