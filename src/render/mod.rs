//! `stylize render`: from files and options to stylised images on disk.
//!
//! A render is a list of *frames* (one content image, or every image of a folder / list) times a
//! list of *scales* (coarse to fine, `--scales`); each (frame, scale) pair is a *stage*: a
//! [`Graph`](crate::runner::Graph) at that size, optimised for that scale's steps, initialised from the previous
//! scale's result upsampled (or, for a frame's first scale, from `--init` or, with
//! `--temporal-init`, from the previous frame's result). The network is uploaded once per render
//! and the (blended) style targets once per style size, then reused by every frame.
//!
//! A batch can be split across machines (`--shard`, batch.rs: contiguous ranges of the frames) and
//! resumed: an output an earlier run completed with the same settings is skipped.
//!
//! Post-processing (`--original-colors`) touches only the images written to disk, never the
//! optimisation; `--avg-decay` makes those images the running average of the iterates.

mod api;
mod batch;
mod checkpoint;
mod command;
mod engine;
mod files;
mod log;
mod masks;
mod observe;
mod options;
mod plan;
mod run;
mod temporal;

pub use api::{stylize, LossRecord, Stylized};
pub use batch::{check_existing, sidecar_path, Existing, Shard, SHARD_COUNT_VAR};
pub use checkpoint::{checkpoint_path, digest, file_sha256, Checkpoint};
pub use engine::{evaluate, load_input, load_weights, noise, prepare, Engine, Stage};
pub use files::{render, render_with, RenderReport};
pub(crate) use files::{save as save_with_text, snapshot_path};
pub use masks::{load_masks, resize_area, MaskImage};
pub use observe::{Both, Control, Observer, RenderInfo, StageInfo, StepInfo, PAUSE_POLL};
pub use options::*;
pub use plan::{
    check_fits, decide_tile, plan_frames, plan_stages, scale_sizes, working_size, Frame, StagePlan, StyleSize,
    MAX_HOST_BYTES,
};
pub use run::{Ended, StageReport};
