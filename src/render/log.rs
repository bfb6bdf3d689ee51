//! The `--log-json` loss log: one JSON object per printed step, flushed as written.
//!
//! Line `step: k` of a stage holds the losses of the image after k updates of that stage: step
//! 0 is the stage's initial image, and its last line (step = the stage's steps) the losses of the
//! stage's result as written (the average with `--avg-decay`, clamped to [0,1]; before any
//! `--original-colors` colour transfer).

use crate::error::{Error, Result};
use crate::runner::Losses;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `--log-json`: one JSON object per line, flushed as written (so it can be followed live).
pub(super) struct JsonLog {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    /// Bytes written to the file so far (a checkpoint records it).
    len: u64,
}

impl JsonLog {
    pub(super) fn create(path: &Path) -> Result<JsonLog> {
        let file =
            std::fs::File::create(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Ok(JsonLog { path: path.to_path_buf(), file: std::io::BufWriter::new(file), len: 0 })
    }

    /// The log of a resumed render: the file cut to `len` bytes (its length when the checkpoint
    /// was taken; the lines after it are written again) and appended to.
    pub(super) fn resume(path: &Path, len: u64) -> Result<JsonLog> {
        let io = |e| Error::Io { path: path.display().to_string(), source: e };
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() < len {
            return Err(Error::InvalidArgument(format!(
                "{}: shorter than when the checkpoint was taken ({len} bytes); give another --log-json",
                path.display()
            )));
        }
        file.set_len(len).map_err(io)?;
        let mut file = std::io::BufWriter::new(file);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len)).map_err(io)?;
        Ok(JsonLog { path: path.to_path_buf(), file, len })
    }

    /// Bytes written so far.
    pub(super) fn len(&self) -> u64 {
        self.len
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
        // Non-finite values have no JSON form: serde_json writes them as null.
        let mut v = serde_json::json!({
            "frame": frame,
            "scale": scale,
            "width": w,
            "height": h,
            "step": step,
            "content": l.content_total(),
            "style": l.style_total(),
            "tv": l.tv,
            "total": l.total(),
            "elapsed_s": (elapsed * 1e4).round() / 1e4,
        });
        // Only frames with a temporal term (after the first, with --temporal-weight) have one.
        if let Some(t) = l.temporal {
            v["temporal"] = serde_json::json!(t);
        }
        let mut s = v.to_string();
        s.push('\n');
        let io = |e| Error::Io { path: self.path.display().to_string(), source: e };
        self.file.write_all(s.as_bytes()).map_err(io)?;
        self.len += s.len() as u64;
        self.file.flush().map_err(|e| Error::Io { path: self.path.display().to_string(), source: e })
    }
}
