//! The command line's [`Observer`]: the start banner and a progress line per stage on stderr,
//! and Ctrl-C / SIGTERM turned into a stop (the render then saves the current image).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use stylize::model::StyleLoss;
use stylize::render::{Control, Observer, RenderInfo, StageInfo, StepInfo};
use stylize::runner::Losses;
use stylize::Result;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C / SIGTERM: the first asks the render to save and stop; a second stops at once. Only
/// installed when optimisation begins, so earlier (e.g. during a download) they stop at once.
fn install_interrupt_handler() {
    if !INSTALLED.swap(true, Ordering::SeqCst) {
        // If a handler cannot be installed the default behaviour (terminate) remains.
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                // A second signal: the user insists; stop without saving.
                std::process::exit(130);
            }
        });
    }
}

/// Prints a render's progress on stderr (nothing when `quiet`) and stops it on Ctrl-C.
pub struct CliProgress {
    quiet: bool,
    tty: bool,
    /// The current stage's progress line: its label, start and step count.
    label: String,
    start: Instant,
    total: u32,
    /// Tuning warnings printed at the start.
    warned: usize,
    /// The style term's name in the progress lines (which loss it is, unless Gram's).
    style_term: &'static str,
}

impl CliProgress {
    /// A reporter for a render; `quiet` prints nothing (Ctrl-C still stops the render).
    pub fn new(quiet: bool) -> CliProgress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        CliProgress {
            quiet,
            tty,
            label: String::new(),
            start: Instant::now(),
            total: 0,
            warned: 0,
            style_term: "style",
        }
    }

    /// How many tuning warnings [`Observer::started`] printed.
    pub fn warnings_shown(&self) -> usize {
        self.warned
    }

    fn line(&self, step: u32, losses: Option<&Losses>) {
        if self.quiet {
            return;
        }
        let el = self.start.elapsed().as_secs_f64();
        let rate = if el > 0.0 { step as f64 / el } else { 0.0 };
        let width = 24usize;
        let filled = (width as u64 * step as u64 / self.total.max(1) as u64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let mut line = format!("{}[{bar}] step {step}/{} {rate:.2} it/s", self.label, self.total);
        if let Some(l) = losses {
            line += &format!(
                " | loss {:.4e} (content {:.3e}, {} {:.3e}, tv {:.3e}",
                l.total(),
                l.content_total(),
                self.style_term,
                l.style_total(),
                l.tv
            );
            // Only frames with a temporal term (after the first, with --temporal-weight) have one.
            if let Some(t) = l.temporal {
                line += &format!(", temporal {t:.3e}");
            }
            line += ")";
        }
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}");
            if step == self.total {
                let _ = writeln!(e);
            }
        } else if losses.is_some() || step == self.total {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }
}

impl Observer for CliProgress {
    fn started(&mut self, info: &RenderInfo) {
        for w in &info.tune_warnings {
            eprintln!("warning: {w}");
        }
        self.warned = info.tune_warnings.len();
        if !self.quiet {
            let scales = if info.scales.len() > 1 {
                format!(" | scales {}", info.scales.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" -> "))
            } else {
                String::new()
            };
            let frames = if info.frames > 1 { format!(" | {} frames", info.frames) } else { String::new() };
            if info.style_loss == StyleLoss::MeanCov {
                self.style_term = "style (mean-cov)";
            }
            eprintln!(
                "stylize: {}x{} on {} | weights {} ({}, {:?} preprocessing) | {} steps{scales}{frames} | style loss {}",
                info.size.0,
                info.size.1,
                info.adapter,
                info.weights,
                info.model,
                info.preprocess,
                info.frame_steps,
                info.style_loss.name()
            );
        }
        install_interrupt_handler();
    }

    fn notice(&mut self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn stage_started(&mut self, stage: &StageInfo, _first: &Losses, _elapsed_s: f64) -> Result<()> {
        let (w, h) = (stage.width, stage.height);
        let mut label = String::new();
        if stage.frames > 1 {
            label += &format!("[frame {}/{}] ", stage.frame + 1, stage.frames);
        }
        if let Some((n, size)) = stage.tiles {
            label += &format!("[{n} tiles of {size} px] ");
        }
        if stage.scales > 1 {
            label += &format!("[scale {}/{} {w}x{h}] ", stage.scale + 1, stage.scales);
        }
        if stage.tiles.is_some() && !self.quiet && !self.tty {
            eprintln!("{label}tiled render of {w}x{h}");
        }
        (self.label, self.start, self.total) = (label, Instant::now(), stage.steps);
        Ok(())
    }

    fn control(&mut self) -> Control {
        if INTERRUPTED.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn step(&mut self, s: &StepInfo) -> Result<()> {
        self.line(s.step, s.losses.filter(|_| s.print));
        Ok(())
    }
}
