//! Batch renders across machines and across runs: `--shard I/N` (or the Kubernetes / Slurm
//! array index) picks a contiguous range of the frames, and an output an earlier run completed
//! with the same settings is recognised so it can be skipped.

use crate::error::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The environment variable that gives a Kubernetes Indexed Job's completions count (Kubernetes
/// exports the index, `JOB_COMPLETION_INDEX`, but not the count: the manifest sets this one).
pub const SHARD_COUNT_VAR: &str = "STYLIZE_SHARD_COUNT";

/// Recorded keys that describe how far a render got or what it produced, not its settings: they
/// are not compared when deciding whether an existing output is complete.
const NOT_SETTINGS: &[&str] = &["Software", "stylize:step", "stylize:size"];

/// One shard of a batch: the `index`-th (0-based) of `count` contiguous, balanced ranges of the
/// frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which range, 0-based (`index < count`).
    pub index: usize,
    /// How many ranges the frames are split into (at least 1).
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn bad(spec: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("--shard {spec}: {why}"))
}

/// A non-negative integer from `what` (a flag part or an environment variable) or a one-line error.
fn number(spec: &str, what: &str, v: &str) -> Result<usize> {
    v.trim().parse::<usize>().map_err(|_| bad(spec, &format!("{what} must be a whole number >= 0, got {v:?}")))
}

impl Shard {
    /// A checked shard: `count >= 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        let spec = format!("{index}/{count}");
        if count == 0 {
            return Err(bad(&spec, "the shard count N must be at least 1"));
        }
        if index >= count {
            return Err(bad(
                &spec,
                &format!("the index I must be below N (0-based: 0/{count} .. {}/{count})", count - 1),
            ));
        }
        Ok(Shard { index, count })
    }

    /// Parses `--shard`: `I/N` (0-based), `slurm` (`SLURM_ARRAY_TASK_ID` minus
    /// `SLURM_ARRAY_TASK_MIN`, divided by `SLURM_ARRAY_TASK_STEP`, of `SLURM_ARRAY_TASK_COUNT`),
    /// `k8s` (`JOB_COMPLETION_INDEX` of [`SHARD_COUNT_VAR`]), or `auto` (Slurm when
    /// `SLURM_ARRAY_TASK_ID` is set, else Kubernetes when `JOB_COMPLETION_INDEX` is). `env` looks a
    /// variable up (the library reads no environment itself; the command line passes
    /// `std::env::var`). Returns the shard and where it came from, for the log.
    pub fn resolve(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(Shard, String)> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        match spec.trim() {
            "auto" => {
                if var("SLURM_ARRAY_TASK_ID").is_some() {
                    Shard::resolve("slurm", env)
                } else if var("JOB_COMPLETION_INDEX").is_some() {
                    Shard::resolve("k8s", env)
                } else {
                    Err(bad(
                        spec,
                        "neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes \
                         Indexed Job) is set; give --shard I/N",
                    ))
                }
            }
            "k8s" | "kubernetes" => {
                let index = var("JOB_COMPLETION_INDEX")
                    .ok_or_else(|| bad(spec, "JOB_COMPLETION_INDEX is not set (not in a Kubernetes Indexed Job?)"))?;
                let count = var(SHARD_COUNT_VAR).ok_or_else(|| {
                    bad(spec, &format!("{SHARD_COUNT_VAR} is not set: set it to the Job's spec.completions"))
                })?;
                let (i, n) = (number(spec, "JOB_COMPLETION_INDEX", &index)?, number(spec, SHARD_COUNT_VAR, &count)?);
                let shard = Shard::new(i, n).map_err(|_| {
                    bad(spec, &format!("JOB_COMPLETION_INDEX={i} is not below {SHARD_COUNT_VAR}={n} (>= 1)"))
                })?;
                Ok((shard, format!("JOB_COMPLETION_INDEX={i}, {SHARD_COUNT_VAR}={n}")))
            }
            "slurm" => {
                let id = var("SLURM_ARRAY_TASK_ID")
                    .ok_or_else(|| bad(spec, "SLURM_ARRAY_TASK_ID is not set (not in a Slurm job array?)"))?;
                let count =
                    var("SLURM_ARRAY_TASK_COUNT").ok_or_else(|| bad(spec, "SLURM_ARRAY_TASK_COUNT is not set"))?;
                let id = number(spec, "SLURM_ARRAY_TASK_ID", &id)?;
                let n = number(spec, "SLURM_ARRAY_TASK_COUNT", &count)?;
                // Arrays need not start at 0 (--array=1-8) nor step by 1 (--array=0-15:4).
                let min = var("SLURM_ARRAY_TASK_MIN").map_or(Ok(0), |v| number(spec, "SLURM_ARRAY_TASK_MIN", &v))?;
                let step = var("SLURM_ARRAY_TASK_STEP").map_or(Ok(1), |v| number(spec, "SLURM_ARRAY_TASK_STEP", &v))?;
                let i = id.checked_sub(min).filter(|d| *d % step.max(1) == 0).map(|d| d / step.max(1));
                let shard = i.and_then(|i| Shard::new(i, n).ok()).ok_or_else(|| {
                    bad(
                        spec,
                        &format!(
                            "SLURM_ARRAY_TASK_ID={id} is not one of {n} evenly spaced tasks from \
                             SLURM_ARRAY_TASK_MIN={min} by {step}; use a range array such as --array=0-{}",
                            n.max(1) - 1
                        ),
                    )
                })?;
                Ok((shard, format!("SLURM_ARRAY_TASK_ID={id} of {n} from {min}")))
            }
            s => {
                let Some((i, n)) = s.split_once('/') else {
                    return Err(bad(spec, "expected I/N (e.g. 0/4), auto, k8s or slurm"));
                };
                let shard = Shard::new(number(spec, "I", i)?, number(spec, "N", n)?)?;
                Ok((shard, "--shard".into()))
            }
        }
    }

    /// This shard's frames out of `frames`: contiguous (so a `--temporal-init` chain stays
    /// unbroken inside a shard) and balanced (sizes differ by at most 1, the first
    /// `frames % count` shards holding one more).
    pub fn range(&self, frames: usize) -> Range<usize> {
        let (q, r) = (frames / self.count, frames % self.count);
        let start = |i: usize| i * q + i.min(r);
        start(self.index)..start(self.index + 1)
    }
}

/// What an existing output says about itself, compared with what this run would write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Existing {
    /// No file.
    Missing,
    /// Written by a render with the same settings that ran every step: skipped.
    Complete,
    /// The render that wrote it stopped (Ctrl-C, non-finite losses) after `step` of `total` steps.
    Incomplete {
        /// The step it records.
        step: u32,
        /// The steps this run plans per frame.
        total: u32,
    },
    /// Written with other settings: this recorded key differs (or is absent).
    OtherSettings(String),
    /// No record of its settings could be read (a JPEG without its sidecar, a PNG from
    /// elsewhere or an unreadable file); the reason.
    NoRecord(String),
}

impl Existing {
    /// One line for the log: what is done with `output` and why.
    pub fn describe(&self, output: &Path) -> String {
        let o = output.display();
        match self {
            Existing::Missing => format!("rendering {o}"),
            Existing::Complete => format!("skipped {o}: complete (same settings, every step)"),
            Existing::Incomplete { step, total } => {
                format!("re-rendering {o}: it stopped at step {step} of {total}")
            }
            Existing::OtherSettings(k) => {
                format!("re-rendering {o}: it was rendered with other settings ({k} differs)")
            }
            Existing::NoRecord(why) => format!("re-rendering {o}: {why}"),
        }
    }
}

fn is_jpeg(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(), Some("jpg" | "jpeg"))
}

/// Where a JPEG batch output's settings are recorded (JPEG has no text chunks): `NAME.jpg.stylize.json`.
pub fn sidecar_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".stylize.json");
    output.with_file_name(name)
}

/// The (key, value) pairs recorded for `output`: its PNG text chunks, or a JPEG's sidecar.
fn recorded(output: &Path) -> std::result::Result<Vec<(String, String)>, String> {
    if !is_jpeg(output) {
        return crate::image_io::read_png_text(output).map_err(|e| format!("its settings cannot be read ({e})"));
    }
    let side = sidecar_path(output);
    let text = std::fs::read_to_string(&side)
        .map_err(|_| format!("a JPEG records no settings and its sidecar {} is missing", side.display()))?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| format!("its sidecar {} is not a JSON object ({e})", side.display()))?;
    Ok(map.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
}

/// Whether `output` exists and was completed by a render with these settings: `text` is what this
/// run would record (settings compared key by key, except `Software`, `stylize:step` and
/// `stylize:size`) and `total` the steps it plans per frame (the recorded step must equal it).
pub fn check_existing(output: &Path, text: &[(String, String)], total: u32) -> Existing {
    if !output.exists() {
        return Existing::Missing;
    }
    let rec = match recorded(output) {
        Ok(r) => r,
        Err(why) => return Existing::NoRecord(why),
    };
    let get = |k: &str| rec.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let Some(step) = get("stylize:step").and_then(|s| s.parse::<u32>().ok()) else {
        return Existing::NoRecord("it records no stylize:step (not written by stylize render?)".into());
    };
    for (k, v) in text.iter().filter(|(k, _)| !NOT_SETTINGS.contains(&k.as_str())) {
        if get(k) != Some(v.as_str()) {
            return Existing::OtherSettings(k.clone());
        }
    }
    if step != total {
        return Existing::Incomplete { step, total };
    }
    Existing::Complete
}

/// Before a batch output is (re)written: a JPEG's sidecar is removed first, so that a crash
/// between the image and its record never leaves a record describing an older image.
pub(super) fn forget_record(output: &Path) -> Result<()> {
    if !is_jpeg(output) {
        return Ok(());
    }
    match std::fs::remove_file(sidecar_path(output)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Io { path: sidecar_path(output).display().to_string(), source: e })
        }
        _ => Ok(()),
    }
}

/// After a JPEG batch output was written: its sidecar, atomically ([`crate::atomic`]), with
/// the pairs a PNG would carry (`text` and the step reached).
pub(super) fn write_record(output: &Path, text: &[(String, String)], step: u32) -> Result<()> {
    if !is_jpeg(output) {
        return Ok(());
    }
    let side = sidecar_path(output);
    let mut map = serde_json::Map::new();
    for (k, v) in text {
        map.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    map.insert("stylize:step".into(), serde_json::Value::String(step.to_string()));
    let text = serde_json::Value::Object(map).to_string();
    crate::atomic::write_atomic(&side, text.as_bytes())
        .map_err(|e| Error::Io { path: side.display().to_string(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_contiguous_balanced_and_cover_every_frame_once() {
        for frames in 0..40 {
            for count in 1..12 {
                let ranges: Vec<_> = (0..count).map(|i| Shard::new(i, count).unwrap().range(frames)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, frames);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "{frames} frames / {count}: {ranges:?}");
                }
                let sizes: Vec<_> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{frames} frames / {count}: sizes {sizes:?}");
            }
        }
        assert_eq!(Shard::new(1, 3).unwrap().range(10), 4..7);
        assert_eq!(Shard::new(2, 3).unwrap().range(10), 7..10);
        assert_eq!(Shard::new(4, 8).unwrap().range(3), 3..3);
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn shard(spec: &str, vars: &[(&str, &str)]) -> Result<Shard> {
        Shard::resolve(spec, &env(vars)).map(|(s, _)| s)
    }

    #[test]
    fn explicit_and_scheduler_shards() {
        assert_eq!(shard("2/5", &[]).unwrap(), Shard { index: 2, count: 5 });
        let k8s = [("JOB_COMPLETION_INDEX", "3"), (SHARD_COUNT_VAR, "4")];
        assert_eq!(shard("k8s", &k8s).unwrap(), Shard { index: 3, count: 4 });
        assert_eq!(shard("auto", &k8s).unwrap(), Shard { index: 3, count: 4 });
        // A Slurm array 1-8: task 1 is shard 0.
        let slurm = [("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "8"), ("SLURM_ARRAY_TASK_MIN", "1")];
        assert_eq!(shard("slurm", &slurm).unwrap(), Shard { index: 0, count: 8 });
        // Slurm wins under auto when both are set (a Slurm job on a node that also has the other).
        let both = [slurm.as_slice(), k8s.as_slice()].concat();
        assert_eq!(shard("auto", &both).unwrap(), Shard { index: 0, count: 8 });
        // --array=10-22:4 -> tasks 10, 14, 18, 22.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "18"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ];
        assert_eq!(shard("slurm", &stepped).unwrap(), Shard { index: 2, count: 4 });
    }

    /// (--shard value, environment, expected part of the error).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn bad_shards_give_one_line_errors() {
        let cases: &[Case] = &[
            ("4/4", &[], "below N"),
            ("0/0", &[], "at least 1"),
            ("1", &[], "expected I/N"),
            ("a/3", &[], "I must be a whole number"),
            ("-1/3", &[], "I must be a whole number"),
            ("auto", &[], "neither SLURM_ARRAY_TASK_ID"),
            ("k8s", &[("JOB_COMPLETION_INDEX", "0")], "STYLIZE_SHARD_COUNT is not set"),
            ("k8s", &[(SHARD_COUNT_VAR, "2")], "JOB_COMPLETION_INDEX is not set"),
            ("k8s", &[("JOB_COMPLETION_INDEX", "2"), (SHARD_COUNT_VAR, "2")], "not below"),
            ("slurm", &[("SLURM_ARRAY_TASK_ID", "3")], "SLURM_ARRAY_TASK_COUNT is not set"),
            ("slurm", &[("SLURM_ARRAY_TASK_ID", "9"), ("SLURM_ARRAY_TASK_COUNT", "4")], "--array=0-3"),
            (
                "slurm",
                &[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")],
                "evenly",
            ),
        ];
        for (spec, vars, needle) in cases {
            let e = shard(spec, vars).unwrap_err().to_string();
            assert!(e.contains(needle) && e.starts_with("--shard") && !e.contains('\n'), "{spec}: {e}");
        }
    }
}
