//! `stylize render`'s files-to-files driver: frames and outputs planned from the options, every
//! frame through [`super::run`], results written atomically with the settings that reproduce
//! them, plus snapshots, previews and the `--log-json` loss log on the way.

use super::batch::{check_existing, forget_record, write_record, Existing};
use super::checkpoint::{self, checkpoint_path, digest, file_sha256, Checkpoint};
use super::command::settings_text;
use super::engine::{load_checked, Engine};
use super::log::JsonLog;
use super::observe::{Control, Observer, RenderInfo, StageInfo, StepInfo};
use super::plan::{plan_frames, Frame};
use super::run::{run_frame, Ended, StageReport};
use super::{steps_per_scale, validate, Init, RenderOptions, WeightsSource};
use crate::error::{Error, Result};
use crate::image_io::{self, DecodeLimits, Planar, SaveOptions};
use crate::runner::Losses;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a finished render reports.
#[derive(Clone, Debug)]
pub struct RenderReport {
    /// The adapter it ran on.
    pub adapter: String,
    /// Width of the last output.
    pub width: usize,
    /// Height of the last output.
    pub height: usize,
    /// Optimiser steps in all, over every scale and frame.
    pub steps: u32,
    /// Losses at the start of the first stage.
    pub first: Losses,
    /// Losses at the end of the last stage.
    pub last: Losses,
    /// Milliseconds per optimiser iteration over every stage (the loops only).
    pub ms_per_iter: f64,
    /// Every stage in order (frame-major).
    pub stages: Vec<StageReport>,
    /// The images written, one per frame rendered.
    pub outputs: Vec<PathBuf>,
    /// Batch outputs left as they were: complete, with the same settings (see [`check_existing`]).
    pub skipped: Vec<PathBuf>,
    /// Seconds spent measuring conv variants, and the shapes measured.
    pub tuning: (f64, usize),
    /// Every problem the kernel tuner met (its table unreadable, corrupt or foreign, or not
    /// saved), one line each; those known at the start were also in [`RenderInfo`].
    pub tune_warnings: Vec<String>,
    /// Forward passes spent on style targets (one per style image and style size): the targets
    /// are computed once and reused by every frame unless `--color-match` ties them to a frame.
    pub style_target_passes: usize,
}

/// Runs a whole render (every frame, every scale) and writes the outputs atomically, observing
/// nothing (see [`render_with`]).
pub fn render(o: &RenderOptions) -> Result<RenderReport> {
    render_with(o, &mut ())
}

/// Runs a whole render (every frame, every scale), writes the outputs atomically and reports its
/// progress to `observer`. When the observer stops it, the current image is saved and
/// [`Error::Interrupted`] returned; when the losses become NaN or infinite, the last good image
/// is saved and [`Error::NonFinite`] returned.
pub fn render_with(o: &RenderOptions, observer: &mut dyn Observer) -> Result<RenderReport> {
    validate(o)?;
    let (all, batch) = plan_frames(o)?;
    if !batch && !o.output.as_os_str().is_empty() {
        image_io::check_output_path(&o.output)?;
    }
    // Every output's format must hold the bit depth before the first frame, not halfway through.
    if batch {
        for f in &all {
            image_io::check_bit_depth(&f.output, o.bit_depth)?;
        }
    }
    let range = shard_range(o, &all, batch, observer)?;
    let resume = resume_checkpoint(o, &all, &range)?;
    let frames = &all[range.clone()];
    if frames.is_empty() {
        return Ok(RenderReport::nothing(String::new(), vec![]));
    }
    let limits = DecodeLimits::default();
    // Check the first content image before the slow setup (a typo should fail at once).
    let first_content = load_checked(&frames[0].content, &limits)?;
    if batch {
        std::fs::create_dir_all(&o.output)
            .map_err(|e| Error::Io { path: o.output.display().to_string(), source: e })?;
        image_io::check_output_path(&frames[0].output)?;
    }
    let (mut eng, mut first_plans) = Engine::new(o, Some(&first_content))?;
    if let Some((ck, p)) = &resume {
        // Before any stage is built: the resumed stages compute with the interrupted run's kernels.
        checkpoint::pin_kernels(&eng.ctx, ck, p)?;
    }
    let frame_steps: u32 = steps_per_scale(o).iter().sum();
    let info = eng.info(first_plans.as_deref().unwrap_or_default(), frames.len());
    let log = match (&o.log_json, resume.as_ref().and_then(|(ck, _)| ck.log_len)) {
        (Some(p), Some(len)) => Some(JsonLog::resume(p, len)?),
        (Some(p), None) => Some(JsonLog::create(p)?),
        (None, _) => None,
    };
    let inputs = if o.checkpoint_every.is_some() || resume.is_some() { digest_inputs(o, &eng)? } else { vec![] };
    let mut files = FilesObserver {
        o,
        log,
        inner: observer,
        output: PathBuf::new(),
        text: vec![],
        save: Default::default(),
        inner_wants: false,
        checkpoint: PathBuf::new(),
        digest: vec![],
        resumed: false,
    };
    files.started(&info);
    let t0 = Instant::now();
    let mut stages = vec![];
    let mut outputs = vec![];
    let mut skipped = vec![];
    let text_of =
        |eng: &Engine, i: usize| settings_text(o, &eng.settings, &eng.source, batch.then_some(&all[i].content));
    let complete = |eng: &Engine, i: usize| check_existing(&all[i].output, &text_of(eng, i), frame_steps);
    // A temporal chain continues from the frame before this shard's first when that output is
    // complete (rendered by the previous shard or an earlier run), else starts from --init.
    let mut previous: Option<Planar> = None;
    let mut previous_file: Option<PathBuf> = None;
    // --temporal-weight chains the frames as --temporal-init does (it needs the previous output).
    let chain = o.temporal_init || o.temporal_weight > 0.0;
    if chain && range.start > 0 {
        let before = &all[range.start - 1].output;
        let state = complete(&eng, range.start - 1);
        let first = frames[0].content.display();
        files.notice(&match state {
            Existing::Complete => format!("temporal init: {first} starts from {}", before.display()),
            _ => format!("temporal init: {first} starts from --init ({} is not complete yet)", before.display()),
        });
        previous_file = (state == Existing::Complete).then(|| before.clone());
    }
    for (k, frame) in frames.iter().enumerate() {
        let fi = range.start + k;
        // Frames before the checkpoint's were finished by the interrupted run.
        if matches!(&resume, Some((ck, _)) if fi < ck.frame) {
            (previous, previous_file) = (None, Some(frame.output.clone()));
            continue;
        }
        let text = text_of(&eng, fi);
        let frame_resume = resume.as_ref().filter(|(ck, _)| ck.frame == fi).map(|(ck, p)| (ck, *p));
        if o.checkpoint_every.is_some() || frame_resume.is_some() {
            let mut d = inputs.clone();
            d.insert(0, (format!("content {} (SHA-256)", frame.content.display()), file_sha256(&frame.content)?));
            files.digest = digest(&text, &d);
            files.checkpoint = checkpoint_path(&frame.output);
        }
        if let Some((ck, p)) = frame_resume {
            ck.check_digest(p, &files.digest)?;
            files.resumed = true;
        }
        if batch && !o.overwrite {
            let state = check_existing(&frame.output, &text, frame_steps);
            if state != Existing::Missing {
                files.notice(&state.describe(&frame.output));
            }
            if state == Existing::Complete {
                skipped.push(frame.output.clone());
                (previous, previous_file) = (None, Some(frame.output.clone()));
                continue;
            }
        }
        let content = if k == 0 { first_content.clone() } else { load_checked(&frame.content, &limits)? };
        // Every stage of this frame, planned once (the first frame's while checking the sizes).
        let plans = match (k, first_plans.take()) {
            (0, Some(p)) => p,
            _ => eng.plan(o, &content)?,
        };
        if let (true, None, Some(f)) = (chain, &previous, previous_file.take()) {
            previous = Some(load_checked(&f, &limits)?);
        }
        files.output = frame.output.clone();
        files.text = text.clone();
        // The content's colour profile goes into every image of its frame (its pixels are the
        // content's values, optimised).
        // An unreadable profile is metadata lost, not a reason to stop a batch: warn, go on.
        let icc = match frame.content.is_file() {
            true => image_io::load_icc_profile(&frame.content).unwrap_or_else(|e| {
                files.notice(&format!("warning: {e}; {} gets no colour profile", frame.output.display()));
                None
            }),
            false => None,
        };
        files.save = SaveOptions { bit_depth: o.bit_depth, icc_profile: icc };
        let opts = files.save.clone();
        files.inner.frame_output(fi, &frame.output, &text, &opts);
        let prev = previous.as_ref().filter(|_| chain);
        // The flow of --temporal-weight runs between this content frame and the one before.
        let prev_content = match (o.temporal_weight > 0.0, prev, fi) {
            (true, Some(_), 1..) => Some(load_checked(&all[fi - 1].content, &limits)?),
            _ => None,
        };
        let (pc, fs) = (prev_content.as_ref(), (fi, all.len()));
        let out = run_frame(&mut eng, o, &content, &plans, prev, pc, fs, t0, &mut files, frame_resume)?;
        stages.extend(out.stages);
        if batch {
            forget_record(&frame.output)?;
        }
        let step = match out.ended {
            Ended::Finished => frame_steps,
            Ended::Stopped { step } => step,
            Ended::NonFinite { good_step, .. } => good_step,
        };
        save(&frame.output, &out.image, &text, step, &opts)?;
        files.inner.saved(fi, step, &frame.output, &out.image);
        if batch {
            write_record(&frame.output, &text, step)?;
        }
        end_frame(o, &frame.output, &files.checkpoint, &out.ended)?;
        if let Some(p) = &o.preview {
            save(p, &out.image, &text, frame_steps, &opts)?;
        }
        outputs.push(frame.output.clone());
        previous = Some(out.raw);
    }
    Ok(report(&eng, stages, outputs, skipped, frame_steps))
}

/// After a frame's image is saved: a finished frame's checkpoint removed (a stale one would
/// resume a done render); a stopped or non-finite one ends the render with its error.
fn end_frame(o: &RenderOptions, output: &Path, checkpoint: &Path, ended: &Ended) -> Result<()> {
    match *ended {
        Ended::Finished => {
            // A finished frame needs no checkpoint; a stale one would resume a done render.
            if !checkpoint.as_os_str().is_empty() && checkpoint.exists() {
                std::fs::remove_file(checkpoint)
                    .map_err(|e| Error::Io { path: checkpoint.display().to_string(), source: e })?;
            }
        }
        Ended::Stopped { step } => {
            let mut saved = output.display().to_string();
            if o.checkpoint_every.is_some() {
                saved += &format!(" (continue with --resume {})", checkpoint.display());
            }
            return Err(Error::Interrupted { step, saved: Some(saved) });
        }
        Ended::NonFinite { step, good_step } => {
            let saved = Some(format!("{} (step {good_step})", output.display()));
            return Err(Error::NonFinite { step, saved });
        }
    }
    Ok(())
}

/// The whole render's report from its stages' and outputs.
fn report(
    eng: &Engine,
    stages: Vec<StageReport>,
    outputs: Vec<PathBuf>,
    skipped: Vec<PathBuf>,
    frame_steps: u32,
) -> RenderReport {
    let total_steps = frame_steps * outputs.len() as u32;
    // Optimisation loops only (not loading, targets or graph building), as for one stage.
    // (Resumed stages: the steps this render ran.)
    let run: u32 = stages.iter().map(|s| s.steps_run()).sum();
    let ms_per_iter = stages.iter().map(|s| s.ms_per_iter * s.steps_run() as f64).sum::<f64>() / run.max(1) as f64;
    // The first stage this render ran (a resumed one knows its initial losses, a skipped one not).
    let (Some(f), Some(l)) = (stages.iter().find(|s| s.steps_run() > 0 || s.resumed_at.is_none()), stages.last())
    else {
        // Every frame of the batch (or shard) was complete already.
        return RenderReport::nothing(eng.ctx.describe(), skipped);
    };
    RenderReport {
        adapter: eng.ctx.describe(),
        width: l.width,
        height: l.height,
        steps: total_steps,
        first: f.first.clone(),
        last: l.last.clone(),
        ms_per_iter,
        outputs,
        skipped,
        style_target_passes: eng.style_target_passes,
        tune_warnings: eng.ctx.tuner().map(|t| t.warnings()).unwrap_or_default(),
        tuning: eng.ctx.tuner().map_or((0.0, 0), |t| {
            let (d, n) = t.spent();
            (d.as_secs_f64(), n)
        }),
        stages,
    }
}

/// The frames this render (or `--shard`) renders, announced to `observer`.
fn shard_range(o: &RenderOptions, all: &[Frame], batch: bool, observer: &mut dyn Observer) -> Result<Range<usize>> {
    Ok(match o.shard {
        Some(_) if !batch => {
            return Err(Error::InvalidArgument(
                "--shard splits a batch (a folder of images or --content-list); this render has one content image"
                    .into(),
            ))
        }
        Some(sh) => {
            let r = sh.range(all.len());
            let names = |i: usize| all[i].content.file_name().unwrap_or_default().to_string_lossy().to_string();
            observer.notice(&match r.is_empty() {
                true => format!("shard {sh}: no frames (the batch has {} for {} shards)", all.len(), sh.count),
                false => format!(
                    "shard {sh}: frames {}..{} of {} ({} .. {})",
                    r.start,
                    r.end - 1,
                    all.len(),
                    names(r.start),
                    names(r.end - 1)
                ),
            });
            r
        }
        None => 0..all.len(),
    })
}

/// The checkpoint `--resume` names, read and checked whole before the slow setup; its frame must
/// be one this render (or shard) renders, else the frames around it would be skipped or redone
/// silently.
fn resume_checkpoint<'a>(
    o: &'a RenderOptions,
    all: &[Frame],
    range: &Range<usize>,
) -> Result<Option<(Checkpoint, &'a Path)>> {
    let resume = match &o.resume {
        Some(p) => Some((Checkpoint::read(p)?, p.as_path())),
        None => None,
    };
    if let Some((ck, p)) = &resume {
        if !range.contains(&ck.frame) {
            let frame = all.get(ck.frame).map_or(String::new(), |f| format!(" ({})", f.content.display()));
            let ours = match (o.shard, range.is_empty()) {
                (Some(sh), true) => format!("shard {sh} renders no frames"),
                (Some(sh), false) => format!("shard {sh} renders frames {}..{}", range.start, range.end - 1),
                (None, _) => format!("this render has frames 0..{}", all.len().saturating_sub(1)),
            };
            return Err(Error::InvalidArgument(format!(
                "cannot resume from {}: its frame {}{frame} is not in this render ({ours})",
                p.display(),
                ck.frame
            )));
        }
    }
    Ok(resume)
}

/// What the digest of a checkpoint holds beyond the settings text: the inputs' bytes, the
/// adapter and the settings that change the arithmetic but are not recorded in the PNG.
fn digest_inputs(o: &RenderOptions, eng: &Engine) -> Result<Vec<(String, String)>> {
    let mut inputs = vec![];
    let mut files: Vec<(&str, &Path)> = o.styles.iter().map(|p| ("style", p.as_path())).collect();
    files.extend(o.style_masks.iter().map(|p| ("style mask", p.as_path())));
    files.extend(o.content_mask.iter().map(|p| ("content mask", p.as_path())));
    if let WeightsSource::File(p) = &o.weights {
        files.push(("weights", p));
    }
    if let Init::Image(p) = &o.init {
        files.push(("init", p));
    }
    for (what, p) in files {
        inputs.push((format!("{what} {} (SHA-256)", p.display()), file_sha256(p)?));
    }
    inputs.push(("adapter".into(), eng.ctx.describe()));
    inputs.push(("--tile".into(), format!("{:?}", o.tile)));
    inputs.push(("--max-gpu-memory".into(), format!("{:?}", o.max_gpu_memory)));
    inputs.push(("kernel overrides".into(), format!("{:?}", o.kernels)));
    Ok(inputs)
}

impl RenderReport {
    /// The report of a render that had nothing to do (an empty shard, or every output complete).
    fn nothing(adapter: String, skipped: Vec<PathBuf>) -> RenderReport {
        RenderReport {
            adapter,
            width: 0,
            height: 0,
            steps: 0,
            first: Losses::default(),
            last: Losses::default(),
            ms_per_iter: 0.0,
            stages: vec![],
            outputs: vec![],
            skipped,
            tuning: (0.0, 0),
            tune_warnings: vec![],
            style_target_passes: 0,
        }
    }
}

/// Adds the files a render writes on the way (snapshots, previews, the loss log) to the caller's
/// observer, which sees every event too.
struct FilesObserver<'a> {
    o: &'a RenderOptions,
    log: Option<JsonLog>,
    inner: &'a mut dyn Observer,
    /// The current frame's output and PNG text.
    output: PathBuf,
    text: Vec<(String, String)>,
    /// The current frame's bit depth and colour profile.
    save: SaveOptions,
    /// Whether the inner observer asked for the image being produced.
    inner_wants: bool,
    /// The current frame's checkpoint file and digest (with `checkpoint_every`).
    checkpoint: PathBuf,
    digest: Vec<(String, String)>,
    /// The next stage is resumed: its initial losses are in the log already.
    resumed: bool,
}

impl FilesObserver<'_> {
    fn snapshot_due(&self, stage: &StageInfo, frame_step: u32) -> bool {
        let every = self.o.save_every;
        every > 0 && frame_step.is_multiple_of(every) && frame_step != stage.frame_steps
    }

    fn preview_due(&self, frame_step: u32) -> bool {
        self.o.preview.is_some() && frame_step.is_multiple_of(self.o.preview_every)
    }
}

impl Observer for FilesObserver<'_> {
    fn started(&mut self, info: &RenderInfo) {
        self.inner.started(info)
    }

    fn notice(&mut self, line: &str) {
        self.inner.notice(line)
    }

    fn stage_started(&mut self, stage: &StageInfo, first: &Losses, elapsed_s: f64) -> Result<()> {
        if let (Some(log), false) = (&mut self.log, std::mem::take(&mut self.resumed)) {
            log.line(stage.frame, stage.scale, stage.width, stage.height, 0, first, elapsed_s)?;
        }
        self.inner.stage_started(stage, first, elapsed_s)
    }

    fn control(&mut self) -> Control {
        self.inner.control()
    }

    fn step(&mut self, s: &StepInfo) -> Result<()> {
        if let (Some(log), Some(l)) = (&mut self.log, s.losses) {
            if s.print || s.step == s.stage.steps {
                log.line(s.stage.frame, s.stage.scale, s.stage.width, s.stage.height, s.step, l, s.elapsed_s)?;
            }
        }
        self.inner.step(s)
    }

    fn checkpoint(&mut self, stage: &StageInfo, ck: &mut Checkpoint) -> Result<()> {
        ck.digest = self.digest.clone();
        ck.log_len = self.log.as_ref().map(|l| l.len());
        ck.write(&self.checkpoint)?;
        self.inner.checkpoint(stage, ck)
    }

    fn wants_image(&mut self, stage: &StageInfo, frame_step: u32) -> bool {
        self.inner_wants = self.inner.wants_image(stage, frame_step);
        self.inner_wants || self.snapshot_due(stage, frame_step) || self.preview_due(frame_step)
    }

    fn image(&mut self, stage: &StageInfo, frame_step: u32, image: &Planar) -> Result<()> {
        if self.snapshot_due(stage, frame_step) {
            save(&snapshot_path(&self.output, frame_step), image, &self.text, frame_step, &self.save)?;
        }
        if let (true, Some(p)) = (self.preview_due(frame_step), &self.o.preview) {
            save(p, image, &self.text, frame_step, &self.save)?;
        }
        if self.inner_wants {
            self.inner.image(stage, frame_step, image)?;
        }
        Ok(())
    }
}

/// Where `--save-every` (and a snapshot asked for from the web view) writes the image of `step`.
pub(crate) fn snapshot_path(out: &Path, step: u32) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let ext = out.extension().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "png".into());
    out.with_file_name(format!("{stem}_{step:05}.{ext}"))
}

/// Writes `img` atomically with the settings `text`, its `step` and size, as `opts` says.
pub(crate) fn save(path: &Path, img: &Planar, text: &[(String, String)], step: u32, opts: &SaveOptions) -> Result<()> {
    let mut t: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = step.to_string();
    t.push(("stylize:step", &s));
    let size = format!("{}x{}", img.width, img.height);
    t.push(("stylize:size", &size));
    image_io::save_image_as(path, img, &t, opts)?;
    Ok(())
}
