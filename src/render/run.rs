//! The stage loops (untiled and tiled) with the non-finite guard, and one frame's scales from
//! coarse to fine. Everything the caller sees goes through an [`Observer`]; nothing here touches
//! files or the terminal.

use super::checkpoint::{self, Checkpoint};
use super::engine::{Engine, Stage, StageInputs};
use super::observe::{Control, Observer, StageInfo, StepInfo, PAUSE_POLL};
use super::plan::StagePlan;
use super::temporal::Warped;
use super::{Optimizer, RenderOptions, NAN_CHECK_EVERY};
use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::lbfgs::LbfgsConfig;
use crate::gpu::{Context, Tensor};
use crate::image_io::transfer_luminance;
use crate::image_io::{self, Planar};
use crate::runner::Losses;
use crate::tiled::optim::TiledOptimizer;
use std::path::Path;
use std::time::{Duration, Instant};

/// A checkpoint to continue from, and its file (for messages).
pub(super) type Resume<'a> = Option<(&'a Checkpoint, &'a Path)>;

/// Whether a periodic checkpoint of the state after frame step `frame_step` is due.
fn checkpoint_due(o: &RenderOptions, frame_step: u32) -> bool {
    matches!(o.checkpoint_every, Some(n) if n > 0 && frame_step.is_multiple_of(n))
}

/// One stage (one scale of one frame) of a render.
#[derive(Clone, Debug)]
pub struct StageReport {
    /// Frame index.
    pub frame: usize,
    /// Scale index (0: coarsest).
    pub scale: usize,
    /// Working width in pixels.
    pub width: usize,
    /// Working height in pixels.
    pub height: usize,
    /// Steps run.
    pub steps: u32,
    /// Losses of the stage's initial image.
    pub first: Losses,
    /// Losses of the stage's result as written (the average when `--avg-decay` is on, clamped
    /// to \[0,1\]), before any colour post-processing.
    pub last: Losses,
    /// Milliseconds per optimiser iteration (the loop only).
    pub ms_per_iter: f64,
    /// Tiles per step (1: untiled; 0: a stage skipped on resume).
    pub tiles: usize,
    /// Some(k) when this render resumed the stage from a checkpoint taken after k of its steps
    /// (`ms_per_iter` then covers the other steps only); Some(`steps`) for a stage the
    /// interrupted render had finished, skipped here: its losses are then empty (unknown) and
    /// `ms_per_iter` 0. None: run whole.
    pub resumed_at: Option<u32>,
}

impl StageReport {
    fn new(info: &StageInfo, first: Losses, last: Losses, ms_per_iter: f64, tiles: usize) -> StageReport {
        let (frame, scale, width, height, steps) = (info.frame, info.scale, info.width, info.height, info.steps);
        StageReport { frame, scale, width, height, steps, first, last, ms_per_iter, tiles, resumed_at: None }
    }

    /// A stage the interrupted render had finished, skipped on resume.
    fn skipped(frame: usize, plan: &StagePlan) -> StageReport {
        let (scale, width, height, steps) = (plan.scale, plan.width, plan.height, plan.steps);
        let (first, last) = (Losses::default(), Losses::default());
        StageReport {
            frame,
            scale,
            width,
            height,
            steps,
            first,
            last,
            ms_per_iter: 0.0,
            tiles: 0,
            resumed_at: Some(steps),
        }
    }

    /// Steps this render ran of the stage.
    pub fn steps_run(&self) -> u32 {
        self.steps - self.resumed_at.unwrap_or(0).min(self.steps)
    }
}

/// How a stage, a frame or a render ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every step ran.
    Finished,
    /// The observer asked to stop after `step` steps of the frame; the image is the current one.
    Stopped {
        /// Steps of the frame that ran.
        step: u32,
    },
    /// The losses or the gradient became NaN or infinite at frame step `step`; the image is the
    /// last good one, from frame step `good_step`.
    NonFinite {
        /// The frame step whose losses were not finite.
        step: u32,
        /// The frame step of the image returned.
        good_step: u32,
    },
}

/// How one stage ended: its report (when it finished), the image (raw pixels at the stage's
/// size) and the content at that size.
struct StageOut {
    report: Option<StageReport>,
    image: Vec<f32>,
    content: Planar,
    ended: Ended,
}

/// How one frame ended.
pub(super) struct FrameOut {
    /// The output, colour post-processing applied.
    pub(super) image: Planar,
    /// The optimised pixels before post-processing (the next frame's temporal init).
    pub(super) raw: Planar,
    /// Every finished stage.
    pub(super) stages: Vec<StageReport>,
    pub(super) ended: Ended,
}

/// Asks the observer what to do before a step, waiting while it says pause (asking again every
/// [`PAUSE_POLL`], with the GPU idle); the time paused is added to `idle`, which the stage's
/// milliseconds per iteration leave out.
fn next_control(obs: &mut dyn Observer, idle: &mut Duration) -> Control {
    let mut c = obs.control();
    if c == Control::Pause {
        let t = Instant::now();
        while c == Control::Pause {
            std::thread::sleep(PAUSE_POLL);
            c = obs.control();
        }
        *idle += t.elapsed();
    }
    c
}

/// Milliseconds per step of a loop that ran `steps` steps since `start`, less `idle`.
fn ms_per_step(start: Instant, idle: Duration, steps: u32) -> f64 {
    start.elapsed().saturating_sub(idle).as_secs_f64() * 1000.0 / steps.max(1) as f64
}

/// The output image from raw pixels at `content`'s size (colour post-processing applied).
fn finish(o: &RenderOptions, data: Vec<f32>, content: &Planar) -> Planar {
    let img = Planar { width: content.width, height: content.height, data };
    if o.original_colors {
        transfer_luminance(&img, content)
    } else {
        img
    }
}

/// Runs every stage of one frame (`plans`, coarse to fine) on `content` (full resolution): each
/// scale starts from the previous one's result upsampled, the first from `previous` (the previous
/// frame's result, for `--temporal-init`) or the options' init. Stops at the first stage that
/// does not finish. With `resume`, the stages before the checkpoint's are skipped and its stage
/// continues from the state it holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_frame(
    eng: &mut Engine,
    o: &RenderOptions,
    content: &Planar,
    plans: &[StagePlan],
    previous: Option<&Planar>,
    previous_content: Option<&Planar>,
    (frame, frames): (usize, usize),
    t0: Instant,
    obs: &mut dyn Observer,
    mut resume: Resume,
) -> Result<FrameOut> {
    let frame_steps: u32 = plans.iter().map(|p| p.steps).sum();
    let mut stages = vec![];
    let mut result: Option<(Planar, Planar)> = None;
    let mut offset = 0;
    for plan in plans {
        if let Some((ck, path)) = resume {
            if plan.scale < ck.scale {
                offset += plan.steps;
                stages.push(StageReport::skipped(frame, plan));
                continue;
            }
            if plan.scale > ck.scale || (plan.width, plan.height) != ck.size || ck.step > plan.steps {
                return Err(Error::InvalidArgument(format!(
                    "cannot resume from {}: its stage (scale {}, {}x{}, step {}) is not one of this render's",
                    path.display(),
                    ck.scale,
                    ck.size.0,
                    ck.size.1,
                    ck.step
                )));
            }
        }
        let (w, h) = (plan.width as u32, plan.height as u32);
        let mut init = match (&result, previous) {
            (Some((r, _)), _) => Some(image_io::resize_exact(r, w, h).data),
            (None, Some(p)) => Some(image_io::resize_exact(p, w, h).data),
            _ => None,
        };
        let info = StageInfo {
            frame,
            frames,
            scale: plan.scale,
            scales: plans.len(),
            width: plan.width,
            height: plan.height,
            steps: plan.steps,
            step_offset: offset,
            frame_steps,
            tiles: None,
        };
        // --temporal-weight: the previous output warped into this frame by the flow between the
        // content frames; the frame's first stage starts from it (Ruder et al.'s init).
        let warped = match (o.temporal_weight > 0.0, previous, previous_content) {
            (true, Some(p), Some(pc)) => {
                if plan.tile.is_some() {
                    return Err(Error::InvalidArgument(
                        "--temporal-weight does not work with tiled rendering; use --tile off with a smaller --size"
                            .into(),
                    ));
                }
                let wp = Warped::new(&eng.ctx, &o.flow, pc, content, p, (plan.width, plan.height))?;
                obs.notice(&format!(
                    "frame {}: optical flow at {}x{} in {:.0} ms, {:.1}% of the pixels trusted",
                    frame + 1,
                    plan.width,
                    plan.height,
                    wp.ms,
                    100.0 * wp.trusted(&eng.ctx)?
                ));
                if result.is_none() {
                    init = Some(wp.target.read(&eng.ctx)?);
                }
                Some(wp)
            }
            _ => None,
        };
        let out = match plan.tile {
            Some(tile) => run_tiled_stage(eng, o, content, plan, tile, init, info, t0, obs, resume)?,
            None => {
                let mut st = eng.stage(o, content, plan, init)?;
                if let Some(wp) = &warped {
                    st.graph.add_temporal(&eng.ctx, &wp.target, &wp.mask, o.temporal_weight)?;
                }
                run_stage(&eng.ctx, o, &st, info, t0, obs, resume)?
            }
        };
        let mut report = out.report;
        if let (Some(r), Some((ck, _))) = (&mut report, resume.take()) {
            r.resumed_at = Some(ck.step);
        }
        stages.extend(report);
        let raw = Planar { width: w, height: h, data: out.image };
        if out.ended != Ended::Finished {
            let image = finish(o, raw.data.clone(), &out.content);
            return Ok(FrameOut { image, raw, stages, ended: out.ended });
        }
        offset += plan.steps;
        result = Some((raw, out.content));
    }
    let Some((raw, content)) = result else {
        return Err(Error::InvalidArgument("no scales to render".into()));
    };
    let image = finish(o, raw.data.clone(), &content);
    Ok(FrameOut { image, raw, stages, ended: Ended::Finished })
}

/// A stage too large for one GPU graph: exact tiled optimisation (src/tiled.rs), the image and
/// the optimiser's state (Adam or L-BFGS, and the average) in host memory, each step two passes
/// over the tiles.
#[allow(clippy::too_many_arguments)]
fn run_tiled_stage(
    eng: &mut Engine,
    o: &RenderOptions,
    content: &Planar,
    plan: &StagePlan,
    tile: usize,
    init: Option<Vec<f32>>,
    mut info: StageInfo,
    t0: Instant,
    obs: &mut dyn Observer,
    resume: Resume,
) -> Result<StageOut> {
    let (w, h, steps) = (plan.width, plan.height, plan.steps);
    let StageInputs { content, style, init } = eng.stage_inputs(o, content, plan, init)?;
    let mut tg =
        crate::tiled::TiledGraph::new(&eng.ctx, &eng.net, &eng.settings, (&content.data, h, w), style, &init, tile)?;
    info.tiles = Some((tg.tiles.len(), tile));
    let ctx = &eng.ctx;
    let mut opt = tiled_optimizer(o, &tg.image);
    // A resumed stage continues after step `start`; `pending`: whether step `start` is still to
    // be reported (a stop's checkpoint was taken after the report).
    let (first, start, mut good, pending) = match resume {
        Some((ck, path)) => {
            let (good, first) = checkpoint::restore_tiled(&mut tg, &mut opt, ck, path)?;
            if ck.step == 0 {
                // Step 1 uses the gradient of the initial image (the others measure their own).
                tg.evaluate(ctx, &eng.net)?;
            }
            obs.stage_started(&info, &first, t0.elapsed().as_secs_f64())?;
            (first, ck.step, (good, ck.good_step), ck.pending)
        }
        None => {
            tg.evaluate(ctx, &eng.net)?;
            let first = tg.read_losses(ctx)?;
            obs.stage_started(&info, &first, t0.elapsed().as_secs_f64())?;
            let good = (tg.image.clone(), info.step_offset);
            (first, 0, good, false)
        }
    };
    let mut last = first.clone();
    let t_stage = Instant::now();
    let mut idle = Duration::ZERO;
    // Each pass over the tiles gives the losses of the current image, the image after
    // `step - 1` updates: step k is reported (with its losses) once step k + 1's pass ran, and
    // the last step after one more pass.
    for step in start + 1..=steps {
        let frame_step = info.step_offset + step;
        if step > start + 1 && checkpoint_due(o, frame_step - 1) {
            // The host holds the whole state: the image after step - 1, not yet reported.
            let mut ck = checkpoint::capture_tiled(ctx, &tg, &opt, &good.0, &first);
            ck.at(&info, step - 1, good.1, step > 1);
            obs.checkpoint(&info, &mut ck)?;
        }
        if step > 1 {
            if let Err(e) = tg.evaluate(ctx, &eng.net) {
                // A lost GPU leaves the host-side state whole: keep it (best effort, the
                // error that ended the stage is what is reported).
                if o.checkpoint_every.is_some() {
                    let mut ck = checkpoint::capture_tiled(ctx, &tg, &opt, &good.0, &first);
                    ck.at(&info, step - 1, good.1, true);
                    let _ = obs.checkpoint(&info, &mut ck);
                }
                return Err(e);
            }
            last = tg.read_losses(ctx)?;
        }
        // Every step's losses are at hand here (tiles are read back anyway): check each.
        if !last.total().is_finite() || tg.grad.iter().any(|v| !v.is_finite()) {
            let ended = Ended::NonFinite { step: frame_step - 1, good_step: good.1 };
            return Ok(StageOut { report: None, image: good.0, content, ended });
        }
        // Into the kept buffer: a copy, but no allocation per step (the image can be GBs).
        good.0.clone_from(&tg.image);
        good.1 = frame_step - 1;
        if step > 1 && (step > start + 1 || pending) {
            report_step(o, obs, &info, step - 1, Some(&last), t0)?;
        }
        if next_control(obs, &mut idle) == Control::Stop {
            if o.checkpoint_every.is_some() {
                let mut ck = checkpoint::capture_tiled(ctx, &tg, &opt, &good.0, &first);
                ck.at(&info, step - 1, good.1, false);
                obs.checkpoint(&info, &mut ck)?;
            }
            let ended = Ended::Stopped { step: frame_step - 1 };
            return Ok(StageOut { report: None, image: opt.output(&tg.image), content, ended });
        }
        opt.step(&mut tg.image, &tg.grad);
        if obs.wants_image(&info, frame_step) {
            obs.image(&info, frame_step, &finish(o, opt.output(&tg.image), &content))?;
        }
    }
    let ms_per_iter = ms_per_step(t_stage, idle, steps - start);
    // What is written, as the untiled stage: the average with --avg-decay, clamped to [0,1];
    // its losses are the stage's last.
    tg.image = opt.output(&tg.image);
    tg.image.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    if steps > 0 || opt.ema.is_some() {
        tg.evaluate(ctx, &eng.net)?;
        last = tg.read_losses(ctx)?;
        if !last.total().is_finite() {
            let ended = Ended::NonFinite { step: info.step_offset + steps, good_step: good.1 };
            return Ok(StageOut { report: None, image: good.0, content, ended });
        }
    }
    if steps > 0 {
        report_step(o, obs, &info, steps, Some(&last), t0)?;
    }
    let report = StageReport::new(&info, first, last, ms_per_iter, tg.tiles.len());
    Ok(StageOut { report: Some(report), image: tg.image, content, ended: Ended::Finished })
}

/// A tiled stage's optimiser under `o`, with the options an untiled stage's has (engine.rs),
/// averaging from the initial image `x0` with `--avg-decay`.
fn tiled_optimizer(o: &RenderOptions, x0: &[f32]) -> TiledOptimizer {
    let opt = match o.optimizer {
        Optimizer::Adam => {
            let cfg = AdamConfig { lr: o.learning_rate(), clamp: Some((0.0, 1.0)), ..Default::default() };
            TiledOptimizer::adam(x0.len(), cfg)
        }
        Optimizer::Lbfgs => {
            let bounds = o.lbfgs_clamp.then_some((0.0, 1.0));
            TiledOptimizer::lbfgs(LbfgsConfig { history: o.lbfgs_history, lr: o.learning_rate(), bounds })
        }
    };
    match o.avg_decay > 0.0 {
        true => opt.average(o.avg_decay, x0),
        false => opt,
    }
}

/// Tells the observer that stage step `step` is done; `losses` are those of the image after it.
fn report_step(
    o: &RenderOptions,
    obs: &mut dyn Observer,
    info: &StageInfo,
    step: u32,
    losses: Option<&Losses>,
    t0: Instant,
) -> Result<()> {
    let print = o.print_every > 0 && (step.is_multiple_of(o.print_every) || step == info.steps);
    let elapsed_s = t0.elapsed().as_secs_f64();
    obs.step(&StepInfo { stage: info, step, frame_step: info.step_offset + step, losses, print, elapsed_s })
}

/// An untiled stage: every step one command buffer, losses read back only where wanted.
///
/// The forward pass of update k measures the image after k - 1 updates, so the losses of the
/// image after step k (a print step or a non-finite check) are read from update k + 1's pass and
/// step k is reported then; the image after the last step gets one forward pass of its own.
/// Nothing is read back or evaluated twice for this.
fn run_stage(
    ctx: &Context,
    o: &RenderOptions,
    st: &Stage,
    info: StageInfo,
    t0: Instant,
    obs: &mut dyn Observer,
    resume: Resume,
) -> Result<StageOut> {
    let steps = info.steps;
    let graph = &st.graph;
    let mut candidate = Tensor::new(ctx, graph.x.shape, "candidate image")?;
    let mut good = Tensor::new(ctx, graph.x.shape, "last good image")?;
    // A resumed stage continues after step `start` with the state the checkpoint holds; the
    // pass that would measure its initial image is not run again.
    let (first, start, mut pending, mut good_step) = match resume {
        Some((ck, path)) => {
            let first = checkpoint::restore_stage(ctx, st, &good, ck, path)?;
            obs.stage_started(&info, &first, t0.elapsed().as_secs_f64())?;
            (first, ck.step, ck.pending, ck.good_step)
        }
        None => {
            good.write(ctx, &graph.read_image(ctx)?);
            graph.evaluate(ctx)?;
            let first = graph.read_losses(ctx)?;
            obs.stage_started(&info, &first, t0.elapsed().as_secs_f64())?;
            (first, 0, false, info.step_offset)
        }
    };
    let mut last = first.clone();
    // Non-finite guard: every `check` steps the losses are read (a few bytes) and, when finite,
    // the image they were computed from (copied on the GPU just before the next update) becomes
    // the last good image; a NaN/Inf ends the stage with that image.
    let check = match o.print_every {
        0 => NAN_CHECK_EVERY,
        p => p.min(NAN_CHECK_EVERY),
    };
    let printed = |k: u32| o.print_every > 0 && k.is_multiple_of(o.print_every);
    // Steps whose losses are read from the next update's pass (the last step has its own).
    let wanted = |k: u32| k < steps && (printed(k) || k.is_multiple_of(check));
    let t_stage = Instant::now();
    let mut idle = Duration::ZERO;
    // `pending`: whether the image after the previous step awaits its losses (and its report).
    let mut in_flight = None;
    for step in start + 1..=steps {
        let frame_step = info.step_offset + step;
        let due = step > start + 1 && checkpoint_due(o, frame_step - 1);
        let stop = next_control(obs, &mut idle) == Control::Stop;
        if due || (stop && o.checkpoint_every.is_some()) {
            // The state after step - 1, before any pass measures it (so the resumed run's
            // first update measures and reports it as this run would have).
            let mut ck = checkpoint::capture_stage(ctx, st, &good, &first)?;
            ck.at(&info, step - 1, good_step, pending);
            obs.checkpoint(&info, &mut ck)?;
        }
        if stop {
            if pending {
                graph.evaluate(ctx)?;
                let l = graph.read_losses(ctx)?;
                report_step(o, obs, &info, step - 1, Some(&l), t0)?;
            }
            let mut image = st.read_output(ctx)?;
            if image.iter().any(|v| !v.is_finite()) {
                image = good.read(ctx)?;
            }
            let ended = Ended::Stopped { step: frame_step - 1 };
            return Ok(StageOut { report: None, image, content: st.content.clone(), ended });
        }
        st.step(ctx, pending.then_some(&candidate))?;
        // Wait for the previous step, not this one: the CPU records and submits step k + 1 while
        // the GPU runs step k (readbacks below wait for everything anyway).
        if let Some(prev) = in_flight.replace(ctx.submitted()) {
            ctx.wait_for(prev)?;
        }
        if pending {
            last = graph.read_losses(ctx)?;
            if !last.total().is_finite() {
                let ended = Ended::NonFinite { step: frame_step - 1, good_step };
                return Ok(StageOut { report: None, image: good.read(ctx)?, content: st.content.clone(), ended });
            }
            std::mem::swap(&mut candidate, &mut good);
            good_step = frame_step - 1;
            report_step(o, obs, &info, step - 1, Some(&last), t0)?;
        }
        if o.fault_nan_at == Some(frame_step) {
            // Test hook: the image after this step becomes NaN.
            graph.x.fill(ctx, f32::NAN);
        }
        pending = wanted(step);
        if !pending && step < steps {
            report_step(o, obs, &info, step, None, t0)?;
        }
        if obs.wants_image(&info, frame_step) {
            obs.image(&info, frame_step, &finish(o, st.read_output(ctx)?, &st.content))?;
        }
    }
    let ms_per_iter = ms_per_step(t_stage, idle, steps - start);
    // What is written: the average with --avg-decay, clamped to [0,1] as the image file is
    // (L-BFGS iterates are not kept in [0,1]); its losses are the stage's last.
    let mut image = st.read_output(ctx)?;
    image.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    if steps > 0 || st.ema.is_some() {
        // One more forward pass (no update) for the losses of that image.
        graph.x.write(ctx, &image);
        graph.evaluate(ctx)?;
        last = graph.read_losses(ctx)?;
        if !last.total().is_finite() {
            let ended = Ended::NonFinite { step: info.step_offset + steps, good_step };
            return Ok(StageOut { report: None, image: good.read(ctx)?, content: st.content.clone(), ended });
        }
    }
    if steps > 0 {
        report_step(o, obs, &info, steps, Some(&last), t0)?;
    }
    let report = StageReport::new(&info, first, last, ms_per_iter, 1);
    Ok(StageOut { report: Some(report), image, content: st.content.clone(), ended: Ended::Finished })
}
