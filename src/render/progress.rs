//! What a render tells the user as it goes: the progress line on stderr and the `--log-json`
//! loss log.

use crate::error::{Error, Result};
use crate::runner::Losses;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(super) struct Progress {
    pub(super) quiet: bool,
    pub(super) tty: bool,
    pub(super) start: Instant,
    pub(super) total: u32,
    pub(super) label: String,
}

impl Progress {
    pub(super) fn update(&self, step: u32, losses: Option<&Losses>) {
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
                " | loss {:.4e} (content {:.3e}, style {:.3e}, tv {:.3e})",
                l.total(),
                l.content_total(),
                l.style_total(),
                l.tv
            );
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

/// `--log-json`: one JSON object per line, flushed as written (so it can be followed live).
pub(super) struct JsonLog {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

/// A number as JSON (non-finite values have no JSON form: null).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:e}")
    } else {
        "null".into()
    }
}

impl JsonLog {
    pub(super) fn create(path: &Path) -> Result<JsonLog> {
        let file =
            std::fs::File::create(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Ok(JsonLog { path: path.to_path_buf(), file: std::io::BufWriter::new(file) })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn line(
        &mut self,
        frame: usize,
        scale: usize,
        w: usize,
        h: usize,
        step: u32,
        l: &Losses,
        elapsed: f64,
    ) -> Result<()> {
        let s = format!(
            "{{\"frame\":{frame},\"scale\":{scale},\"width\":{w},\"height\":{h},\"step\":{step},\"content\":{},\"style\":{},\"tv\":{},\"total\":{},\"elapsed_s\":{elapsed:.4}}}\n",
            json_num(l.content_total() as f64),
            json_num(l.style_total() as f64),
            json_num(l.tv as f64),
            json_num(l.total() as f64),
        );
        let io = |e| Error::Io { path: self.path.display().to_string(), source: e };
        self.file.write_all(s.as_bytes()).map_err(io)?;
        self.file.flush().map_err(|e| Error::Io { path: self.path.display().to_string(), source: e })
    }
}
