//! Render checkpoints (`--checkpoint-every`, `--resume`): one stage's whole optimisation state at
//! one step in a small versioned file, written atomically, and the digest of the settings and
//! inputs that decides whether a resumed render is still the same render.
//!
//! File layout (version 1), all integers little-endian:
//! `b"STYLCKPT"`, u32 version, u32 header length, the header (UTF-8 JSON: position, counters,
//! digest, kernel choices, and the name and length of each array), the arrays' f32 values back
//! to back in the header's order, then the SHA-256 of every byte before it (a torn or corrupted
//! file is refused).

use super::engine::Stage;
use super::observe::StageInfo;
use crate::error::{Error, Result};
use crate::gpu::{Context, Tensor};
use crate::runner::Losses;
use crate::tiled::optim::TiledOptimizer;
use crate::tiled::TiledGraph;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"STYLCKPT";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// A stage's optimisation state at one step: enough to continue it bit for bit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// (item, value) pairs of every setting and input that affects the result (see [`digest`]).
    pub digest: Vec<(String, String)>,
    /// Frame index.
    pub frame: usize,
    /// Scale index (0: coarsest).
    pub scale: usize,
    /// Stage steps done (the resumed loop runs step `step + 1` next).
    pub step: u32,
    /// Working width and height of the stage.
    pub size: (usize, usize),
    /// Frame step of the last good image (the non-finite guard's fallback, array `good`).
    pub good_step: u32,
    /// Whether the losses of the image after `step` are still to be measured and reported (by
    /// the next update's forward pass).
    pub pending: bool,
    /// Length in bytes of the `--log-json` file when the checkpoint was taken (a resumed render
    /// cuts the log there and appends).
    pub log_len: Option<u64>,
    /// The kernel variant chosen for each conv/Gram shape so far ([`Tuner::choices`]; empty
    /// without a tuner): a resumed render forces them, so it computes with the same kernels.
    ///
    /// [`Tuner::choices`]: crate::gpu::tune::Tuner::choices
    pub kernels: Vec<(String, String)>,
    /// Integer counters of the optimiser (L-BFGS iterations recorded, a tiled stage's Adam t or
    /// L-BFGS counts).
    pub counters: Vec<(String, u64)>,
    /// Named f32 arrays: `image`, `good`, `first.content`, `first.style`, `first.tv` (the
    /// stage's initial losses), the optimiser's (`adam.*`, `lbfgs.*`) and the average's (`ema.*`).
    pub arrays: Vec<(String, Vec<f32>)>,
}

fn bad(path: &Path, why: &str) -> Error {
    Error::InvalidArgument(format!("{}: not a usable checkpoint ({why})", path.display()))
}

impl Checkpoint {
    /// Sets where the checkpoint sits: after `step` steps of `stage`, the last good image from
    /// frame step `good_step`, and whether step `step`'s losses are still to be reported.
    pub(super) fn at(&mut self, stage: &StageInfo, step: u32, good_step: u32, pending: bool) {
        (self.frame, self.scale, self.step) = (stage.frame, stage.scale, step);
        self.size = (stage.width, stage.height);
        (self.good_step, self.pending) = (good_step, pending);
    }

    /// The array named `name`.
    pub fn array(&self, name: &str) -> Option<&[f32]> {
        self.arrays.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The array named `name`, or an error naming the file `path` it should have come from.
    pub fn need(&self, path: &Path, name: &str) -> Result<&[f32]> {
        self.array(name).ok_or_else(|| bad(path, &format!("array {name} missing")))
    }

    /// The counter named `name` (0 when absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![];
        self.write_to(&mut out).expect("writing to memory");
        out
    }

    /// Writes the file's bytes to `w`, array by array (a large state is not copied whole
    /// once more), hashing as it goes.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let header = json!({
            "frame": self.frame,
            "scale": self.scale,
            "step": self.step,
            "width": self.size.0,
            "height": self.size.1,
            "good_step": self.good_step,
            "pending": self.pending,
            "log_len": self.log_len,
            "counters": self.counters.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "digest": self.digest.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "kernels": self.kernels.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "arrays": self.arrays.iter().map(|(k, v)| json!([k, v.len()])).collect::<Vec<_>>(),
        })
        .to_string();
        let mut sum = Sha256::new();
        let mut put = |w: &mut dyn Write, b: &[u8]| {
            sum.update(b);
            w.write_all(b)
        };
        put(w, MAGIC)?;
        put(w, &VERSION.to_le_bytes())?;
        put(w, &(header.len() as u32).to_le_bytes())?;
        put(w, header.as_bytes())?;
        let mut buf = Vec::with_capacity(1 << 16);
        for (_, v) in &self.arrays {
            for chunk in v.chunks(1 << 14) {
                buf.clear();
                chunk.iter().for_each(|x| buf.extend(x.to_le_bytes()));
                put(w, &buf)?;
            }
        }
        w.write_all(&sum.finalize())
    }

    /// Parses a checkpoint file's bytes (`path` names it in errors).
    pub fn from_bytes(path: &Path, b: &[u8]) -> Result<Checkpoint> {
        if b.len() < 16 + 32 || &b[..8] != MAGIC {
            return Err(bad(path, "no stylize checkpoint header"));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(bad(path, "checksum mismatch: the file is damaged or incomplete"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(path, &format!("format version {version}, this build reads {VERSION}")));
        }
        let hlen = u32_at(12) as usize;
        let h: Value = body
            .get(16..16 + hlen)
            .and_then(|s| serde_json::from_slice(s).ok())
            .ok_or_else(|| bad(path, "unreadable header"))?;
        let num = |k: &str| h[k].as_u64().ok_or_else(|| bad(path, &format!("header field {k} missing")));
        let pairs = |k: &str| -> Vec<(String, Value)> {
            h[k].as_array()
                .map(|a| a.iter().filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].clone()))).collect())
                .unwrap_or_default()
        };
        let mut at = 16 + hlen;
        let mut arrays = vec![];
        for (name, len) in pairs("arrays") {
            let n = len.as_u64().ok_or_else(|| bad(path, "array length"))? as usize;
            let end = n.checked_mul(4).and_then(|b| b.checked_add(at));
            let bytes =
                end.and_then(|e| body.get(at..e)).ok_or_else(|| bad(path, &format!("array {name} truncated")))?;
            arrays.push((name, bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()));
            at += 4 * n;
        }
        if at != body.len() {
            return Err(bad(path, "trailing bytes after the arrays"));
        }
        Ok(Checkpoint {
            digest: pairs("digest").into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect(),
            kernels: pairs("kernels")
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                .collect(),
            frame: num("frame")? as usize,
            scale: num("scale")? as usize,
            step: num("step")? as u32,
            size: (num("width")? as usize, num("height")? as usize),
            good_step: num("good_step")? as u32,
            pending: h["pending"].as_bool().unwrap_or(false),
            log_len: h["log_len"].as_u64(),
            counters: pairs("counters").into_iter().map(|(k, v)| (k, v.as_u64().unwrap_or(0))).collect(),
            arrays,
        })
    }

    /// Writes the checkpoint to `path` atomically ([`crate::atomic`]: an interruption leaves the
    /// previous checkpoint whole).
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |e| Error::Io { path: path.display().to_string(), source: e };
        let mut tmp = crate::atomic::TempFile::create(path).map_err(io)?;
        {
            let mut f = std::io::BufWriter::new(&mut tmp);
            self.write_to(&mut f).map_err(io)?;
            std::io::Write::flush(&mut f).map_err(io)?;
        }
        tmp.persist(path).map_err(io)
    }

    /// Reads and checks the checkpoint at `path`.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let b = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Checkpoint::from_bytes(path, &b)
    }

    /// Refuses to resume from this checkpoint (`path`) when `now` (the digest of the render being
    /// started) differs, naming the first item that differs.
    pub fn check_digest(&self, path: &Path, now: &[(String, String)]) -> Result<()> {
        let find = |d: &[(String, String)], k: &str| d.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let keys = self.digest.iter().chain(now).map(|(k, _)| k.as_str());
        for k in keys {
            let (was, is) = (find(&self.digest, k), find(now, k));
            if was != is {
                let show = |v: Option<String>| v.unwrap_or_else(|| "absent".into());
                return Err(Error::InvalidArgument(format!(
                    "cannot resume from {}: {k} differs (checkpoint: {}; now: {})",
                    path.display(),
                    show(was),
                    show(is)
                )));
            }
        }
        Ok(())
    }
}

/// SHA-256 of a file's bytes, hex (inputs of the digest; `builtin:` images hash their name).
pub fn file_sha256(path: &Path) -> Result<String> {
    let name = path.to_string_lossy();
    if name.starts_with("builtin:") {
        return Ok(name.to_string());
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io { path: name.to_string(), source: e })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::Io { path: name.to_string(), source: e })?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The digest of a render: the recorded settings `text` (the PNG's, see files.rs), the command
/// split into one item per option so a refusal names the option, then `extra` (each input file's
/// SHA-256, the adapter: bit-identical results need the same one, settings the text leaves out).
pub fn digest(text: &[(String, String)], extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut d = vec![];
    for (k, v) in text {
        if k == "stylize:command" {
            let mut parts = v.split(" --");
            d.push(("inputs and output".to_string(), parts.next().unwrap_or_default().to_string()));
            for p in parts {
                let (flag, val) = p.split_once(' ').unwrap_or((p, ""));
                d.push((format!("--{flag}"), val.to_string()));
            }
        } else {
            d.push((k.clone(), v.clone()));
        }
    }
    d.extend(extra.iter().cloned());
    d
}

/// Where the checkpoints of the frame written to `output` go: `output` with `.ckpt` appended.
pub fn checkpoint_path(output: &Path) -> std::path::PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".ckpt");
    s.into()
}

/// The GPU buffers of an untiled stage's state, named: the iterate, Adam's moments and state
/// ([t, 1 - beta1^t, 1 - beta2^t] as the GPU holds them, so the bias corrections resume bit for
/// bit), L-BFGS's buffers when it is in use, and the average's sum and state with `--avg-decay`.
fn stage_tensors(st: &Stage) -> Vec<(String, &Tensor)> {
    let g = &st.graph;
    let mut v = vec![
        ("image".to_string(), &g.x),
        ("adam.m".to_string(), &g.adam.m),
        ("adam.v".to_string(), &g.adam.v),
        ("adam.state".to_string(), &g.adam.state),
    ];
    if let Some(l) = &g.lbfgs {
        v.extend(l.state());
    }
    if let Some(e) = &st.ema {
        v.push(("ema.avg".to_string(), &e.avg));
        v.push(("ema.state".to_string(), &e.state));
    }
    v
}

/// Reads an untiled stage's whole state back (waits for the GPU: only at a checkpoint), with the
/// last good image `good` and the stage's initial losses `first`.
pub(super) fn capture_stage(ctx: &Context, st: &Stage, good: &Tensor, first: &Losses) -> Result<Checkpoint> {
    let mut arrays = vec![];
    for (name, t) in stage_tensors(st) {
        arrays.push((name, t.read(ctx)?));
    }
    arrays.push(("good".to_string(), good.read(ctx)?));
    arrays.extend(losses_arrays(first));
    let counters = vec![("iterations".to_string(), st.graph.iterations())];
    Ok(Checkpoint { counters, arrays, kernels: kernel_choices(ctx), ..Default::default() })
}

/// Puts a checkpoint's state (read from `path`) back into a freshly built untiled stage and
/// `good`; returns the stage's initial losses.
pub(super) fn restore_stage(ctx: &Context, st: &Stage, good: &Tensor, ck: &Checkpoint, path: &Path) -> Result<Losses> {
    for (name, t) in stage_tensors(st).into_iter().chain([("good".to_string(), good)]) {
        let v = ck.need(path, &name)?;
        if v.len() != t.len() {
            return Err(bad(path, &format!("array {name} has {} values, the stage needs {}", v.len(), t.len())));
        }
        t.write(ctx, v);
    }
    st.graph.set_iterations(ck.counter("iterations"));
    losses_from(ck, path)
}

/// The kernel choices made so far on `ctx` (none without a tuner: the fixed rules and the
/// forced overrides, both in the digest, decide alone).
fn kernel_choices(ctx: &Context) -> Vec<(String, String)> {
    ctx.tuner().map(|t| t.choices()).unwrap_or_default()
}

/// Makes `ctx`'s tuner repeat the kernel choices recorded in `ck` (read from `path`).
pub(super) fn pin_kernels(ctx: &Context, ck: &Checkpoint, path: &Path) -> Result<()> {
    match ctx.tuner() {
        Some(t) => t.pin(&ck.kernels).map_err(|why| bad(path, &why)),
        None => Ok(()),
    }
}

/// The stage's initial losses as arrays.
fn losses_arrays(l: &Losses) -> Vec<(String, Vec<f32>)> {
    let mut a = vec![
        ("first.content".to_string(), l.content.clone()),
        ("first.style".to_string(), l.style.clone()),
        ("first.tv".to_string(), vec![l.tv]),
    ];
    a.extend(l.temporal.map(|t| ("first.temporal".to_string(), vec![t])));
    a
}

fn losses_from(ck: &Checkpoint, path: &Path) -> Result<Losses> {
    Ok(Losses {
        content: ck.need(path, "first.content")?.to_vec(),
        style: ck.need(path, "first.style")?.to_vec(),
        tv: ck.need(path, "first.tv")?.first().copied().unwrap_or(0.0),
        // Only frames with a temporal term have one.
        temporal: ck.array("first.temporal").and_then(|a| a.first().copied()),
    })
}

/// A tiled stage's state (all on the host): the image, the optimiser's (Adam's moments and
/// count, or L-BFGS's pairs, scalars and counters) and the average's, the last good image and
/// the stage's initial losses.
pub(super) fn capture_tiled(
    ctx: &Context,
    tg: &TiledGraph,
    opt: &TiledOptimizer,
    good: &[f32],
    first: &Losses,
) -> Checkpoint {
    let (state, counters) = opt.state();
    let mut arrays = vec![("image".to_string(), tg.image.clone())];
    arrays.extend(state);
    arrays.push(("good".to_string(), good.to_vec()));
    arrays.extend(losses_arrays(first));
    Checkpoint { counters, arrays, kernels: kernel_choices(ctx), ..Default::default() }
}

/// Puts a tiled checkpoint's state back into `tg` and `opt`; returns (the last good image, the
/// initial losses).
pub(super) fn restore_tiled(
    tg: &mut TiledGraph,
    opt: &mut TiledOptimizer,
    ck: &Checkpoint,
    path: &Path,
) -> Result<(Vec<f32>, Losses)> {
    let n = tg.image.len();
    let get = |name: &str| -> Result<&[f32]> {
        let v = ck.need(path, name)?;
        match v.len() == n {
            true => Ok(v),
            false => Err(bad(path, &format!("array {name} has {} values, the stage needs {n}", v.len()))),
        }
    };
    tg.image.copy_from_slice(get("image")?);
    let array = |name: &str| ck.array(name).map(<[f32]>::to_vec);
    opt.restore(n, &array, &|name| ck.counter(name)).map_err(|why| bad(path, &why))?;
    Ok((get("good")?.to_vec(), losses_from(ck, path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut r = crate::rng::XorShift64::new(7);
        Checkpoint {
            digest: vec![("--lr".into(), "0.02".into()), ("adapter".into(), "lavapipe".into())],
            frame: 1,
            scale: 2,
            step: 17,
            size: (9, 7),
            good_step: 15,
            pending: true,
            log_len: Some(1234),
            kernels: vec![("conv3x3 3x64 9x7".into(), "wino".into()), ("gram 64x63".into(), "rules".into())],
            counters: vec![("lbfgs_iterations".into(), 17)],
            arrays: vec![("image".into(), r.vec(189, -1.0, 1.0)), ("adam.v".into(), r.vec(5, 0.0, 1e-9))],
        }
    }

    #[test]
    fn round_trips_bit_for_bit() {
        let c = sample();
        let p = Path::new("x.ckpt");
        let back = Checkpoint::from_bytes(p, &c.to_bytes()).unwrap();
        assert_eq!(back, c);
        let bits = |c: &Checkpoint| c.arrays[0].1.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&c));
    }

    #[test]
    fn refuses_damage_and_names_the_difference() {
        let c = sample();
        let p = Path::new("x.ckpt");
        let mut b = c.to_bytes();
        let n = b.len();
        b[n / 2] ^= 1;
        let e = Checkpoint::from_bytes(p, &b).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        let e = Checkpoint::from_bytes(p, &c.to_bytes()[..n - 40]).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        let now = vec![("--lr".into(), "0.05".into()), ("adapter".into(), "lavapipe".into())];
        let e = c.check_digest(p, &now).unwrap_err().to_string();
        assert!(e.contains("--lr differs (checkpoint: 0.02; now: 0.05)"), "{e}");
        c.check_digest(p, &c.digest).unwrap();
    }

    #[test]
    fn digest_splits_the_command_per_option() {
        let text =
            vec![("stylize:command".to_string(), "stylize render a.png b.png -o o.png --size 64 --lr 1".to_string())];
        let d = digest(&text, &[("adapter".into(), "gpu".into())]);
        assert_eq!(d[0], ("inputs and output".into(), "stylize render a.png b.png -o o.png".into()));
        assert_eq!(d[1], ("--size".into(), "64".into()));
        assert_eq!(d[2], ("--lr".into(), "1".into()));
        assert_eq!(d[3], ("adapter".into(), "gpu".into()));
    }
}
