//! The stage loops (untiled and tiled), with the non-finite guard, snapshots and previews, and
//! the whole render over frames and scales.

use super::colour::transfer_luminance;
use super::engine::{load_checked, Engine, Stage, StageInputs};
use super::plan::{plan_frames, StagePlan};
use super::progress::{JsonLog, Progress};
use super::{interrupt, steps_per_scale, validate, Init, Optimizer, RenderOptions, NAN_CHECK_EVERY};
use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::{Context, Tensor};
use crate::image_io::{self, DecodeLimits, Planar};
use crate::model::{LossSettings, Pool, Preprocess, Tap};
use crate::runner::Losses;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One stage (one scale of one frame) of a render.
#[derive(Clone, Debug)]
pub struct StageReport {
    pub frame: usize,
    pub scale: usize,
    pub width: usize,
    pub height: usize,
    pub steps: u32,
    /// Losses of the stage's initial image.
    pub first: Losses,
    /// Losses of the stage's result (the average when `--avg-decay` is on), before any colour
    /// post-processing.
    pub last: Losses,
    pub ms_per_iter: f64,
    /// Tiles per step (1: untiled).
    pub tiles: usize,
}

/// What a finished render reports.
#[derive(Clone, Debug)]
pub struct RenderReport {
    pub adapter: String,
    /// Size of the last output.
    pub width: usize,
    pub height: usize,
    /// Optimiser steps in all, over every scale and frame.
    pub steps: u32,
    /// Losses at the start of the first stage and at the end of the last.
    pub first: Losses,
    pub last: Losses,
    pub ms_per_iter: f64,
    /// Every stage in order (frame-major).
    pub stages: Vec<StageReport>,
    /// The images written, one per frame.
    pub outputs: Vec<PathBuf>,
    /// Forward passes spent on style targets (one per style image and style size): the targets
    /// are computed once and reused by every frame unless `--color-match` ties them to a frame.
    pub style_target_passes: usize,
}

fn snapshot_path(out: &Path, step: u32) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let ext = out.extension().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "png".into());
    out.with_file_name(format!("{stem}_{step:05}.{ext}"))
}

/// State shared by the stages of a render.
struct Run<'a> {
    o: &'a RenderOptions,
    t0: Instant,
    log: Option<JsonLog>,
    tty: bool,
}

/// How one stage ended.
struct StageOut {
    report: StageReport,
    image: Vec<f32>,
    /// The content image at the stage's size (for colour post-processing).
    content: Planar,
}

/// Where a stage sits in the render, for labels, snapshots and previews.
struct StagePlace<'a> {
    frame: usize,
    frames: usize,
    scale: usize,
    scales: usize,
    /// Steps of this frame's earlier scales.
    step_offset: u32,
    /// Steps of this frame in all.
    frame_steps: u32,
    output: &'a Path,
    text: &'a [(String, String)],
}

impl Run<'_> {
    fn finish(&self, data: Vec<f32>, st: &Stage) -> Planar {
        self.finish_with(data, &st.content)
    }

    /// The output image from raw pixels at `content`'s size (colour post-processing applied).
    fn finish_with(&self, data: Vec<f32>, content: &Planar) -> Planar {
        let img = Planar { width: content.width, height: content.height, data };
        if self.o.original_colors {
            transfer_luminance(&img, content)
        } else {
            img
        }
    }

    /// A stage too large for one GPU graph: exact tiled optimisation (src/tiled.rs), the image
    /// and Adam's state in host memory, each step two passes over the tiles.
    #[allow(clippy::too_many_arguments)]
    fn run_tiled_stage(
        &mut self,
        eng: &mut Engine,
        content: &Planar,
        plan: &StagePlan,
        tile: usize,
        init: Option<Vec<f32>>,
        at: &StagePlace,
    ) -> Result<StageOut> {
        let o = self.o;
        if o.optimizer == Optimizer::Lbfgs || o.avg_decay > 0.0 {
            return Err(Error::InvalidArgument(
                "tiled rendering supports Adam without --avg-decay; use --optimizer adam, or --tile off with a smaller --size".into(),
            ));
        }
        let (w, h, steps) = (plan.width, plan.height, plan.steps);
        let StageInputs { content, style, init } = eng.stage_inputs(o, content, plan, init)?;
        let mut tg = crate::tiled::TiledGraph::new(
            &eng.ctx,
            &eng.net,
            &eng.settings,
            (&content.data, h, w),
            style,
            &init,
            tile,
        )?;
        let ctx = &eng.ctx;
        let adam = AdamConfig { lr: o.learning_rate(), clamp: Some((0.0, 1.0)), ..Default::default() };
        let mut label = format!("[{} tiles of {tile} px] ", tg.tiles.len());
        if at.frames > 1 {
            label = format!("[frame {}/{}] ", at.frame + 1, at.frames) + &label;
        }
        if at.scales > 1 {
            label += &format!("[scale {}/{} {w}x{h}] ", at.scale + 1, at.scales);
        }
        if !o.quiet && !self.tty {
            eprintln!("{label}tiled render of {w}x{h}");
        }
        let progress = Progress { quiet: o.quiet, tty: self.tty, start: Instant::now(), total: steps, label };
        tg.evaluate(ctx, &eng.net)?;
        let first = tg.read_losses(ctx)?;
        if let Some(log) = &mut self.log {
            log.line(at.frame, at.scale, w, h, 0, &first, self.t0.elapsed().as_secs_f64())?;
        }
        let mut last = first.clone();
        let mut good = (tg.image.clone(), at.step_offset);
        let t0 = Instant::now();
        for step in 1..=steps {
            let total_step = at.step_offset + step;
            if interrupt::requested() {
                save(at.output, &self.finish_with(tg.image.clone(), &content), at.text, total_step - 1)?;
                return Err(Error::Interrupted { step: total_step - 1, saved: Some(at.output.display().to_string()) });
            }
            if step > 1 {
                tg.evaluate(ctx, &eng.net)?;
                last = tg.read_losses(ctx)?;
            }
            // Every step's losses are at hand here (tiles are read back anyway): check each.
            if !last.total().is_finite() || tg.grad.iter().any(|v| !v.is_finite()) {
                save(at.output, &self.finish_with(good.0, &content), at.text, good.1)?;
                return Err(Error::NonFinite {
                    step: total_step,
                    saved: Some(format!("{} (step {})", at.output.display(), good.1)),
                });
            }
            good = (tg.image.clone(), total_step - 1);
            tg.adam_step(&adam);
            let print = o.print_every > 0 && (step % o.print_every == 0 || step == steps);
            if print || (self.log.is_some() && step == steps) {
                if let Some(log) = &mut self.log {
                    log.line(at.frame, at.scale, w, h, step, &last, self.t0.elapsed().as_secs_f64())?;
                }
            }
            progress.update(step, print.then_some(&last));
            if o.save_every > 0 && total_step.is_multiple_of(o.save_every) && total_step != at.frame_steps {
                save(
                    &snapshot_path(at.output, total_step),
                    &self.finish_with(tg.image.clone(), &content),
                    at.text,
                    total_step,
                )?;
            }
            if let Some(p) = &o.preview {
                if total_step.is_multiple_of(o.preview_every) {
                    save(p, &self.finish_with(tg.image.clone(), &content), at.text, total_step)?;
                }
            }
        }
        let ms_per_iter = t0.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64;
        if steps > 0 {
            tg.evaluate(ctx, &eng.net)?;
            last = tg.read_losses(ctx)?;
        }
        let report = StageReport {
            frame: at.frame,
            scale: at.scale,
            width: w,
            height: h,
            steps,
            first,
            last,
            ms_per_iter,
            tiles: tg.tiles.len(),
        };
        Ok(StageOut { report, image: tg.image, content })
    }

    fn run_stage(&mut self, ctx: &Context, st: &Stage, steps: u32, at: &StagePlace) -> Result<StageOut> {
        let o = self.o;
        let (w, h) = (st.width, st.height);
        let graph = &st.graph;
        let init_copy = graph.read_image(ctx)?;
        graph.evaluate(ctx)?;
        let first = graph.read_losses(ctx)?;
        if let Some(log) = &mut self.log {
            log.line(at.frame, at.scale, w, h, 0, &first, self.t0.elapsed().as_secs_f64())?;
        }
        let mut label = String::new();
        if at.frames > 1 {
            label += &format!("[frame {}/{}] ", at.frame + 1, at.frames);
        }
        if at.scales > 1 {
            label += &format!("[scale {}/{} {w}x{h}] ", at.scale + 1, at.scales);
        }
        let progress = Progress { quiet: o.quiet, tty: self.tty, start: Instant::now(), total: steps, label };
        let mut last = first.clone();
        // Non-finite guard: every `check` steps the losses are read (a few bytes) and, when
        // finite, the image they were computed from (copied on the GPU just before that step's
        // update) becomes the last good image; a NaN/Inf ends the render with that image saved.
        let check = match o.print_every {
            0 => NAN_CHECK_EVERY,
            p => p.min(NAN_CHECK_EVERY),
        };
        let mut candidate = Tensor::new(ctx, graph.x.shape, "candidate image")?;
        let mut good = Tensor::from_slice(ctx, graph.x.shape, &init_copy, "last good image")?;
        let mut good_step = at.step_offset;
        // Fault injection for the tests: poison the image with NaN before this step.
        let fault_at: Option<u32> = std::env::var("STYLIZE_FAULT_NAN_AT").ok().and_then(|v| v.parse().ok());
        let t0 = Instant::now();
        let mut done = at.step_offset;
        for step in 1..=steps {
            let total_step = at.step_offset + step;
            if interrupt::requested() {
                let mut data = st.read_output(ctx)?;
                if data.iter().any(|v| !v.is_finite()) {
                    data = good.read(ctx)?;
                }
                save(at.output, &self.finish(data, st), at.text, done)?;
                return Err(Error::Interrupted { step: done, saved: Some(at.output.display().to_string()) });
            }
            let print = o.print_every > 0 && (step % o.print_every == 0 || step == steps);
            let log_now = print || (self.log.is_some() && step == steps);
            let checking = log_now || step % check == 0 || step == steps;
            if fault_at == Some(total_step) {
                graph.x.fill(ctx, f32::NAN);
            }
            st.step(ctx, checking.then_some(&candidate))?;
            ctx.wait()?;
            done = total_step;
            if checking {
                last = graph.read_losses(ctx)?;
                if !last.total().is_finite() {
                    save(at.output, &self.finish(good.read(ctx)?, st), at.text, good_step)?;
                    return Err(Error::NonFinite {
                        step: total_step,
                        saved: Some(format!("{} (step {good_step})", at.output.display())),
                    });
                }
                std::mem::swap(&mut candidate, &mut good);
                good_step = total_step - 1;
            }
            if log_now {
                if let Some(log) = &mut self.log {
                    log.line(at.frame, at.scale, w, h, step, &last, self.t0.elapsed().as_secs_f64())?;
                }
            }
            progress.update(step, print.then_some(&last));
            if o.save_every > 0 && total_step.is_multiple_of(o.save_every) && total_step != at.frame_steps {
                let p = snapshot_path(at.output, total_step);
                save(&p, &self.finish(st.read_output(ctx)?, st), at.text, total_step)?;
            }
            if let Some(p) = &o.preview {
                if total_step.is_multiple_of(o.preview_every) {
                    save(p, &self.finish(st.read_output(ctx)?, st), at.text, total_step)?;
                }
            }
        }
        let ms_per_iter = t0.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64;
        if let Some(e) = &st.ema {
            // The losses of what is written out: the average.
            graph.x.write(ctx, &e.read(ctx)?);
        }
        if steps > 0 || st.ema.is_some() {
            // The losses of the final image (one more forward pass, no update).
            graph.evaluate(ctx)?;
            last = graph.read_losses(ctx)?;
        }
        let image = st.read_output(ctx)?;
        let report = StageReport {
            frame: at.frame,
            scale: at.scale,
            width: w,
            height: h,
            steps,
            first,
            last,
            ms_per_iter,
            tiles: 1,
        };
        Ok(StageOut { report, image, content: st.content.clone() })
    }
}

/// Runs a whole render (every frame, every scale) and writes the outputs atomically.
pub fn render(o: &RenderOptions) -> Result<RenderReport> {
    validate(o)?;
    let (frames, batch) = plan_frames(o)?;
    if !batch && !o.output.as_os_str().is_empty() {
        image_io::check_output_path(&o.output)?;
    }
    let limits = DecodeLimits::default();
    // Check the first content image before the slow setup (a typo should fail at once).
    let first_content = load_checked(&frames[0].content, &limits)?;
    if batch {
        std::fs::create_dir_all(&o.output)
            .map_err(|e| Error::Io { path: o.output.display().to_string(), source: e })?;
        image_io::check_output_path(&frames[0].output)?;
    }
    let (mut eng, first_plans) = Engine::new(o, Some(&first_content))?;
    let mut first_plans = first_plans;
    let frame_steps: u32 = steps_per_scale(o).iter().sum();
    if !o.quiet {
        let plans = first_plans.as_deref().unwrap_or_default();
        let (w, h) = plans.last().map_or((0, 0), |p| (p.width, p.height));
        let scales = if plans.len() > 1 {
            format!(" | scales {}", plans.iter().map(|p| p.size.to_string()).collect::<Vec<_>>().join(" -> "))
        } else {
            String::new()
        };
        let frames_note = if batch { format!(" | {} frames", frames.len()) } else { String::new() };
        eprintln!(
            "stylize: {}x{} on {} | weights {} ({:?} preprocessing) | {} steps{scales}{frames_note}",
            w,
            h,
            eng.ctx.describe(),
            eng.source,
            eng.settings.preprocess,
            frame_steps
        );
    }
    let log = match &o.log_json {
        Some(p) => Some(JsonLog::create(p)?),
        None => None,
    };
    let mut run = Run { o, t0: Instant::now(), log, tty: std::io::stderr().is_terminal() };
    interrupt::install();
    let mut stages = vec![];
    let mut outputs = vec![];
    let mut previous: Option<Planar> = None;
    for (fi, frame) in frames.iter().enumerate() {
        let content = if fi == 0 { first_content.clone() } else { load_checked(&frame.content, &limits)? };
        // Every stage of this frame, planned once (the first frame's while checking the sizes).
        let plans = match first_plans.take() {
            Some(p) => p,
            None => eng.plan(o, &content)?,
        };
        let text = settings_text(o, &eng.settings, &eng.source, batch.then_some(&frame.content));
        let mut result: Option<(Planar, Planar)> = None;
        let mut offset = 0;
        for plan in &plans {
            let (w, h) = (plan.width as u32, plan.height as u32);
            let init = match (&result, &previous) {
                (Some((r, _)), _) => Some(image_io::resize_exact(r, w, h).data),
                (None, Some(p)) if o.temporal_init => Some(image_io::resize_exact(p, w, h).data),
                _ => None,
            };
            let place = StagePlace {
                frame: fi,
                frames: frames.len(),
                scale: plan.scale,
                scales: plans.len(),
                step_offset: offset,
                frame_steps,
                output: &frame.output,
                text: &text,
            };
            let out = match plan.tile {
                Some(tile) => run.run_tiled_stage(&mut eng, &content, plan, tile, init, &place)?,
                None => {
                    let st = eng.stage(o, &content, plan, init)?;
                    run.run_stage(&eng.ctx, &st, plan.steps, &place)?
                }
            };
            offset += plan.steps;
            result = Some((Planar { width: w, height: h, data: out.image }, out.content));
            stages.push(out.report);
        }
        let Some((result, fc)) = result else {
            return Err(Error::InvalidArgument("no scales to render".into()));
        };
        let img = run.finish_with(result.data.clone(), &fc);
        save(&frame.output, &img, &text, frame_steps)?;
        if let Some(p) = &o.preview {
            save(p, &img, &text, frame_steps)?;
        }
        outputs.push(frame.output.clone());
        previous = Some(result);
    }
    let total_steps = frame_steps * frames.len() as u32;
    // Optimisation loops only (not loading, targets or graph building), as for one stage.
    let ms_per_iter = stages.iter().map(|s| s.ms_per_iter * s.steps as f64).sum::<f64>() / total_steps.max(1) as f64;
    let (Some(f), Some(l)) = (stages.first(), stages.last()) else {
        return Err(Error::InvalidArgument("nothing to render".into()));
    };
    Ok(RenderReport {
        adapter: eng.ctx.describe(),
        width: l.width,
        height: l.height,
        steps: total_steps,
        first: f.first.clone(),
        last: l.last.clone(),
        ms_per_iter,
        outputs,
        style_target_passes: eng.style_target_passes,
        stages,
    })
}

fn save(path: &Path, img: &Planar, text: &[(String, String)], step: u32) -> Result<()> {
    let mut t: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = step.to_string();
    t.push(("stylize:step", &s));
    let size = format!("{}x{}", img.width, img.height);
    t.push(("stylize:size", &size));
    image_io::save_image(path, img, &t)?;
    Ok(())
}

/// The settings a PNG records so a result can be reproduced.
fn settings_text(o: &RenderOptions, s: &LossSettings, source: &str, frame: Option<&PathBuf>) -> Vec<(String, String)> {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let names = |t: &[Tap]| t.iter().map(|t| t.name()).collect::<Vec<_>>().join(",");
    let list = |v: &[f32]| v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let mut inputs = vec![];
    if o.content_list.is_empty() {
        inputs.push(q(&o.content));
    }
    inputs.extend(o.styles.iter().map(|p| q(p)));
    let mut cmd = format!(
        "stylize render {} -o {} --size {} --steps {} --lr {} --content-weight {} --style-weight {} \
         --tv-weight {} --content-layers {} --style-layers {} --style-layer-weights {} --pool {} --init {} \
         --seed {} --preprocess {}",
        inputs.join(" "),
        q(&o.output),
        o.size,
        o.steps,
        o.learning_rate(),
        s.content_weight,
        s.style_weight,
        s.tv_weight,
        names(&s.content_layers),
        names(&s.style_layers),
        list(&s.style_layer_weights),
        if s.pool == Pool::Avg { "avg" } else { "max" },
        match &o.init {
            Init::Content => "content".to_string(),
            Init::Noise => "noise".to_string(),
            Init::Image(p) => q(p),
        },
        o.seed,
        if s.preprocess == Preprocess::Torch { "torch" } else { "caffe" },
    );
    if !o.content_list.is_empty() {
        cmd += &format!(" --content-list {}", o.content_list.iter().map(|p| q(p)).collect::<Vec<_>>().join(","));
    }
    if let Some(b) = &o.style_blend_weights {
        cmd += &format!(" --style-blend-weights {}", list(b));
    }
    if o.style_scale != 1.0 {
        cmd += &format!(" --style-scale {}", o.style_scale);
    }
    if o.scales > 1 {
        cmd += &format!(" --scales {} --initial-size {}", o.scales, o.initial_size);
    }
    if let Some(st) = &o.scale_steps {
        cmd += &format!(" --scale-steps {}", st.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    }
    if o.optimizer == Optimizer::Lbfgs {
        cmd += &format!(" --optimizer lbfgs --lbfgs-history {}", o.lbfgs_history);
    }
    if o.avg_decay > 0.0 {
        cmd += &format!(" --avg-decay {}", o.avg_decay);
    }
    if o.original_colors {
        cmd += " --original-colors";
    }
    if o.color_match {
        cmd += " --color-match";
    }
    if o.temporal_init {
        cmd += " --temporal-init";
    }
    let mut v = vec![
        ("Software".into(), format!("stylize {}", env!("CARGO_PKG_VERSION"))),
        ("stylize:command".into(), cmd),
        ("stylize:weights".into(), source.to_string()),
    ];
    if let Some(f) = frame {
        v.push(("stylize:frame".into(), f.display().to_string()));
    }
    v
}
