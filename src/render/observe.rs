//! How a render reports progress and takes requests while it runs: the [`Observer`] a caller
//! passes in. The library itself prints nothing and installs no signal handler; the command line
//! tool's observer prints the progress line and turns Ctrl-C into [`Control::Stop`].

use super::checkpoint::Checkpoint;
use crate::error::Result;
use crate::image_io::{Planar, SaveOptions};
use crate::model::Preprocess;
use crate::runner::Losses;
use std::path::Path;

/// What a render is about to do, once the device, weights and plan are ready.
#[derive(Clone, Debug)]
pub struct RenderInfo {
    /// The adapter, as [`crate::gpu::Context::describe`] gives it.
    pub adapter: String,
    /// Where the weights came from.
    pub weights: String,
    /// The network, VGG16 or VGG19.
    pub model: crate::model::Model,
    /// The input convention in use.
    pub preprocess: Preprocess,
    /// Output size of the first frame (width, height).
    pub size: (usize, usize),
    /// Longest side at each scale, coarse to fine.
    pub scales: Vec<u32>,
    /// Optimiser steps per frame, over every scale.
    pub frame_steps: u32,
    /// Number of frames (content images).
    pub frames: usize,
    /// Problems with the conv tuning table (unreadable, corrupt, another adapter's), one line each.
    pub tune_warnings: Vec<String>,
    /// What the style loss compares.
    pub style_loss: crate::model::StyleLoss,
}

/// Where a stage (one scale of one frame) sits in a render.
#[derive(Clone, Debug)]
pub struct StageInfo {
    /// Frame index (0-based) and count.
    pub frame: usize,
    /// Number of frames.
    pub frames: usize,
    /// Scale index (0: coarsest).
    pub scale: usize,
    /// Number of scales.
    pub scales: usize,
    /// Working width in pixels.
    pub width: usize,
    /// Working height in pixels.
    pub height: usize,
    /// Steps of this stage.
    pub steps: u32,
    /// Steps of this frame's earlier scales.
    pub step_offset: u32,
    /// Steps of this frame in all.
    pub frame_steps: u32,
    /// (tile count, tile size in pixels) when the stage is tiled.
    pub tiles: Option<(usize, usize)>,
}

/// One optimiser step just taken.
#[derive(Clone, Debug)]
pub struct StepInfo<'a> {
    /// The stage it belongs to.
    pub stage: &'a StageInfo,
    /// Step within the stage (1-based).
    pub step: u32,
    /// Step within the frame (1-based, over every scale).
    pub frame_step: u32,
    /// The losses of the image after this step (after `step` updates of the stage), on steps
    /// where they were read back (print steps, the non-finite checks and the stage's last step,
    /// whose losses are those of the stage's result as written: the average with `--avg-decay`,
    /// clamped to \[0,1\]); reading them costs a GPU round trip, so not every step has them.
    pub losses: Option<&'a Losses>,
    /// Whether this is a step the options ask to print (`print_every`, and the stage's last).
    pub print: bool,
    /// Seconds since the render started.
    pub elapsed_s: f64,
}

/// What the render should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop before the next step; the current image is returned (cancellation).
    Stop,
    /// Wait before the next step: the render asks again every [`PAUSE_POLL`] without touching the
    /// GPU, and the time paused does not count in its milliseconds per iteration.
    Pause,
}

/// How often a paused render asks its observer whether to go on.
pub const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Receives a render's progress; every method has a do-nothing default, and `()` observes
/// nothing.
pub trait Observer {
    /// Once, before the first stage.
    fn started(&mut self, _info: &RenderInfo) {}
    /// One line about a batch's plan: the shard's frames, an output skipped or re-rendered and
    /// why, where a `--temporal-init` shard starts.
    fn notice(&mut self, _line: &str) {}
    /// At the start of each stage, with the losses of its initial image.
    fn stage_started(&mut self, _stage: &StageInfo, _first: &Losses, _elapsed_s: f64) -> Result<()> {
        Ok(())
    }
    /// Asked before every step: [`Control::Stop`] ends the render with the current image,
    /// [`Control::Pause`] holds it before the step.
    fn control(&mut self) -> Control {
        Control::Continue
    }
    /// After every step, in order. A step with losses is reported once they are measured: by
    /// the next update's forward pass (which evaluates the image it starts from), or a pass of
    /// its own after a stage's last step; so such a report, and a [`Control::Stop`] given in
    /// answer to it, comes one update later than the step itself.
    fn step(&mut self, _step: &StepInfo) -> Result<()> {
        Ok(())
    }
    /// Whether the image after frame step `frame_step` is wanted; if so [`Observer::image`]
    /// receives it (reading it back costs a GPU round trip).
    fn wants_image(&mut self, _stage: &StageInfo, _frame_step: u32) -> bool {
        false
    }
    /// The output image after frame step `frame_step` (colour post-processing applied).
    fn image(&mut self, _stage: &StageInfo, _frame_step: u32, _image: &Planar) -> Result<()> {
        Ok(())
    }
    /// A checkpoint of the stage's whole state (with `checkpoint_every` set: every that many
    /// frame steps, and when the render is stopped), its digest still empty: the files-to-files
    /// render fills in the digest and writes it. Reading the state back costs a GPU round trip.
    fn checkpoint(&mut self, _stage: &StageInfo, _ck: &mut Checkpoint) -> Result<()> {
        Ok(())
    }
    /// The files-to-files render ([`render_with`](super::render_with)), as each frame starts:
    /// where its image will be written and the text that PNG records (the settings).
    fn frame_output(&mut self, _frame: usize, _output: &Path, _text: &[(String, String)], _save: &SaveOptions) {}
    /// The files-to-files render, once it has written a frame's image to `path` (every step
    /// done, or stopped, or the last good image after non-finite losses), recording `step`.
    fn saved(&mut self, _frame: usize, _step: u32, _path: &Path, _image: &Planar) {}
}

impl Observer for () {}

/// Two observers as one: each sees every event and receives the images it asked for; the render
/// stops if either says stop, else pauses if either says pause.
pub struct Both<A, B> {
    /// The first observer.
    pub a: A,
    /// The second observer.
    pub b: B,
    wants: (bool, bool),
}

impl<A: Observer, B: Observer> Both<A, B> {
    /// `a` and `b` as one observer.
    pub fn new(a: A, b: B) -> Both<A, B> {
        Both { a, b, wants: (false, false) }
    }
}

impl<A: Observer, B: Observer> Observer for Both<A, B> {
    fn started(&mut self, info: &RenderInfo) {
        self.a.started(info);
        self.b.started(info);
    }
    fn stage_started(&mut self, stage: &StageInfo, first: &Losses, elapsed_s: f64) -> Result<()> {
        self.a.stage_started(stage, first, elapsed_s)?;
        self.b.stage_started(stage, first, elapsed_s)
    }
    fn control(&mut self) -> Control {
        match (self.a.control(), self.b.control()) {
            (Control::Stop, _) | (_, Control::Stop) => Control::Stop,
            (Control::Pause, _) | (_, Control::Pause) => Control::Pause,
            _ => Control::Continue,
        }
    }
    fn step(&mut self, step: &StepInfo) -> Result<()> {
        self.a.step(step)?;
        self.b.step(step)
    }
    fn wants_image(&mut self, stage: &StageInfo, frame_step: u32) -> bool {
        self.wants = (self.a.wants_image(stage, frame_step), self.b.wants_image(stage, frame_step));
        self.wants.0 || self.wants.1
    }
    fn image(&mut self, stage: &StageInfo, frame_step: u32, image: &Planar) -> Result<()> {
        if self.wants.0 {
            self.a.image(stage, frame_step, image)?;
        }
        if self.wants.1 {
            self.b.image(stage, frame_step, image)?;
        }
        Ok(())
    }
    fn checkpoint(&mut self, stage: &StageInfo, ck: &mut Checkpoint) -> Result<()> {
        self.a.checkpoint(stage, ck)?;
        self.b.checkpoint(stage, ck)
    }
    fn frame_output(&mut self, frame: usize, output: &Path, text: &[(String, String)], save: &SaveOptions) {
        self.a.frame_output(frame, output, text, save);
        self.b.frame_output(frame, output, text, save);
    }
    fn saved(&mut self, frame: usize, step: u32, path: &Path, image: &Planar) {
        self.a.saved(frame, step, path, image);
        self.b.saved(frame, step, path, image);
    }
}

/// A borrowed observer observes as the observer itself does.
impl<T: Observer + ?Sized> Observer for &mut T {
    fn started(&mut self, info: &RenderInfo) {
        (**self).started(info)
    }
    fn stage_started(&mut self, stage: &StageInfo, first: &Losses, elapsed_s: f64) -> Result<()> {
        (**self).stage_started(stage, first, elapsed_s)
    }
    fn control(&mut self) -> Control {
        (**self).control()
    }
    fn step(&mut self, step: &StepInfo) -> Result<()> {
        (**self).step(step)
    }
    fn wants_image(&mut self, stage: &StageInfo, frame_step: u32) -> bool {
        (**self).wants_image(stage, frame_step)
    }
    fn image(&mut self, stage: &StageInfo, frame_step: u32, image: &Planar) -> Result<()> {
        (**self).image(stage, frame_step, image)
    }
    fn checkpoint(&mut self, stage: &StageInfo, ck: &mut Checkpoint) -> Result<()> {
        (**self).checkpoint(stage, ck)
    }
    fn frame_output(&mut self, frame: usize, output: &Path, text: &[(String, String)], save: &SaveOptions) {
        (**self).frame_output(frame, output, text, save)
    }
    fn saved(&mut self, frame: usize, step: u32, path: &Path, image: &Planar) {
        (**self).saved(frame, step, path, image)
    }
}
