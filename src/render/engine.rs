//! What a render sets up once (device, weights, network, style targets) and each stage's graph.

use super::masks::{load_masks, regions, MaskImage};
use super::observe::RenderInfo;
use super::plan::{check_fits, plan_stages, StagePlan};
use super::{
    default_weights_for, meancov_style_weight, parse_taps, validate, Init, Optimizer, RenderOptions, WeightsSource,
    MIN_SIDE, NORMALIZED_WEIGHTS,
};
use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::ema::Ema;
use crate::gpu::tune::{self, TuneMode, Tuner};
use crate::gpu::{AdapterChoice, Context, Tensor};
use crate::image_io::{self, color_match, DecodeLimits, Planar};
use crate::model::{ConvLayer, LossSettings, Model, ModelEvidence, Preprocess, StyleLoss};
use crate::runner::{compute_targets, Graph, LbfgsConfig, Losses, Net, Targets};
use crate::weights;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Loads the first `needed` layers of `model` and decides the input convention.
pub fn load_weights(
    src: &WeightsSource,
    model: Model,
    needed: usize,
    progress: bool,
) -> Result<(Vec<ConvLayer>, Option<Preprocess>, String)> {
    let w = match src {
        WeightsSource::Random(seed) => weights::random_for(model, *seed, needed),
        WeightsSource::File(p) => weights::load_model(p, model, needed)?,
        WeightsSource::Default => {
            let p = weights::default_weights_of(model, progress)?;
            weights::load_model(&p, model, needed)?
        }
    };
    Ok((w.layers, w.convention, w.source))
}

/// What `src` says about the model (reads a file's tensor names and shapes only): a file's
/// model, or [`ModelEvidence::Any`] for random weights and the default download (which is made
/// or fetched for the chosen model).
pub fn weights_evidence(src: &WeightsSource) -> Result<ModelEvidence> {
    match src {
        WeightsSource::File(p) => Ok(weights::recognise_model(p)?),
        WeightsSource::Random(_) | WeightsSource::Default => Ok(ModelEvidence::Any),
    }
}

/// Loads an image file, or one of the built-in synthetic samples `builtin:photo` and
/// `builtin:painting` (768x512, so a first render needs no files at all).
pub fn load_input(p: &Path, limits: &DecodeLimits) -> Result<Planar> {
    match p.to_str() {
        Some("builtin:photo") => Ok(image_io::synthetic_photo(768, 512, 1)),
        Some("builtin:painting") => Ok(image_io::synthetic_painting(768, 512, 2)),
        _ => Ok(image_io::load_image(p, limits)?),
    }
}

/// Refuses an image too small to carry content or style, naming it `what`.
pub(super) fn check_side(what: &str, i: &Planar) -> Result<()> {
    if i.width < MIN_SIDE || i.height < MIN_SIDE {
        return Err(Error::InvalidArgument(format!(
            "{what}: the image is {}x{}, too small to carry content or style (at least {MIN_SIDE}x{MIN_SIDE} pixels)",
            i.width, i.height
        )));
    }
    Ok(())
}

pub(super) fn load_checked(p: &Path, limits: &DecodeLimits) -> Result<Planar> {
    let i = load_input(p, limits)?;
    check_side(&p.display().to_string(), &i)?;
    Ok(i)
}

/// Seeded uniform noise in [0,1) (xorshift64): the same seed gives the same image everywhere.
pub fn noise(seed: u64, n: usize) -> Vec<f32> {
    crate::rng::XorShift64::new(seed.wrapping_mul(crate::rng::GOLDEN) | 1).vec(n, 0.0, 1.0)
}

/// What a render sets up once: device, network, loss settings, style images and the cache of
/// their (blended) Gram targets by style size.
pub struct Engine {
    /// The device.
    pub ctx: Context,
    /// The network on the device.
    pub net: Net,
    /// Layers, weights, pooling and input convention of the losses.
    pub settings: LossSettings,
    /// Where the weights came from (for the log and the PNG's settings).
    pub source: String,
    /// The style images as loaded.
    pub styles: Vec<Planar>,
    /// Blend weights, normalised to sum 1.
    pub blend: Vec<f32>,
    /// `--style-mask`: one mask per style image, or none (then the styles' targets are blended).
    pub masks: Vec<MaskImage>,
    /// `--content-mask`: weights the content loss per position.
    pub content_mask: Option<MaskImage>,
    cache: HashMap<u32, Vec<Tensor>>,
    /// Forward passes spent on style targets so far.
    pub style_target_passes: usize,
}

/// One stage: the graph at one size, the optional running average, and the content at that size.
pub struct Stage {
    /// The optimisation graph at this stage's size.
    pub graph: Graph,
    /// The running average of the iterates (`avg_decay` > 0).
    pub ema: Option<Ema>,
    /// Working width in pixels.
    pub width: usize,
    /// Working height in pixels.
    pub height: usize,
    /// The content image at this stage's size (for `--original-colors`).
    pub content: Planar,
}

impl Stage {
    /// One optimiser step (first copying the current image into `save_to`), then the average's
    /// update; submitted, not waited for.
    pub fn step(&self, ctx: &Context, save_to: Option<&Tensor>) -> Result<()> {
        self.graph.step_copying(ctx, save_to)?;
        if let Some(e) = &self.ema {
            e.update(ctx)?;
        }
        Ok(())
    }

    /// The current iterate.
    pub fn read_iterate(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.graph.read_image(ctx)
    }

    /// The image this stage would output now: the bias-corrected average of the iterates with
    /// `--avg-decay`, else the current iterate (before colour post-processing).
    pub fn read_output(&self, ctx: &Context) -> Result<Vec<f32>> {
        match &self.ema {
            Some(e) => e.read(ctx),
            None => self.graph.read_image(ctx),
        }
    }
}

/// A stage's inputs at its working size: the content image, the (blended) style targets and the
/// initial image; shared by the untiled and tiled paths.
pub(super) struct StageInputs {
    pub(super) content: Planar,
    pub(super) style: Vec<Tensor>,
    pub(super) init: Vec<f32>,
}

impl Engine {
    /// Validated options -> device, weights, network, the style images loaded from their files.
    /// With `first_content`, the stages of that image are planned (and so checked against the
    /// adapter's limits) before the weights are loaded (or downloaded), and returned.
    pub fn new(o: &RenderOptions, first_content: Option<&Planar>) -> Result<(Engine, Option<Vec<StagePlan>>)> {
        let limits = DecodeLimits::default();
        let styles = o.styles.iter().map(|p| load_checked(p, &limits)).collect::<Result<Vec<_>>>()?;
        let evidence = weights_evidence(&o.weights)?;
        let what = match &o.weights {
            WeightsSource::File(p) => p.display().to_string(),
            _ => "the weights".to_string(),
        };
        Self::from_parts(o, styles, first_content, (evidence, &what), |model, needed| {
            load_weights(&o.weights, model, needed, !o.quiet)
        })
    }

    /// As [`Engine::new`] with the style images given, `weights` = (what the weights say about
    /// the model, their name for messages), and the weights from `load(model, needed)`, called
    /// with the model ([`Model::resolve`]) and the number of its conv layers the taps need once
    /// the sizes are known to fit.
    pub fn from_parts(
        o: &RenderOptions,
        styles: Vec<Planar>,
        first_content: Option<&Planar>,
        weights: (ModelEvidence, &str),
        load: impl FnOnce(Model, usize) -> Result<(Vec<ConvLayer>, Option<Preprocess>, String)>,
    ) -> Result<(Engine, Option<Vec<StagePlan>>)> {
        let names: Vec<&str> = o
            .content_layers
            .iter()
            .chain(&o.style_layers)
            .map(|n| n.as_str())
            .filter(|n| !n.trim().is_empty())
            .collect();
        let model = Model::resolve(o.model, weights.0, &names, weights.1)?;
        let content_layers = parse_taps(model, &o.content_layers)?;
        let style_layers = parse_taps(model, &o.style_layers)?;
        let style_layer_weights = match &o.style_layer_weights {
            Some(w) => w.clone(),
            None => vec![1.0; style_layers.len()],
        };
        let raw = o.style_blend_weights.clone().unwrap_or_else(|| vec![1.0; styles.len()]);
        let sum: f32 = raw.iter().sum();
        let blend = raw.iter().map(|v| v / sum).collect();

        let mut settings = LossSettings {
            model,
            content_layers,
            style_layers,
            style_layer_weights,
            content_weight: 0.0,
            style_weight: 0.0,
            style_loss: o.style_loss,
            tv_weight: 0.0,
            pool: o.pool,
            preprocess: Preprocess::Torch,
        };
        settings.validate_layers()?;
        let needed = settings.convs_needed();
        let mut ctx = Context::new(&AdapterChoice::parse(&o.adapter))?;
        ctx.set_overrides(o.kernels);
        let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
        let mode = o.tune.unwrap_or(if cpu { TuneMode::Cached } else { TuneMode::Full });
        if mode != TuneMode::Off {
            let dir = o.tune_dir.clone().unwrap_or_else(|| weights::cache_dir().join("tune"));
            let path = tune::table_path(&dir, &ctx.info);
            let budget = Duration::from_secs_f64(o.tune_budget_s.max(0.0));
            ctx.set_tuner(Tuner::new(&ctx, mode, Some(path), budget));
        }
        // The adapter's limits decide the largest size: refuse before loading (or downloading)
        // the weights. The plan depends only on the layers, not on the weights.
        let style_dims: Vec<(u32, u32)> = styles.iter().map(|s| (s.width, s.height)).collect();
        let plans = match first_content {
            Some(c) => Some(plan_stages(&ctx, &settings, o, (c.width, c.height), &style_dims)?),
            None => None,
        };
        let (convs, recognised, source) = load(model, needed)?;
        settings.preprocess = o.preprocess.or(recognised).unwrap_or(Preprocess::Torch);
        let (mut dc, mut ds, dt) = default_weights_for(settings.preprocess);
        if o.style_loss == StyleLoss::MeanCov {
            ds = meancov_style_weight(settings.preprocess);
        }
        if o.normalize_gradients {
            // Normalised terms no longer scale with the activations: jcjohnson's defaults fit
            // either convention (without them, torchvision's 1 : 1e6 would drown the content).
            (dc, ds) = NORMALIZED_WEIGHTS;
        }
        settings.content_weight = o.content_weight.unwrap_or(dc);
        settings.style_weight = o.style_weight.unwrap_or(ds);
        settings.tv_weight = o.tv_weight.unwrap_or(dt);
        settings.validate()?;
        let mut net = Net::new(&ctx, &convs)?;
        net.edge = o.edge;
        let masks = load_masks(&o.style_masks)?;
        let content_mask = o.content_mask.as_deref().map(MaskImage::load).transpose()?;
        let cache = HashMap::new();
        let eng =
            Engine { ctx, net, settings, source, styles, blend, masks, content_mask, cache, style_target_passes: 0 };
        Ok((eng, plans))
    }

    /// What a render of `frames` frames with these `plans` (the first frame's) is about to do.
    pub fn info(&self, plans: &[StagePlan], frames: usize) -> RenderInfo {
        RenderInfo {
            adapter: self.ctx.describe(),
            weights: self.source.clone(),
            model: self.settings.model,
            preprocess: self.settings.preprocess,
            size: plans.last().map_or((0, 0), |p| (p.width, p.height)),
            scales: plans.iter().map(|p| p.size).collect(),
            frame_steps: plans.iter().map(|p| p.steps).sum(),
            frames,
            tune_warnings: self.ctx.tuner().map(|t| t.warnings()).unwrap_or_default(),
            style_loss: self.settings.style_loss,
        }
    }

    fn style_dims(&self) -> Vec<(u32, u32)> {
        self.styles.iter().map(|s| (s.width, s.height)).collect()
    }

    /// Every stage of `content` (full resolution) under `o`.
    pub fn plan(&self, o: &RenderOptions, content: &Planar) -> Result<Vec<StagePlan>> {
        plan_stages(&self.ctx, &self.settings, o, (content.width, content.height), &self.style_dims())
    }

    /// One stage of `content` at longest side `size` (for one-off evaluations and tests).
    pub fn plan_size(&self, o: &RenderOptions, content: &Planar, size: u32) -> Result<StagePlan> {
        let one = RenderOptions { size, scales: 1, scale_steps: None, ..o.clone() };
        let mut p = plan_stages(&self.ctx, &self.settings, &one, (content.width, content.height), &self.style_dims())?;
        Ok(p.remove(0))
    }

    /// The blended Gram targets A = sum_k b_k A_k of the style images at `plan`'s style sizes
    /// (each colour-matched to `match_to` first when given). Cached by the style size unless
    /// colour-matched (then they depend on the content). With style masks, not blended: each
    /// style's own targets, style after style (regional styles weigh them per region).
    pub fn style_targets(&mut self, plan: &StagePlan, match_to: Option<&Planar>) -> Result<Vec<Tensor>> {
        let longest = plan.style_longest;
        if match_to.is_none() {
            if let Some(t) = self.cache.get(&longest) {
                return Ok(t.clone());
            }
        }
        let mut per_style = vec![];
        for (s, at) in self.styles.iter().zip(&plan.styles) {
            let (sw, sh) = (at.width, at.height);
            let mut img = image_io::resize_exact(s, sw as u32, sh as u32);
            if let Some(c) = match_to {
                img = color_match(&img, c);
            }
            let t = match at.tile {
                Some(t) => crate::tiled::style_targets(&self.ctx, &self.net, &self.settings, &img.data, sh, sw, t)?,
                None => compute_targets(&self.ctx, &self.net, &self.settings, &img.data, sh, sw, false, true)?.style,
            };
            self.style_target_passes += 1;
            per_style.push(t);
        }
        let blended = if !self.masks.is_empty() {
            per_style.into_iter().flatten().collect()
        } else if per_style.len() == 1 {
            per_style.pop().unwrap_or_default()
        } else {
            // One-time host-side mix (a few Gram matrices, outside the loop).
            let mut out = vec![];
            for l in 0..self.settings.style_layers.len() {
                let shape = per_style[0][l].shape;
                let mut acc = vec![0.0f32; per_style[0][l].len()];
                for (k, grams) in per_style.iter().enumerate() {
                    let g = grams[l].read(&self.ctx)?;
                    let b = self.blend[k];
                    for (a, v) in acc.iter_mut().zip(g) {
                        *a += b * v;
                    }
                }
                out.push(Tensor::from_slice(&self.ctx, shape, &acc, "blended style target")?);
            }
            out
        };
        if match_to.is_none() {
            self.cache.insert(longest, blended.clone());
        }
        Ok(blended)
    }

    /// The content at `plan`'s size, the style targets and the initial image: `init` (already at
    /// the stage's size) or, when None, `o.init`.
    pub(super) fn stage_inputs(
        &mut self,
        o: &RenderOptions,
        content: &Planar,
        plan: &StagePlan,
        init: Option<Vec<f32>>,
    ) -> Result<StageInputs> {
        let (w, h) = (plan.width, plan.height);
        let content = image_io::resize_exact(content, w as u32, h as u32);
        let style = self.style_targets(plan, o.color_match.then_some(&content))?;
        let init = match init {
            Some(v) => v,
            None => match &o.init {
                Init::Content => content.data.clone(),
                Init::Noise => noise(o.seed, 3 * w * h),
                Init::Image(p) => {
                    let i = load_input(p, &DecodeLimits::default())?;
                    image_io::resize_exact(&i, w as u32, h as u32).data
                }
            },
        };
        Ok(StageInputs { content, style, init })
    }

    /// An untiled stage for `content` (full resolution) as `plan` says, starting from `init`
    /// (already at the stage's size) or, when None, from `o.init`.
    pub fn stage(
        &mut self,
        o: &RenderOptions,
        content: &Planar,
        plan: &StagePlan,
        init: Option<Vec<f32>>,
    ) -> Result<Stage> {
        let (w, h) = (plan.width, plan.height);
        let r = o.edge.margin(&self.settings);
        check_fits(&self.ctx, w + 2 * r, h + 2 * r)?;
        let StageInputs { content, style, init } = self.stage_inputs(o, content, plan, init)?;
        let tc = compute_targets(&self.ctx, &self.net, &self.settings, &content.data, h, w, true, false)?;
        let adam = AdamConfig { lr: o.learning_rate(), clamp: Some((0.0, 1.0)), ..Default::default() };
        let (s, n) = (&self.settings, o.normalize_gradients);
        let mut graph = if self.masks.is_empty() && self.content_mask.is_none() {
            let targets = Targets { content: tc.content, style };
            Graph::new_with(&self.ctx, &self.net, s, &targets, &init, h, w, adam, n)?
        } else {
            let (cm, blend) = (self.content_mask.as_ref(), o.style_blend_weights.as_ref());
            let rg = regions(&self.ctx, s, &self.masks, cm, &style, blend, w, h)?;
            let style = if rg.styles.is_some() { vec![] } else { style };
            let targets = Targets { content: tc.content, style };
            Graph::new_regional(&self.ctx, &self.net, s, &targets, &rg, &init, h, w, adam, n)?
        };
        if o.optimizer == Optimizer::Lbfgs {
            let bounds = o.lbfgs_clamp.then_some((0.0, 1.0));
            graph.set_lbfgs(&self.ctx, LbfgsConfig { history: o.lbfgs_history, lr: o.learning_rate(), bounds })?;
        }
        let ema = if o.avg_decay > 0.0 {
            // As crowsonkb's EMA: the first value is the initial image itself.
            let e = Ema::new(&self.ctx, &graph.x, o.avg_decay)?;
            e.update(&self.ctx)?;
            Some(e)
        } else {
            None
        };
        Ok(Stage { graph, ema, width: w, height: h, content })
    }
}

/// The device, network and first stage of a render at `--size` for a single content image (for
/// `stylize evaluate`).
pub fn prepare(o: &RenderOptions) -> Result<(Engine, Stage)> {
    validate(o)?;
    if o.content.is_dir() || !o.content_list.is_empty() {
        return Err(Error::InvalidArgument("evaluate takes one content image, not a folder or a list".into()));
    }
    let content = load_checked(&o.content, &DecodeLimits::default())?;
    let (mut eng, plans) = Engine::new(o, Some(&content))?;
    // The last scale is at --size; evaluated untiled (one forward and backward).
    let Some(plan) = plans.and_then(|p| p.into_iter().last()) else {
        return Err(Error::InvalidArgument("no scales to evaluate".into()));
    };
    let st = eng.stage(o, &content, &plan, None)?;
    Ok((eng, st))
}

/// Losses and image gradient at the initial image, without optimising (for comparisons with
/// other implementations: `stylize evaluate`, tools/torch_compare.py).
pub fn evaluate(o: &RenderOptions) -> Result<(Losses, Vec<f32>, usize, usize)> {
    let (eng, st) = prepare(o)?;
    st.graph.evaluate(&eng.ctx)?;
    let l = st.graph.read_losses(&eng.ctx)?;
    let g = st.graph.grad.read(&eng.ctx)?;
    Ok((l, g, st.width, st.height))
}
