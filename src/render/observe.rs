//! How a render reports progress and takes requests while it runs: the [`Observer`] a caller
//! passes in. The library itself prints nothing and installs no signal handler; the command line
//! tool's observer prints the progress line and turns Ctrl-C into [`Control::Stop`].

use crate::error::Result;
use crate::image_io::Planar;
use crate::model::Preprocess;
use crate::runner::Losses;

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
}

/// Receives a render's progress; every method has a do-nothing default, and `()` observes
/// nothing.
pub trait Observer {
    /// Once, before the first stage.
    fn started(&mut self, _info: &RenderInfo) {}
    /// At the start of each stage, with the losses of its initial image.
    fn stage_started(&mut self, _stage: &StageInfo, _first: &Losses, _elapsed_s: f64) -> Result<()> {
        Ok(())
    }
    /// Asked before every step: [`Control::Stop`] ends the render with the current image.
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
}

impl Observer for () {}
