//! The library entry point for other Rust programs: images and weights in memory in, the
//! stylised image and its loss history out, with progress and cancellation through an
//! [`Observer`]. No printing and no signal handlers; the only file it touches is the conv tuning
//! table in the cache folder (see [`RenderOptions::tune`]; `Some(TuneMode::Off)` leaves it
//! alone). It neither writes nor resumes checkpoints (`checkpoint_every` and `resume` are
//! refused): the files-to-files [`render`](super::render) does.
//!
//! [`RenderOptions::tune`]: super::RenderOptions::tune

use super::engine::{check_side, Engine};
use super::observe::{Control, Observer, RenderInfo, StageInfo, StepInfo};
use super::run::{run_frame, Ended, StageReport};
use super::{validate_settings, RenderOptions};
use crate::error::{Error, Result};
use crate::image_io::Planar;
use crate::model::{Model, ModelEvidence};
use crate::runner::Losses;
use crate::weights::VggWeights;
use std::time::Instant;

/// The losses at one step of a render.
#[derive(Clone, Debug, PartialEq)]
pub struct LossRecord {
    /// Scale index (0: coarsest).
    pub scale: usize,
    /// Step within the render, over every scale (0: the first stage's initial image).
    pub step: u32,
    /// Working width at that scale.
    pub width: usize,
    /// Working height at that scale.
    pub height: usize,
    /// The weighted loss terms.
    pub losses: Losses,
}

/// What [`stylize`] returns.
#[derive(Clone, Debug)]
pub struct Stylized {
    /// The result at the size of the last stage that ran (colour post-processing applied); the
    /// last scale's size unless the render ended early. When the render
    /// was stopped it is the current image; when the losses became non-finite, the last good one.
    pub image: Planar,
    /// The losses of every stage's initial image and of every step where they were read back
    /// (`print_every`, the non-finite checks, each stage's last step).
    pub history: Vec<LossRecord>,
    /// Every finished stage.
    pub stages: Vec<StageReport>,
    /// Whether every step ran.
    pub ended: Ended,
    /// The adapter it ran on.
    pub adapter: String,
}

/// Stylises `content` with `styles` (RGB in [0, 1], any sizes) using `weights` (at least the
/// conv layers the chosen taps need), as `options` say, on the adapter `options.adapter` names
/// (empty: the best one). The fields of `options` that name files (`content`, `content_list`,
/// `styles`, `output`, `preview`, `log_json`, `weights`, `save_every`) are not used here: the
/// inputs come in memory and `observer` receives the progress (and any image it asks for).
/// `checkpoint_every` and `resume` are refused (checkpoints belong to the files-to-files render).
///
/// ```
/// use stylize::image_io::synthetic_photo;
/// use stylize::render::{stylize, RenderOptions};
/// let content = synthetic_photo(64, 48, 1);
/// let style = stylize::image_io::synthetic_painting(64, 64, 2);
/// let weights = stylize::weights::random(0, 16);
/// let o = RenderOptions { size: 32, steps: 10, ..Default::default() };
/// let out = stylize(&content, &[style], &weights, &o, &mut ()).unwrap();
/// assert_eq!((out.image.width, out.image.height), (32, 24));
/// ```
pub fn stylize(
    content: &Planar,
    styles: &[Planar],
    weights: &VggWeights,
    options: &RenderOptions,
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    let o = options;
    validate_settings(o, styles.len())?;
    if o.resume.is_some() || o.checkpoint_every.is_some() {
        // A checkpoint's digest covers files (inputs, output, log) this in-memory render lacks.
        return Err(Error::InvalidArgument(
            "checkpoint_every, resume: stylize() renders in memory and neither writes nor resumes \
             checkpoints; render::render does"
                .into(),
        ));
    }
    check_side("the content image", content)?;
    for s in styles {
        check_side("a style image", s)?;
    }
    // A few leading layers both models share say nothing about the model.
    let evidence = if weights.layers.len() <= Model::shared_layers() {
        ModelEvidence::Shared(weights.layers.len())
    } else {
        ModelEvidence::Known(weights.model)
    };
    let load = |_: Model, needed: usize| {
        let layers = weights.layers.iter().take(needed).cloned().collect();
        Ok((layers, weights.convention, weights.source.clone()))
    };
    let (mut eng, plans) = Engine::from_parts(o, styles.to_vec(), Some(content), (evidence, &weights.source), load)?;
    let plans = plans.unwrap_or_default();
    let info = eng.info(&plans, 1);
    let mut history = History { inner: observer, records: vec![] };
    history.started(&info);
    let out = run_frame(&mut eng, o, content, &plans, None, None, (0, 1), Instant::now(), &mut history, None)?;
    Ok(Stylized {
        image: out.image,
        history: history.records,
        stages: out.stages,
        ended: out.ended,
        adapter: info.adapter,
    })
}

/// Records the loss history, passing every event on.
struct History<'a> {
    inner: &'a mut dyn Observer,
    records: Vec<LossRecord>,
}

impl Observer for History<'_> {
    fn started(&mut self, info: &RenderInfo) {
        self.inner.started(info)
    }

    fn stage_started(&mut self, stage: &StageInfo, first: &Losses, elapsed_s: f64) -> Result<()> {
        self.records.push(LossRecord {
            scale: stage.scale,
            step: stage.step_offset,
            width: stage.width,
            height: stage.height,
            losses: first.clone(),
        });
        self.inner.stage_started(stage, first, elapsed_s)
    }

    fn control(&mut self) -> Control {
        self.inner.control()
    }

    fn step(&mut self, s: &StepInfo) -> Result<()> {
        if let Some(l) = s.losses {
            let st = s.stage;
            let (scale, width, height) = (st.scale, st.width, st.height);
            self.records.push(LossRecord { scale, step: s.frame_step, width, height, losses: l.clone() });
        }
        self.inner.step(s)
    }

    fn wants_image(&mut self, stage: &StageInfo, frame_step: u32) -> bool {
        self.inner.wants_image(stage, frame_step)
    }

    fn image(&mut self, stage: &StageInfo, frame_step: u32, image: &Planar) -> Result<()> {
        self.inner.image(stage, frame_step, image)
    }
}
