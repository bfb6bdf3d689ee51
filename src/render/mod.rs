//! `stylize render`: from files and options to stylised images on disk.
//!
//! A render is a list of *frames* (one content image, or every image of a folder / list) times a
//! list of *scales* (coarse to fine, `--scales`); each (frame, scale) pair is a *stage*: a
//! [`Graph`] at that size, optimised for that scale's steps, initialised from the previous
//! scale's result upsampled (or, for a frame's first scale, from `--init` or, with
//! `--temporal-init`, from the previous frame's result). The network is uploaded once per render
//! and the (blended) style targets once per style size, then reused by every frame.
//!
//! Post-processing (`--original-colors`) touches only the images written to disk, never the
//! optimisation; `--avg-decay` makes those images the running average of the iterates.

mod colour;
mod engine;
mod options;
mod plan;
mod progress;
mod run;

pub use colour::{color_match, color_stats, symmetric_eigen3, transfer_luminance};
pub use engine::{evaluate, load_input, load_weights, noise, prepare, Engine, Stage};
pub use options::*;
pub use plan::{
    check_fits, decide_tile, plan_frames, plan_stages, scale_sizes, working_size, Frame, StagePlan, StyleSize,
    MAX_HOST_BYTES,
};
pub use run::{render, RenderReport, StageReport};

/// Ctrl-C / SIGTERM: the first one asks the render loop to save and stop; the loop only starts
/// listening once optimisation begins, so earlier (e.g. during a download) they stop at once.
pub mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};
    static REQUESTED: AtomicBool = AtomicBool::new(false);
    static INSTALLED: AtomicBool = AtomicBool::new(false);

    pub fn install() {
        if !INSTALLED.swap(true, Ordering::SeqCst) {
            // If a handler cannot be installed the default behaviour (terminate) remains.
            let _ = ctrlc::set_handler(|| {
                if REQUESTED.swap(true, Ordering::SeqCst) {
                    // A second signal: the user insists; stop without saving.
                    std::process::exit(130);
                }
            });
        }
    }

    pub fn requested() -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }
}
