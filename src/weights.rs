//! VGG19 convolution weights: reading them from disk, downloading them, or making random ones.
//!
//! Formats read (see weights/README.md for the details and the convention rule):
//! * PyTorch `.pth`, zip format (PyTorch >= 1.6): `<prefix>/data.pkl` + `<prefix>/data/<key>`.
//! * PyTorch `.pth`, legacy stream (`_use_new_zipfile_serialization=False`, and torchvision's
//!   own `vgg19-dcbb9e9d.pth`): magic, protocol, sys-info and state-dict pickles, the pickled
//!   list of storage keys, then each storage's raw bytes behind an 8-byte element count.
//! * NumPy `.npz` with `features.N.weight` or `conv1_1.weight` style names.
//!
//! Pickles are never executed: a small stack machine understands the opcodes `torch.save`
//! emits and only a short allow-list of globals (OrderedDict, torch's tensor/parameter
//! rebuild functions, storage and legacy tensor types, `torch.Size`). Every size a file
//! declares is checked against what the file can hold before anything is allocated, so a
//! truncated or hostile file gives an error, never a panic or a huge allocation.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use npyz::zip;
use sha2::{Digest, Sha256};

/// VGG19's 16 conv layers in order: (name, cin, cout).
pub use crate::vgg::CONVS as VGG19_CONVS;

/// torchvision `features.N` index of each conv layer (ReLUs and pools take the other indices).
pub const TORCHVISION_FEATURE_INDEX: [usize; 16] = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34];

/// Where torchvision's ImageNet VGG19 weights live (legacy torch.save format, 548 MB).
pub const TORCHVISION_URL: &str = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth";

/// SHA-256 of `vgg19-dcbb9e9d.pth`. torchvision names its files after the first 8 hex digits of
/// the SHA-256, and the full digest could not be obtained offline, so this is that prefix;
/// [`fetch`] accepts a full digest or any prefix of at least 8 hex digits.
pub const TORCHVISION_SHA256: &str = "dcbb9e9d";

/// File name under [`cache_dir`] of the default weights.
pub const TORCHVISION_FILE_NAME: &str = "vgg19-dcbb9e9d.pth";

/// Input preprocessing the weights expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// torchvision: RGB in [0,1], minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225).
    Torch,
    /// Original Caffe VGG: BGR in [0,255], minus mean (B 103.939, G 116.779, R 123.68), no std.
    Caffe,
}

/// One conv layer's parameters.
#[derive(Clone, Debug)]
pub struct ConvParams {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    /// OIHW: cout * cin * 3 * 3.
    pub weight: Vec<f32>,
    /// cout.
    pub bias: Vec<f32>,
}

/// The first `needed` conv layers of VGG19.
#[derive(Clone, Debug)]
pub struct VggWeights {
    /// conv1_1 .. in order, exactly `needed` of them.
    pub layers: Vec<ConvParams>,
    /// Recognised from the file (see [`recognise_convention`]); `None` if unknown.
    pub convention: Option<Convention>,
    /// The path the weights came from, or `random(seed=N)`.
    pub source: String,
}

/// Everything that can go wrong; each message is one line naming the file and what to do.
#[derive(Debug)]
pub enum WeightsError {
    /// `needed` outside 1..=16, or a malformed hash string.
    InvalidArgument(String),
    /// An I/O operation on a file failed.
    Io { path: PathBuf, action: &'static str, source: io::Error },
    /// Not a format this module reads.
    UnknownFormat { path: PathBuf, detail: String },
    /// The container is broken (bad pickle, inconsistent sizes, bad zip).
    Malformed { path: PathBuf, detail: String },
    /// The file ends before the data it declares.
    Truncated { path: PathBuf, detail: String },
    /// A pickle names a global outside the allow-list (it would run code in Python).
    ForbiddenGlobal { path: PathBuf, global: String },
    /// None of VGG19's conv tensors are in the file.
    NotVgg { path: PathBuf, sample_keys: Vec<String> },
    /// A layer the caller needs is absent.
    MissingLayer {
        path: PathBuf,
        /// The first missing layer, e.g. `conv4_1`.
        layer: &'static str,
        /// The tensor that was looked for, e.g. `features.19.weight`.
        tensor: String,
        /// How many layers were asked for.
        needed: usize,
        /// How many leading layers the file does have.
        available: usize,
    },
    /// A tensor has the wrong shape.
    BadShape { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<u64> },
    /// A tensor has an element type we do not read.
    BadDtype { path: PathBuf, tensor: String, dtype: String },
    /// A weight is NaN or infinite.
    NonFinite { path: PathBuf, tensor: String, index: usize, value: f32 },
    /// HTTP failure, connection closed early, length mismatch.
    Download { url: String, detail: String },
    /// The downloaded bytes do not have the expected SHA-256.
    HashMismatch { url: String, expected: String, found: String },
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WeightsError::*;
        match self {
            InvalidArgument(s) => write!(f, "{s}"),
            Io { path, action, source } => write!(f, "{}: cannot {action}: {source}", path.display()),
            UnknownFormat { path, detail } => write!(
                f,
                "{}: not a weights file this program reads ({detail}); expected a PyTorch .pth \
                 (zip or legacy torch.save) or a NumPy .npz",
                path.display()
            ),
            Malformed { path, detail } => write!(f, "{}: corrupt weights file: {detail}", path.display()),
            Truncated { path, detail } => {
                write!(f, "{}: file is truncated: {detail}; download or copy it again", path.display())
            }
            ForbiddenGlobal { path, global } => write!(
                f,
                "{}: refusing to load: the pickle names `{global}`, which is not one of the \
                 torch state-dict globals this loader allows (it could run code in Python)",
                path.display()
            ),
            NotVgg { path, sample_keys } => write!(
                f,
                "{}: not a VGG19 weights file: no tensor named features.0.weight or conv1_1.weight \
                 (found {})",
                path.display(),
                if sample_keys.is_empty() { "no tensors".to_string() } else { sample_keys.join(", ") }
            ),
            MissingLayer { path, layer, tensor, needed, available } => write!(
                f,
                "{}: has no tensor `{tensor}` ({layer}): the chosen layers need conv1_1..{} ({needed} \
                 conv layers) but the file has {}; choose taps at or below {} or use full VGG19 weights",
                path.display(),
                VGG19_CONVS[needed.saturating_sub(1).min(15)].0,
                if *available == 0 {
                    "none of them".to_string()
                } else {
                    format!("conv1_1..{} only", VGG19_CONVS[available - 1].0)
                },
                if *available == 0 {
                    "(none)".to_string()
                } else {
                    VGG19_CONVS[available - 1].0.replace("conv", "relu")
                }
            ),
            BadShape { path, tensor, expected, found } => {
                write!(f, "{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", path.display())
            }
            BadDtype { path, tensor, dtype } => write!(
                f,
                "{}: tensor `{tensor}` has element type {dtype}; only float32 is supported \
                 (convert with tensor.float())",
                path.display()
            ),
            NonFinite { path, tensor, index, value } => write!(
                f,
                "{}: tensor `{tensor}` holds a non-finite value ({value}) at flat index {index}",
                path.display()
            ),
            Download { url, detail } => write!(f, "download of {url} failed: {detail}"),
            HashMismatch { url, expected, found } => write!(
                f,
                "download of {url} is corrupt: sha256 {found} does not match the expected {expected}; \
                 nothing was kept, try again"
            ),
        }
    }
}

impl std::error::Error for WeightsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeightsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, WeightsError>;

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> WeightsError + 'a {
    move |source| WeightsError::Io { path: path.to_path_buf(), action, source }
}

fn malformed(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::Malformed { path: path.to_path_buf(), detail: detail.into() }
}

fn truncated(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::Truncated { path: path.to_path_buf(), detail: detail.into() }
}

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

/// Load `needed` conv layers (conv1_1 .. `VGG19_CONVS[needed-1]`) from a .pth (both torch.save
/// formats) or .npz file. Other tensors (classifier.*, deeper layers) are ignored.
pub fn load(path: &Path, needed: usize) -> Result<VggWeights> {
    check_needed(needed)?;
    let mut cat = Catalogue::open(path)?;
    let plan = plan_layers(&cat, needed)?;
    let wanted: Vec<usize> = plan.iter().flat_map(|&(w, b)| [w, b]).collect();
    let mut data = cat.read(&wanted)?;
    let mut layers = Vec::with_capacity(needed);
    for (i, &(wi, bi)) in plan.iter().enumerate() {
        let (name, cin, cout) = VGG19_CONVS[i];
        let weight = std::mem::take(&mut data[2 * i]);
        let bias = std::mem::take(&mut data[2 * i + 1]);
        for (tensor, values) in [(&cat.entries[wi].key, &weight), (&cat.entries[bi].key, &bias)] {
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(WeightsError::NonFinite {
                    path: path.to_path_buf(),
                    tensor: tensor.clone(),
                    index,
                    value: values[index],
                });
            }
        }
        layers.push(ConvParams { name: name.to_string(), cin, cout, weight, bias });
    }
    let (convention, _) = recognise_convention(path)?;
    Ok(VggWeights { layers, convention, source: path.display().to_string() })
}

/// Seeded random weights with VGG19's shapes: He-normal weights (std sqrt(2/(cin*9))) and
/// N(0, 0.01) biases. Bit-identical on every platform: splitmix64 plus a Box-Muller transform
/// built from IEEE basic operations only (no libm calls, whose last bits vary by platform).
/// Layer i does not depend on `needed`. Panics only if `needed` is outside 1..=16.
pub fn random(seed: u64, needed: usize) -> VggWeights {
    assert!((1..=16).contains(&needed), "random(): needed must be 1..=16, got {needed}");
    let layers = VGG19_CONVS[..needed]
        .iter()
        .enumerate()
        .map(|(i, &(name, cin, cout))| {
            // One independent stream per layer, so a layer's values never depend on `needed`.
            let mut rng = Normal::new(seed ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let std = (2.0 / (cin as f64 * 9.0)).sqrt();
            let weight = (0..cout * cin * 9).map(|_| (rng.next() * std) as f32).collect();
            let bias = (0..cout).map(|_| (rng.next() * 0.01) as f32).collect();
            ConvParams { name: name.to_string(), cin, cout, weight, bias }
        })
        .collect();
    VggWeights { layers, convention: None, source: format!("random(seed={seed})") }
}

/// Where downloaded weights are cached: `$STYLIZE_CACHE` if set, else the platform cache dir
/// (`$XDG_CACHE_HOME/stylize` or `~/.cache/stylize` on Linux, `~/Library/Caches/stylize` on
/// macOS, `%LOCALAPPDATA%\stylize` on Windows), else `<temp dir>/stylize-cache`.
pub fn cache_dir() -> PathBuf {
    let env_dir = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env_dir("STYLIZE_CACHE") {
        return dir;
    }
    let platform = if cfg!(target_os = "macos") {
        env_dir("HOME").map(|h| h.join("Library").join("Caches"))
    } else if cfg!(windows) {
        env_dir("LOCALAPPDATA").or_else(|| env_dir("USERPROFILE").map(|h| h.join("AppData").join("Local")))
    } else {
        env_dir("XDG_CACHE_HOME")
            .filter(|p| p.is_absolute()) // the XDG spec says to ignore relative values
            .or_else(|| env_dir("HOME").map(|h| h.join(".cache")))
    };
    match platform {
        Some(dir) => dir.join("stylize"),
        None => std::env::temp_dir().join("stylize-cache"),
    }
}

/// Download `url` to `dest` atomically: stream into a temporary file beside `dest` while
/// hashing, check the length against Content-Length, check the SHA-256 (`sha256` is the full
/// 64-digit digest or a prefix of at least 8 hex digits), fsync, then rename. On any failure
/// the temporary file is removed, so `dest` only ever appears verified. `progress` draws an
/// indicatif bar on stderr (hidden when stderr is not a terminal).
pub fn fetch(url: &str, dest: &Path, sha256: &str, progress: bool) -> Result<()> {
    let expected = normalise_hash(sha256)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| WeightsError::InvalidArgument(format!("{}: not a file path", dest.display())))?;
    fs::create_dir_all(&dir).map_err(io_err(&dir, "create the cache directory"))?;
    // Per-process temp name: two concurrent downloads must not write into the same file.
    let tmp = dir.join(format!(".{}.{}.part", file_name.to_string_lossy(), std::process::id()));
    let mut guard = RemoveOnDrop { path: tmp.clone(), armed: true };

    let download_err = |detail: String| WeightsError::Download { url: url.to_string(), detail };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
        .timeout_per_read(Some(std::time::Duration::from_secs(60)))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => download_err(format!("server answered HTTP {code}")),
        other => download_err(other.to_string()),
    })?;
    let content_length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let mut body = response.into_body().into_reader();

    let bar = progress_bar(progress, content_length, &file_name.to_string_lossy());
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    {
        let mut file = File::create(&tmp).map_err(io_err(&tmp, "create the download file"))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    return Err(download_err(format!("connection failed after {received} bytes: {e}")));
                }
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io_err(&tmp, "write the download file"))?;
            received += n as u64;
            bar.inc(n as u64);
        }
        if let Some(len) = content_length {
            if received != len {
                bar.abandon();
                return Err(download_err(format!("received {received} bytes but the server announced {len}")));
            }
        }
        file.sync_all().map_err(io_err(&tmp, "flush the download file"))?;
    }
    bar.finish_and_clear();
    let found = hex(&hasher.finalize());
    if !found.starts_with(&expected) {
        return Err(WeightsError::HashMismatch { url: url.to_string(), expected, found });
    }
    fs::rename(&tmp, dest).map_err(io_err(dest, "move the verified download into place"))?;
    guard.armed = false;
    // Make the rename itself durable where the platform allows syncing a directory.
    #[cfg(unix)]
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The weights the renderer uses when the user gives none: `cache_dir()/vgg19-dcbb9e9d.pth`,
/// downloaded with [`fetch`] (and so verified) if absent.
pub fn default_weights(progress: bool) -> Result<PathBuf> {
    let path = cache_dir().join(TORCHVISION_FILE_NAME);
    if path.is_file() {
        return Ok(path);
    }
    if progress {
        eprintln!("downloading VGG19 weights (548 MB, once) to {}", path.display());
    }
    fetch(TORCHVISION_URL, &path, TORCHVISION_SHA256, progress)?;
    Ok(path)
}

/// Human summary for `stylize weights info PATH`: format, layers found with shapes,
/// convention, sha256. Reads metadata only (plus one hashing pass over the file).
pub fn info(path: &Path) -> Result<String> {
    use fmt::Write as _;
    let cat = Catalogue::open(path)?;
    let size = fs::metadata(path).map_err(io_err(path, "read metadata of"))?.len();
    let sha = sha256_file(path)?;
    let (convention, reason) = recognise_convention_with_hash(path, Some(&sha));
    let mut s = String::new();
    let _ = writeln!(s, "file:       {} ({:.1} MB)", path.display(), size as f64 / 1e6);
    let _ = writeln!(s, "format:     {}", cat.format.describe());
    let _ = writeln!(s, "sha256:     {sha}");
    let _ = writeln!(
        s,
        "convention: {} ({reason})",
        match convention {
            Some(Convention::Torch) => "torch: RGB 0..1, ImageNet mean/std",
            Some(Convention::Caffe) => "caffe: BGR 0..255 minus mean",
            None => "unknown",
        }
    );
    let style = key_style(&cat);
    let mut used = HashSet::new();
    let mut usable = 0;
    let _ = writeln!(s, "layers:");
    for (i, &(name, cin, cout)) in VGG19_CONVS.iter().enumerate() {
        let mut line = format!("  {name:<8}");
        let mut ok = style.is_some();
        let mut missing = 0;
        for (suffix, expected) in [("weight", vec![cout, cin, 3, 3]), ("bias", vec![cout])] {
            let key = style.map(|st| st.key(i, suffix)).unwrap_or_default();
            match cat.find(&key) {
                Some(e) => {
                    used.insert(key.clone());
                    let good = e.shape.iter().map(|&d| d as usize).eq(expected.iter().copied()) && e.readable;
                    ok &= good;
                    let verdict = if good { String::new() } else { format!(" (expected {expected:?} float32)") };
                    let _ = write!(line, " {key} {:?} {}{verdict}", e.shape, e.dtype);
                }
                None => {
                    ok = false;
                    missing += 1;
                    let _ = write!(line, " {} missing", if key.is_empty() { suffix.to_string() } else { key });
                }
            }
        }
        if ok && usable == i {
            usable += 1;
        }
        if missing == 2 {
            line = format!("  {name:<8} missing");
        }
        let _ = writeln!(s, "{line}");
    }
    let ignored: Vec<&str> = cat.entries.iter().map(|e| e.key.as_str()).filter(|k| !used.contains(*k)).collect();
    let _ = writeln!(
        s,
        "ignored:    {} other tensor(s){}{}",
        ignored.len(),
        if ignored.is_empty() { "" } else { ": " },
        preview(&ignored, 6)
    );
    let _ = write!(
        s,
        "usable:     {}",
        if usable == 0 {
            "no layers (not VGG19 weights?)".to_string()
        } else {
            format!(
                "conv1_1..{} (load with needed <= {usable}; taps up to {})",
                VGG19_CONVS[usable - 1].0,
                VGG19_CONVS[usable - 1].0.replace("conv", "relu")
            )
        }
    );
    Ok(s)
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, "read")(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Weight files whose convention is known, by SHA-256 (full digest or torch-hub style prefix).
const KNOWN_FILES: [(&str, Convention, &str); 2] = [
    (
        "f45e91dffaaf9d0b6b3aca516f6239791be70e16c513c32b7db39611e9ababdb",
        Convention::Caffe,
        "the Caffe VGG19 conv1_1..conv3_4 npz from shared/data",
    ),
    ("dcbb9e9d", Convention::Torch, "torchvision's vgg19-dcbb9e9d.pth"),
];

/// Which preprocessing a weights file expects, and why we think so (see weights/README.md):
/// 1. the file name: contains "caffe" or jcjohnson's Caffe conversion `vgg19-d01eb7cb`
///    => Caffe; contains torchvision's `vgg19-dcbb9e9d` => Torch;
/// 2. otherwise the file's SHA-256 against [`KNOWN_FILES`] (costs one read of the file);
/// 3. otherwise `None`: the caller picks (torch is the usual default).
pub fn recognise_convention(path: &Path) -> Result<(Option<Convention>, String)> {
    if let (Some(c), reason) = recognise_by_name(path) {
        return Ok((Some(c), reason));
    }
    let sha = sha256_file(path)?;
    Ok(recognise_convention_with_hash(path, Some(&sha)))
}

fn recognise_by_name(path: &Path) -> (Option<Convention>, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.contains("caffe") {
        (Some(Convention::Caffe), "file name contains \"caffe\"".into())
    } else if name.contains("vgg19-d01eb7cb") {
        (Some(Convention::Caffe), "file name is jcjohnson's Caffe conversion vgg19-d01eb7cb".into())
    } else if name.contains("vgg19-dcbb9e9d") {
        (Some(Convention::Torch), "file name is torchvision's vgg19-dcbb9e9d".into())
    } else {
        (None, String::new())
    }
}

fn recognise_convention_with_hash(path: &Path, sha: Option<&str>) -> (Option<Convention>, String) {
    if let (Some(c), reason) = recognise_by_name(path) {
        return (Some(c), reason);
    }
    if let Some(sha) = sha {
        for (known, conv, what) in KNOWN_FILES {
            if sha.starts_with(known) {
                return (Some(conv), format!("sha256 identifies {what}"));
            }
        }
    }
    (None, "neither the file name nor the sha256 is known; choose the preprocessing yourself".into())
}

// ---------------------------------------------------------------------------------------------
// Layer planning (shared by all formats)
// ---------------------------------------------------------------------------------------------

fn check_needed(needed: usize) -> Result<()> {
    if (1..=16).contains(&needed) {
        Ok(())
    } else {
        Err(WeightsError::InvalidArgument(format!("needed must be between 1 and 16 conv layers, got {needed}")))
    }
}

/// How the file names its tensors.
#[derive(Clone, Copy)]
enum KeyStyle {
    /// `features.N.weight` with an optional prefix such as `module.` (DataParallel).
    Torchvision(&'static str),
    /// `conv1_1.weight`, with an optional prefix.
    Named(&'static str),
}

impl KeyStyle {
    fn key(self, layer: usize, suffix: &str) -> String {
        match self {
            KeyStyle::Torchvision(p) => {
                format!("{p}features.{}.{suffix}", TORCHVISION_FEATURE_INDEX[layer])
            }
            KeyStyle::Named(p) => format!("{p}{}.{suffix}", VGG19_CONVS[layer].0),
        }
    }
}

/// The key style whose conv1_1 weight is present.
fn key_style(cat: &Catalogue) -> Option<KeyStyle> {
    [KeyStyle::Torchvision(""), KeyStyle::Named(""), KeyStyle::Torchvision("module."), KeyStyle::Named("module.")]
        .into_iter()
        .find(|st| cat.find(&st.key(0, "weight")).is_some())
}

/// Validate names, shapes and dtypes of the needed layers before reading any data; returns the
/// (weight, bias) entry indices per layer.
fn plan_layers(cat: &Catalogue, needed: usize) -> Result<Vec<(usize, usize)>> {
    let path = &cat.path;
    let Some(style) = key_style(cat) else {
        let keys: Vec<&str> = cat.entries.iter().map(|e| e.key.as_str()).collect();
        return Err(WeightsError::NotVgg {
            path: path.clone(),
            sample_keys: keys.iter().take(5).map(|s| s.to_string()).collect(),
        });
    };
    // Leading layers with both tensors present, for the "file only has ..." part of errors.
    let available = (0..16)
        .take_while(|&i| cat.find(&style.key(i, "weight")).is_some() && cat.find(&style.key(i, "bias")).is_some())
        .count();
    let mut plan = Vec::with_capacity(needed);
    for (i, &(layer, cin, cout)) in VGG19_CONVS[..needed].iter().enumerate() {
        let mut pair = [0usize; 2];
        for (slot, (suffix, expected)) in
            [("weight", vec![cout, cin, 3, 3]), ("bias", vec![cout])].into_iter().enumerate()
        {
            let key = style.key(i, suffix);
            let Some(idx) = cat.find_index(&key) else {
                return Err(WeightsError::MissingLayer { path: path.clone(), layer, tensor: key, needed, available });
            };
            let e = &cat.entries[idx];
            if !e.shape.iter().map(|&d| d as usize).eq(expected.iter().copied())
                || e.shape.iter().any(|&d| d > u32::MAX as u64)
            {
                return Err(WeightsError::BadShape {
                    path: path.clone(),
                    tensor: key,
                    expected,
                    found: e.shape.clone(),
                });
            }
            if !e.readable {
                return Err(WeightsError::BadDtype { path: path.clone(), tensor: key, dtype: e.dtype.clone() });
            }
            pair[slot] = idx;
        }
        plan.push((pair[0], pair[1]));
    }
    Ok(plan)
}

fn preview(items: &[&str], n: usize) -> String {
    let mut s = items.iter().take(n).copied().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        s.push_str(&format!(", ... ({} more)", items.len() - n));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Catalogue: the tensors of one file, whatever its format
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    PthZip,
    PthLegacy,
    Npz,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::PthZip => "PyTorch .pth, zip format (torch.save, PyTorch >= 1.6)",
            Format::PthLegacy => "PyTorch .pth, legacy torch.save stream (pickles + raw storages)",
            Format::Npz => "NumPy .npz",
        }
    }
}

struct Entry {
    key: String,
    shape: Vec<u64>,
    /// For messages: "float32", "float16", "<i4", ...
    dtype: String,
    /// Whether we can read it as f32 (float32, or float64 in an .npz).
    readable: bool,
    src: EntrySrc,
}

enum EntrySrc {
    Torch(Rc<TensorRef>),
    Npy(NpyMember),
}

enum Backend {
    Zip {
        zip: zip::ZipArchive<BufReader<File>>,
        prefix: String,
        big_endian: bool,
        file_len: u64,
    },
    Legacy {
        file: BufReader<File>,
        file_len: u64,
        data_start: u64,
        keys: Vec<String>,
        storages: HashMap<String, (Dtype, u64)>,
        big_endian: bool,
    },
    Npz {
        zip: zip::ZipArchive<BufReader<File>>,
    },
}

struct Catalogue {
    path: PathBuf,
    format: Format,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    backend: Backend,
}

impl Catalogue {
    fn open(path: &Path) -> Result<Catalogue> {
        let mut file = File::open(path).map_err(io_err(path, "open"))?;
        let file_len = file.metadata().map_err(io_err(path, "read metadata of"))?.len();
        let mut head = [0u8; 8];
        let n = read_up_to(&mut file, &mut head).map_err(io_err(path, "read"))?;
        let head = &head[..n];
        file.seek(SeekFrom::Start(0)).map_err(io_err(path, "seek in"))?;
        let reader = BufReader::with_capacity(1 << 16, file);
        let (format, entries, backend) = if head.starts_with(b"PK") {
            open_zip(path, reader, file_len)?
        } else if head.len() >= 2 && head[0] == 0x80 && head[1] <= 5 {
            open_legacy(path, reader, file_len)?
        } else if head.starts_with(b"\x93NUMPY") {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
                detail: "a single .npy array; put the arrays in an .npz with named members".into(),
            });
        } else if n == 0 {
            return Err(WeightsError::UnknownFormat { path: path.to_path_buf(), detail: "the file is empty".into() });
        } else {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
                detail: format!("starts with bytes {:02x?}", head),
            });
        };
        let mut index = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.key.clone()).or_insert(i);
        }
        Ok(Catalogue { path: path.to_path_buf(), format, entries, index, backend })
    }

    fn find_index(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    fn find(&self, key: &str) -> Option<&Entry> {
        self.find_index(key).map(|i| &self.entries[i])
    }

    /// Read the given entries as f32, in order. Shapes were validated by `plan_layers`.
    fn read(&mut self, wanted: &[usize]) -> Result<Vec<Vec<f32>>> {
        let path = self.path.clone();
        match &mut self.backend {
            Backend::Zip { zip, prefix, big_endian, file_len } => {
                let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
                let mut out = Vec::with_capacity(wanted.len());
                for &i in wanted {
                    let e = &self.entries[i];
                    let EntrySrc::Torch(t) = &e.src else {
                        return Err(malformed(&path, "internal: entry kind"));
                    };
                    if !cache.contains_key(&t.storage.key) {
                        let bytes = read_zip_storage(&path, zip, prefix, &t.storage, *file_len)?;
                        cache.insert(t.storage.key.clone(), bytes);
                    }
                    let bytes = &cache[&t.storage.key];
                    out.push(
                        gather_f32(t, bytes, *big_endian)
                            .map_err(|d| malformed(&path, format!("tensor `{}`: {d}", e.key)))?,
                    );
                }
                Ok(out)
            }
            Backend::Legacy { file, file_len, data_start, keys, storages, big_endian } => {
                let mut want_keys = HashSet::new();
                for &i in wanted {
                    if let EntrySrc::Torch(t) = &self.entries[i].src {
                        want_keys.insert(t.storage.key.clone());
                    }
                }
                let blobs = read_legacy_storages(&path, file, *file_len, *data_start, keys, storages, &want_keys)?;
                let mut out = Vec::with_capacity(wanted.len());
                for &i in wanted {
                    let e = &self.entries[i];
                    let EntrySrc::Torch(t) = &e.src else {
                        return Err(malformed(&path, "internal: entry kind"));
                    };
                    let bytes = blobs.get(&t.storage.key).ok_or_else(|| {
                        malformed(
                            &path,
                            format!(
                                "tensor `{}` uses storage {:?}, which the storage list does not contain",
                                e.key, t.storage.key
                            ),
                        )
                    })?;
                    out.push(
                        gather_f32(t, bytes, *big_endian)
                            .map_err(|d| malformed(&path, format!("tensor `{}`: {d}", e.key)))?,
                    );
                }
                Ok(out)
            }
            Backend::Npz { zip } => {
                let mut out = Vec::with_capacity(wanted.len());
                for &i in wanted {
                    let e = &self.entries[i];
                    let EntrySrc::Npy(m) = &e.src else {
                        return Err(malformed(&path, "internal: entry kind"));
                    };
                    out.push(read_npy_member(&path, zip, m, &e.shape)?);
                }
                Ok(out)
            }
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Strided copy of a tensor out of its root storage's bytes, in row-major order.
fn gather_f32(t: &TensorRef, bytes: &[u8], big_endian: bool) -> std::result::Result<Vec<f32>, String> {
    let s = &t.storage;
    if s.dtype != Dtype::F32 {
        return Err(format!("storage holds {}, not float32", s.dtype.name()));
    }
    let root_elems = bytes.len() as u64 / 4;
    match s.view_offset.checked_add(s.view_numel) {
        Some(end) if end <= root_elems => {}
        _ => {
            return Err(format!(
                "storage view [{}, +{}) lies outside its {root_elems}-element storage",
                s.view_offset, s.view_numel
            ))
        }
    }
    if t.size.len() != t.stride.len() {
        return Err(format!("{} sizes but {} strides", t.size.len(), t.stride.len()));
    }
    // A dimension of size 1 never moves, whatever its stride says (it may be anything).
    let stride: Vec<u64> = t.size.iter().zip(&t.stride).map(|(&sz, &st)| if sz > 1 { st } else { 0 }).collect();
    let mut numel: u64 = 1;
    let mut last = t.offset; // largest element index touched, relative to the view
    for (&sz, &st) in t.size.iter().zip(&stride) {
        numel = numel.checked_mul(sz).ok_or("element count overflows")?;
        if sz > 0 {
            last = (sz - 1).checked_mul(st).and_then(|x| x.checked_add(last)).ok_or("strides overflow")?;
        }
    }
    if numel == 0 {
        return Ok(Vec::new());
    }
    if last >= s.view_numel {
        return Err(format!(
            "offset {} with sizes {:?} and strides {:?} reaches element {last} of a {}-element storage",
            t.offset, t.size, t.stride, s.view_numel
        ));
    }
    let base = s.view_offset + t.offset; // fits: both bounded by root_elems
    let read = |i: u64| -> f32 {
        let at = (i * 4) as usize;
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if big_endian {
            f32::from_be_bytes(b)
        } else {
            f32::from_le_bytes(b)
        }
    };
    let mut out = Vec::with_capacity(numel as usize);
    let row_major = {
        let mut expect = 1u64;
        t.size.iter().zip(&stride).rev().all(|(&sz, &st)| {
            let ok = sz <= 1 || st == expect;
            expect = expect.saturating_mul(sz);
            ok
        })
    };
    if row_major {
        out.extend((base..base + numel).map(read));
        return Ok(out);
    }
    // Odometer over the multi-index; `pos` is the storage index of the current element. The
    // bound check above keeps every intermediate `pos` below 2 * view_numel: no overflow.
    let nd = t.size.len();
    let mut idx = vec![0u64; nd];
    let mut pos = base;
    for _ in 0..numel {
        out.push(read(pos));
        for d in (0..nd).rev() {
            idx[d] += 1;
            pos += stride[d];
            if idx[d] < t.size[d] {
                break;
            }
            pos -= stride[d] * t.size[d];
            idx[d] = 0;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Zip containers: torch zip .pth and .npz
// ---------------------------------------------------------------------------------------------

/// Largest data.pkl we accept; a VGG19 state dict's is about 3 KB.
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Largest .npy header we accept (numpy itself caps it at 64 KiB for version 1).
const MAX_NPY_HEADER: u64 = 1 << 20;
/// Most members we look at in one archive.
const MAX_MEMBERS: usize = 100_000;

fn zip_error(path: &Path, e: zip::result::ZipError) -> WeightsError {
    match e {
        zip::result::ZipError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            truncated(path, format!("zip archive ends early ({e})"))
        }
        other => malformed(path, format!("broken zip archive ({other}); the file may be truncated or corrupt")),
    }
}

type Opened = (Format, Vec<Entry>, Backend);

fn open_zip(path: &Path, reader: BufReader<File>, file_len: u64) -> Result<Opened> {
    let zip = zip::ZipArchive::new(reader).map_err(|e| zip_error(path, e))?;
    if zip.len() > MAX_MEMBERS {
        return Err(malformed(path, format!("zip archive lists {} members", zip.len())));
    }
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    // torch writes `<prefix>/data.pkl`; the prefix is the archive's stem and varies.
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .cloned();
    if let Some(pkl) = pkl {
        let prefix = pkl.trim_end_matches("/data.pkl").to_string();
        return open_zip_pth(path, zip, prefix, file_len);
    }
    if names.iter().any(|n| n.ends_with(".npy")) {
        return open_npz(path, zip, &names);
    }
    Err(WeightsError::UnknownFormat {
        path: path.to_path_buf(),
        detail: "a zip archive with neither <name>/data.pkl (torch) nor .npy members (npz)".into(),
    })
}

fn read_zip_member_limited(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut f = zip.by_name(name).map_err(|e| zip_error(path, e))?;
    if f.size() > limit {
        return Err(malformed(path, format!("member {name} is {} bytes, more than the {limit} accepted", f.size())));
    }
    let mut v = Vec::new();
    (&mut f).take(limit).read_to_end(&mut v).map_err(|e| member_read_error(path, name, e))?;
    Ok(v)
}

fn member_read_error(path: &Path, name: &str, e: io::Error) -> WeightsError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        truncated(path, format!("zip member {name} ends early"))
    } else {
        malformed(path, format!("cannot read zip member {name}: {e}"))
    }
}

fn open_zip_pth(
    path: &Path,
    mut zip: zip::ZipArchive<BufReader<File>>,
    prefix: String,
    file_len: u64,
) -> Result<Opened> {
    let pkl = read_zip_member_limited(path, &mut zip, &format!("{prefix}/data.pkl"), MAX_PICKLE_BYTES)?;
    let big_endian = match zip.by_name(&format!("{prefix}/byteorder")) {
        Ok(mut f) => {
            let mut s = String::new();
            let _ = (&mut f).take(16).read_to_string(&mut s);
            s.trim() == "big"
        }
        Err(_) => false, // files from before the byteorder member existed are little-endian
    };
    let mut vm = Unpickler::new(path);
    let mut src = Src { r: &mut &pkl[..], pos: 0, end: pkl.len() as u64 };
    let root = vm.run(&mut src)?;
    let entries = torch_entries(path, &root)?;
    Ok((Format::PthZip, entries, Backend::Zip { zip, prefix, big_endian, file_len }))
}

fn read_zip_storage(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    prefix: &str,
    s: &StorageRef,
    file_len: u64,
) -> Result<Vec<u8>> {
    let name = format!("{prefix}/data/{}", s.key);
    let mut f = match zip.by_name(&name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(malformed(path, format!("storage {:?} is referenced but member {name} is absent", s.key)))
        }
        Err(e) => return Err(zip_error(path, e)),
    };
    let need = s
        .numel
        .checked_mul(s.dtype.size())
        .ok_or_else(|| malformed(path, format!("storage {:?} size overflows", s.key)))?;
    // torch stores members uncompressed; refusing compression also rules out zip bombs.
    if f.compression() != zip::CompressionMethod::Stored {
        return Err(malformed(
            path,
            format!("member {name} is compressed ({:?}); torch writes storages uncompressed", f.compression()),
        ));
    }
    if f.size() < need {
        return Err(malformed(path, format!("member {name} holds {} bytes but the pickle declares {need}", f.size())));
    }
    if f.size() > file_len {
        return Err(truncated(path, format!("member {name} claims {} bytes, more than the whole file", f.size())));
    }
    let mut v = Vec::new();
    // Reading to the member's end also makes the zip reader check its CRC-32.
    f.read_to_end(&mut v).map_err(|e| member_read_error(path, &name, e))?;
    if (v.len() as u64) < need {
        return Err(truncated(path, format!("member {name} ends after {} of {need} bytes", v.len())));
    }
    v.truncate(need as usize);
    Ok(v)
}

struct NpyMember {
    member: String,
    data_offset: u64,
    elem: Option<(u8, bool)>, // (bytes per element 4|8, big endian)
    fortran: bool,
}

fn open_npz(path: &Path, mut zip: zip::ZipArchive<BufReader<File>>, names: &[String]) -> Result<Opened> {
    let mut entries = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".npy")) {
        let key = name.trim_end_matches(".npy").to_string();
        let mut f = zip.by_name(name).map_err(|e| zip_error(path, e))?;
        let size = f.size();
        let (header, data_offset) = read_npy_header(&mut f, size).map_err(|d| match d {
            NpyErr::Eof => truncated(path, format!("npz member {name} ends inside its header")),
            NpyErr::Bad(d) => malformed(path, format!("npz member {name}: {d}")),
        })?;
        let (dtype, elem) = match header.dtype() {
            npyz::DType::Plain(ts) => {
                let descr = ts.to_string();
                let is_float = ts.type_char() == npyz::TypeChar::Float;
                let big = ts.endianness() == npyz::Endianness::Big;
                let elem = match (is_float, ts.size_field()) {
                    (true, 4) => Some((4u8, big)),
                    (true, 8) => Some((8u8, big)),
                    _ => None,
                };
                let name = match elem {
                    Some((4, _)) => "float32".to_string(),
                    Some(_) => "float64".to_string(),
                    None => format!("numpy {descr}"),
                };
                (name, elem)
            }
            other => (format!("numpy {}", other.descr()), None),
        };
        entries.push(Entry {
            key,
            shape: header.shape().to_vec(),
            dtype,
            readable: elem.is_some(),
            src: EntrySrc::Npy(NpyMember {
                member: name.clone(),
                data_offset,
                elem,
                fortran: header.order() == npyz::Order::Fortran,
            }),
        });
    }
    Ok((Format::Npz, entries, Backend::Npz { zip }))
}

enum NpyErr {
    Eof,
    Bad(String),
}

/// Parse an .npy header. The pre-header is checked here (npyz would allocate whatever length it
/// declares); the dict literal is parsed by npyz, guarded because it can overflow on absurd shapes.
fn read_npy_header(r: &mut impl Read, member_size: u64) -> std::result::Result<(npyz::NpyHeader, u64), NpyErr> {
    let io_fail = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            NpyErr::Eof
        } else {
            NpyErr::Bad(e.to_string())
        }
    };
    let mut pre = vec![0u8; 8];
    r.read_exact(&mut pre).map_err(io_fail)?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(NpyErr::Bad("not an .npy array (bad magic)".into()));
    }
    let len_bytes = match pre[6] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(NpyErr::Bad(format!("unknown .npy version {v}"))),
    };
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb[..len_bytes]).map_err(io_fail)?;
    pre.extend_from_slice(&lb[..len_bytes]);
    let header_len = u32::from_le_bytes(lb) as u64;
    let data_offset = pre.len() as u64 + header_len;
    if header_len > MAX_NPY_HEADER || data_offset > member_size {
        return Err(NpyErr::Bad(format!("header length {header_len} is implausible")));
    }
    let mut text = vec![0u8; header_len as usize];
    r.read_exact(&mut text).map_err(io_fail)?;
    pre.extend_from_slice(&text);
    let parsed = std::panic::catch_unwind(|| npyz::NpyHeader::from_reader(&pre[..]));
    match parsed {
        Ok(Ok(h)) => Ok((h, data_offset)),
        Ok(Err(e)) => Err(NpyErr::Bad(e.to_string())),
        Err(_) => Err(NpyErr::Bad("header describes an impossible array".into())),
    }
}

fn read_npy_member(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    m: &NpyMember,
    shape: &[u64],
) -> Result<Vec<f32>> {
    let Some((esize, big)) = m.elem else {
        return Err(malformed(path, "internal: unreadable dtype"));
    };
    let numel: u64 = shape.iter().product(); // validated against VGG shapes: small
    let nbytes = numel * esize as u64;
    let mut f = zip.by_name(&m.member).map_err(|e| zip_error(path, e))?;
    io::copy(&mut (&mut f).take(m.data_offset), &mut io::sink()).map_err(|e| member_read_error(path, &m.member, e))?;
    let mut raw = Vec::new();
    (&mut f).take(nbytes).read_to_end(&mut raw).map_err(|e| member_read_error(path, &m.member, e))?;
    if (raw.len() as u64) < nbytes {
        return Err(truncated(path, format!("npz member {} holds {} of its {nbytes} data bytes", m.member, raw.len())));
    }
    let vals: Vec<f32> = if esize == 4 {
        raw.chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect()
    } else {
        raw.chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                (if big { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }) as f32
            })
            .collect()
    };
    if !m.fortran || shape.len() < 2 {
        return Ok(vals);
    }
    // Fortran order: first axis fastest. Reorder to row-major.
    let mut stride = vec![1u64; shape.len()];
    for d in 1..shape.len() {
        stride[d] = stride[d - 1] * shape[d - 1];
    }
    let t = TensorRef {
        storage: Rc::new(StorageRef {
            dtype: Dtype::F32,
            key: String::new(),
            numel,
            view_offset: 0,
            view_numel: numel,
        }),
        offset: 0,
        size: shape.to_vec(),
        stride,
    };
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    gather_f32(&t, &bytes, false).map_err(|d| malformed(path, d))
}

// ---------------------------------------------------------------------------------------------
// Legacy torch.save stream
// ---------------------------------------------------------------------------------------------

const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

fn open_legacy(path: &Path, mut file: BufReader<File>, file_len: u64) -> Result<Opened> {
    let mut vm = Unpickler::new(path);
    let mut src = Src { r: &mut file, pos: 0, end: file_len };
    match vm.run(&mut src)? {
        Val::Int(LEGACY_MAGIC) => {}
        _ => {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
                detail: "a pickle, but not a torch.save stream (magic number missing)".into(),
            })
        }
    }
    match vm.run(&mut src)? {
        Val::Int(LEGACY_PROTOCOL) => {}
        other => return Err(malformed(path, format!("unsupported torch.save protocol {}", other.brief()))),
    }
    let sys_info = vm.run(&mut src)?;
    let big_endian = matches!(dict_get(&sys_info, "little_endian"), Some(Val::Bool(false)));
    let root = vm.run(&mut src)?;
    let key_list = vm.run(&mut src)?;
    let keys = match &key_list {
        Val::List(s) | Val::Tuple(s) => s
            .items
            .iter()
            .map(|v| v.as_key().ok_or_else(|| malformed(path, "storage key list holds a non-string")))
            .collect::<Result<Vec<String>>>()?,
        _ => return Err(malformed(path, "expected the pickled list of storage keys after the state dict")),
    };
    let data_start = src.pos;
    let entries = torch_entries(path, &root)?;
    let storages = std::mem::take(&mut vm.storages);
    Ok((Format::PthLegacy, entries, Backend::Legacy { file, file_len, data_start, keys, storages, big_endian }))
}

/// Walk the storage section (each: u64 element count, raw bytes), checking every declared size
/// against the bytes left in the file before reading; returns the wanted storages' bytes.
fn read_legacy_storages(
    path: &Path,
    file: &mut BufReader<File>,
    file_len: u64,
    data_start: u64,
    keys: &[String],
    storages: &HashMap<String, (Dtype, u64)>,
    wanted: &HashSet<String>,
) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    let mut pos = data_start;
    file.seek(SeekFrom::Start(pos)).map_err(io_err(path, "seek in"))?;
    let n = keys.len();
    for (i, key) in keys.iter().enumerate() {
        if file_len - pos < 8 {
            return Err(truncated(path, format!("it ends where storage {} of {n} ({key:?}) should begin", i + 1)));
        }
        let mut cnt = [0u8; 8];
        file.read_exact(&mut cnt).map_err(io_err(path, "read"))?;
        pos += 8;
        let count = u64::from_le_bytes(cnt);
        let &(dtype, numel) = storages
            .get(key)
            .ok_or_else(|| malformed(path, format!("storage list names {key:?}, which no tensor uses")))?;
        if count != numel {
            return Err(malformed(
                path,
                format!("storage {key:?} has {count} elements on disk but the pickle declares {numel}"),
            ));
        }
        let nbytes = count.checked_mul(dtype.size()).filter(|&b| b <= file_len - pos).ok_or_else(|| {
            truncated(
                path,
                format!(
                    "storage {} of {n} ({key:?}) declares {count} {} elements but only {} bytes remain",
                    i + 1,
                    dtype.name(),
                    file_len - pos
                ),
            )
        })?;
        if wanted.contains(key) && !out.contains_key(key) {
            let mut v = vec![0u8; nbytes as usize]; // <= bytes left in the file
            file.read_exact(&mut v).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    truncated(path, format!("storage {key:?} ends early"))
                } else {
                    io_err(path, "read")(e)
                }
            })?;
            out.insert(key.clone(), v);
        } else {
            file.seek_relative(nbytes as i64).map_err(io_err(path, "seek in"))?;
        }
        pos += nbytes;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Restricted unpickler
// ---------------------------------------------------------------------------------------------

/// Element types of torch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
    Untyped,
}

impl Dtype {
    /// From a storage or legacy tensor class name without its suffix ("Float", "Long", ...).
    fn from_stem(stem: &str) -> Option<Dtype> {
        Some(match stem {
            "Float" => Dtype::F32,
            "Double" => Dtype::F64,
            "Half" => Dtype::F16,
            "BFloat16" => Dtype::BF16,
            "Long" => Dtype::I64,
            "Int" => Dtype::I32,
            "Short" => Dtype::I16,
            "Char" => Dtype::I8,
            "Byte" => Dtype::U8,
            "Bool" => Dtype::Bool,
            "ComplexFloat" => Dtype::C64,
            "ComplexDouble" => Dtype::C128,
            "Untyped" => Dtype::Untyped,
            _ => return None,
        })
    }
    fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::C64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::Untyped => 1,
            Dtype::C128 => 16,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::C64 => "complex64",
            Dtype::C128 => "complex128",
            Dtype::Untyped => "untyped bytes",
        }
    }
}

/// A storage as named by a persistent id: the root storage's key, plus the view into it (legacy
/// files may reference a slice of a root storage).
#[derive(Debug)]
struct StorageRef {
    dtype: Dtype,
    key: String,
    numel: u64,
    view_offset: u64,
    view_numel: u64,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

/// The only callables a pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensor,   // torch._utils._rebuild_tensor (torch <= 0.3)
    RebuildTensorV2, // torch._utils._rebuild_tensor_v2
    RebuildParameter,
    RebuildParameterWithState,
    TorchSize,
    Storage(Dtype),
    TensorClass(Dtype), // torch.FloatTensor etc. (oldest files: class() then BUILD with state)
}

fn resolve_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch._utils", "_rebuild_parameter_with_state") => Some(Global::RebuildParameterWithState),
        ("torch", "Size") => Some(Global::TorchSize),
        ("torch" | "torch.cuda", n) => {
            if let Some(stem) = n.strip_suffix("Storage") {
                Dtype::from_stem(stem).map(Global::Storage)
            } else if let Some(stem) = n.strip_suffix("Tensor") {
                Dtype::from_stem(stem).filter(|&d| d != Dtype::Untyped).map(Global::TensorClass)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A sequence with its nesting depth cached, so depth checks never recurse.
#[derive(Clone, Debug, Default)]
struct Seq {
    items: Vec<Val>,
    depth: u32,
}

#[derive(Clone, Debug, Default)]
struct Map {
    items: Vec<(Val, Val)>,
    depth: u32,
}

/// Pickle values. Containers are reference-counted and copy-on-write: cheap to share through
/// the memo, and a value never changes once inside another, so cached depths stay true.
#[derive(Clone, Debug)]
enum Val {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    /// Contents are never needed.
    Bytes,
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// `torch.FloatTensor()` awaiting its BUILD state.
    EmptyTensor(Dtype),
}

impl Val {
    fn depth(&self) -> u32 {
        match self {
            Val::Tuple(s) | Val::List(s) => s.depth,
            Val::Dict(m) => m.depth,
            Val::Storage(_) | Val::Tensor(_) => 1,
            _ => 0,
        }
    }
    fn brief(&self) -> String {
        match self {
            Val::None => "None".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(x) => x.to_string(),
            Val::Str(s) => format!("{:?}", s.chars().take(40).collect::<String>()),
            Val::Bytes => "bytes".into(),
            Val::Tuple(_) => "tuple".into(),
            Val::List(_) => "list".into(),
            Val::Dict(_) => "dict".into(),
            Val::Global(g) => format!("{g:?}"),
            Val::Storage(_) => "storage".into(),
            Val::Tensor(_) => "tensor".into(),
            Val::EmptyTensor(_) => "tensor class".into(),
        }
    }
    fn as_key(&self) -> Option<String> {
        match self {
            Val::Str(s) => Some(s.to_string()),
            Val::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match self {
            Val::Int(i) => u64::try_from(*i).ok(),
            Val::Bool(b) => Some(*b as u64),
            _ => None,
        }
    }
    fn as_seq(&self) -> Option<&[Val]> {
        match self {
            Val::Tuple(s) | Val::List(s) => Some(&s.items),
            _ => None,
        }
    }
}

fn dict_get<'a>(v: &'a Val, key: &str) -> Option<&'a Val> {
    match v {
        Val::Dict(m) => m.items.iter().rev().find(|(k, _)| matches!(k, Val::Str(s) if &**s == key)).map(|(_, v)| v),
        _ => None,
    }
}

/// Cap on nesting; torch state dicts nest about 4 deep. Keeps drops and checks non-recursive-safe.
const MAX_DEPTH: u32 = 64;
/// Cap on work (opcodes plus elements copied), so a crafted pickle cannot spin for minutes.
const MAX_WORK: u64 = 50_000_000;

/// Byte source for the unpickler that knows how many bytes may still follow, so every length
/// field is checked before a buffer is allocated.
struct Src<'a, R: Read> {
    r: &'a mut R,
    pos: u64,
    end: u64,
}

impl<R: Read> Src<'_, R> {
    fn bytes(&mut self, n: u64, path: &Path, what: &str) -> Result<Vec<u8>> {
        if n > self.end - self.pos {
            return Err(truncated(
                path,
                format!(
                    "the pickle data ends at byte {}, {} bytes short of the {what} that starts there",
                    self.end,
                    n - (self.end - self.pos)
                ),
            ));
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated(path, "pickle data ends early")
            } else {
                io_err(path, "read")(e)
            }
        })?;
        self.pos += n;
        Ok(v)
    }
    fn array<const N: usize>(&mut self, path: &Path, what: &str) -> Result<[u8; N]> {
        let v = self.bytes(N as u64, path, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }
    fn u8(&mut self, path: &Path) -> Result<u8> {
        Ok(self.array::<1>(path, "opcode")?[0])
    }
    /// A newline-terminated line (GLOBAL's module and name), at most 256 bytes.
    fn line(&mut self, path: &Path) -> Result<String> {
        let mut s = Vec::new();
        loop {
            let b = self.u8(path)?;
            if b == b'\n' {
                break;
            }
            if s.len() >= 256 {
                return Err(malformed(path, "GLOBAL name longer than 256 bytes"));
            }
            s.push(b);
        }
        String::from_utf8(s).map_err(|_| malformed(path, "GLOBAL name is not UTF-8"))
    }
}

struct Unpickler<'p> {
    path: &'p Path,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: HashMap<u32, Val>,
    work: u64,
    /// Root storages seen in persistent ids: key -> (dtype, element count).
    storages: HashMap<String, (Dtype, u64)>,
}

impl<'p> Unpickler<'p> {
    fn new(path: &'p Path) -> Self {
        Unpickler {
            path,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            work: 0,
            storages: HashMap::new(),
        }
    }

    fn bad(&self, detail: impl Into<String>) -> WeightsError {
        malformed(self.path, format!("bad pickle: {}", detail.into()))
    }

    fn charge(&mut self, units: u64) -> Result<()> {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            return Err(self.bad("too much work (crafted pickle?)"));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Val> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.bad("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.bad("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Val>> {
        let m = self.marks.pop().ok_or_else(|| self.bad("MARK missing"))?;
        if m > self.stack.len() {
            return Err(self.bad("MARK beyond stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn seq(&self, items: Vec<Val>) -> Result<Rc<Seq>> {
        let depth = 1 + items.iter().map(Val::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(Rc::new(Seq { items, depth }))
    }

    fn map(&self, items: Vec<(Val, Val)>) -> Result<Rc<Map>> {
        let depth = 1 + items.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(Rc::new(Map { items, depth }))
    }

    fn append(&mut self, items: Vec<Val>) -> Result<()> {
        let add = 1 + items.iter().map(Val::depth).max().unwrap_or(0);
        let shared = match self.stack.last() {
            Some(Val::List(s)) => {
                if Rc::strong_count(s) > 1 {
                    s.items.len() as u64
                } else {
                    0
                }
            }
            _ => return Err(self.bad("APPEND to something that is not a list")),
        };
        self.charge(shared + items.len() as u64)?;
        if add > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        if let Some(Val::List(s)) = self.stack.last_mut() {
            let s = Rc::make_mut(s);
            s.items.extend(items);
            s.depth = s.depth.max(add);
        }
        Ok(())
    }

    fn set_items(&mut self, flat: Vec<Val>) -> Result<()> {
        if !flat.len().is_multiple_of(2) {
            return Err(self.bad("SETITEMS with an odd number of values"));
        }
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        let add = 1 + pairs.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0);
        let shared = match self.stack.last() {
            Some(Val::Dict(m)) => {
                if Rc::strong_count(m) > 1 {
                    m.items.len() as u64
                } else {
                    0
                }
            }
            _ => return Err(self.bad("SETITEM on something that is not a dict")),
        };
        self.charge(shared + pairs.len() as u64)?;
        if add > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        if let Some(Val::Dict(m)) = self.stack.last_mut() {
            let m = Rc::make_mut(m);
            m.items.extend(pairs);
            m.depth = m.depth.max(add);
        }
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Val> {
        resolve_global(module, name).map(Val::Global).ok_or_else(|| WeightsError::ForbiddenGlobal {
            path: self.path.to_path_buf(),
            global: format!("{module}.{name}"),
        })
    }

    /// Run one pickle (up to STOP) and return its value. The memo is per pickle.
    fn run<R: Read>(&mut self, src: &mut Src<'_, R>) -> Result<Val> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        let path = self.path;
        loop {
            self.charge(1)?;
            let at = src.pos;
            let op = src.u8(path)?;
            match op {
                0x80 => {
                    // PROTO
                    let v = src.u8(path)?;
                    if v > 5 {
                        return Err(self.bad(format!("pickle protocol {v}")));
                    }
                }
                0x95 => {
                    src.array::<8>(path, "frame length")?; // FRAME: only a read-ahead hint
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Val::Dict(Rc::new(Map::default()))),
                b']' => self.stack.push(Val::List(Rc::new(Seq { items: vec![], depth: 1 }))),
                b')' => self.stack.push(Val::Tuple(Rc::new(Seq { items: vec![], depth: 1 }))),
                b'N' => self.stack.push(Val::None),
                0x88 => self.stack.push(Val::Bool(true)),
                0x89 => self.stack.push(Val::Bool(false)),
                b'K' => {
                    let v = src.u8(path)?;
                    self.stack.push(Val::Int(v as i128))
                }
                b'M' => {
                    let v = u16::from_le_bytes(src.array(path, "BININT2")?);
                    self.stack.push(Val::Int(v as i128))
                }
                b'J' => {
                    let v = i32::from_le_bytes(src.array(path, "BININT")?);
                    self.stack.push(Val::Int(v as i128))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes
                    let n = if op == 0x8a {
                        src.u8(path)? as i64
                    } else {
                        i32::from_le_bytes(src.array(path, "LONG4")?) as i64
                    };
                    if !(0..=16).contains(&n) {
                        return Err(self.bad(format!("integer of {n} bytes at byte {at}")));
                    }
                    let b = src.bytes(n as u64, path, "long")?;
                    let mut v: i128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n as usize - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n); // sign-extend
                    }
                    self.stack.push(Val::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(src.array(path, "BINFLOAT")?);
                    self.stack.push(Val::Float(v))
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                    let n = match op {
                        b'X' => u32::from_le_bytes(src.array(path, "string length")?) as u64,
                        0x8d => u64::from_le_bytes(src.array(path, "string length")?),
                        b'T' => {
                            let n = i32::from_le_bytes(src.array(path, "string length")?);
                            u64::try_from(n).map_err(|_| self.bad("negative string length"))?
                        }
                        _ => src.u8(path)? as u64,
                    };
                    let b = src.bytes(n, path, "string")?;
                    self.charge(n / 64)?;
                    let s: String = if op == b'T' || op == b'U' {
                        b.iter().map(|&c| c as char).collect() // Python 2 str: bytes, read as latin-1
                    } else {
                        String::from_utf8(b).map_err(|_| self.bad(format!("invalid UTF-8 in string at byte {at}")))?
                    };
                    self.stack.push(Val::Str(s.into()))
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => u32::from_le_bytes(src.array(path, "bytes length")?) as u64,
                        0x8e => u64::from_le_bytes(src.array(path, "bytes length")?),
                        _ => src.u8(path)? as u64,
                    };
                    src.bytes(n, path, "bytes")?;
                    self.charge(n / 64)?;
                    self.stack.push(Val::Bytes)
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => src.u8(path)? as u32,
                        b'r' => u32::from_le_bytes(src.array(path, "memo key")?),
                        _ => self.memo.len() as u32,
                    };
                    let top = self.stack.last().cloned().ok_or_else(|| self.bad("memoize on an empty stack"))?;
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        src.u8(path)? as u32
                    } else {
                        u32::from_le_bytes(src.array(path, "memo key")?)
                    };
                    let v = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| self.bad(format!("memo key {key} unset at byte {at}")))?;
                    self.stack.push(v)
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.stack.last().cloned().ok_or_else(|| self.bad("DUP on an empty stack"))?;
                    self.stack.push(top)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let s = self.seq(items)?;
                    self.stack.push(Val::Tuple(s))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let s = self.seq(items)?;
                    self.stack.push(Val::Tuple(s))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let s = self.seq(items)?;
                    self.stack.push(Val::List(s))
                }
                b'd' => {
                    let flat = self.pop_mark()?;
                    self.stack.push(Val::Dict(Rc::new(Map::default())));
                    self.set_items(flat)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let flat = self.pop_mark()?;
                    self.set_items(flat)?;
                }
                b'c' => {
                    let module = src.line(path)?;
                    let name = src.line(path)?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g)
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Val::Str(m), Val::Str(n)) => {
                            let g = self.global(&m, &n)?;
                            self.stack.push(g)
                        }
                        _ => return Err(self.bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: callable(*args)
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let (Val::Global(g), Val::Tuple(args)) = (&f, &args) else {
                        return Err(self.bad(format!("call of {} at byte {at}", f.brief())));
                    };
                    let v = self.call(*g, &args.items)?;
                    self.stack.push(v)
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let v = self.build(obj, state)?;
                    self.stack.push(v)
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(&pid)?;
                    self.stack.push(v)
                }
                _ => return Err(self.bad(format!("unsupported opcode 0x{op:02x} at byte {at}"))),
            }
        }
    }

    fn call(&mut self, g: Global, args: &[Val]) -> Result<Val> {
        match g {
            Global::OrderedDict => match args {
                [] => Ok(Val::Dict(Rc::new(Map::default()))),
                // Python 2's OrderedDict pickles as OrderedDict([[k, v], ...]).
                [Val::List(pairs)] => {
                    let mut items = Vec::with_capacity(pairs.items.len());
                    for p in &pairs.items {
                        match p.as_seq() {
                            Some([k, v]) => items.push((k.clone(), v.clone())),
                            _ => return Err(self.bad("OrderedDict item is not a pair")),
                        }
                    }
                    self.charge(items.len() as u64)?;
                    Ok(Val::Dict(self.map(items)?))
                }
                _ => Err(self.bad("unexpected OrderedDict arguments")),
            },
            Global::TorchSize => match args {
                [v @ Val::Tuple(_)] => Ok(v.clone()),
                [Val::List(s)] => Ok(Val::Tuple(s.clone())),
                _ => Err(self.bad("unexpected torch.Size arguments")),
            },
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                // (storage, storage_offset, size, stride, [requires_grad, backward_hooks, metadata])
                if args.len() < 4 {
                    return Err(self.bad("_rebuild_tensor needs 4 arguments"));
                }
                self.make_tensor(&args[0], &args[1], &args[2], &args[3])
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
                Some(t @ Val::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.bad("_rebuild_parameter of something that is not a tensor")),
            },
            Global::TensorClass(d) if args.is_empty() => Ok(Val::EmptyTensor(d)),
            other => Err(self.bad(format!("unexpected call of {other:?}"))),
        }
    }

    fn build(&mut self, obj: Val, state: Val) -> Result<Val> {
        match (&obj, &state) {
            // A state dict's `_metadata` attribute, a Parameter's hooks: irrelevant here.
            (Val::Dict(_), _) | (Val::Tensor(_), _) => Ok(obj),
            // Oldest torch: torch.FloatTensor() then __setstate__((storage, offset, size, stride)).
            (Val::EmptyTensor(class), Val::Tuple(s)) if s.items.len() == 4 => {
                let a = &s.items;
                match &a[0] {
                    Val::Storage(st) if st.dtype != *class => {
                        return Err(self.bad(format!("a {} tensor over a {} storage", class.name(), st.dtype.name())))
                    }
                    _ => {}
                }
                self.make_tensor(&a[0], &a[1], &a[2], &a[3])
            }
            _ => Err(self.bad(format!("BUILD of {} with {}", obj.brief(), state.brief()))),
        }
    }

    fn make_tensor(&self, storage: &Val, offset: &Val, size: &Val, stride: &Val) -> Result<Val> {
        let Val::Storage(storage) = storage else {
            return Err(self.bad("tensor without a storage"));
        };
        let offset = offset.as_u64().ok_or_else(|| self.bad("tensor offset is not a non-negative integer"))?;
        let dims = |v: &Val, what: &str| -> Result<Vec<u64>> {
            let s = v.as_seq().ok_or_else(|| self.bad(format!("tensor {what} is not a tuple")))?;
            if s.len() > 16 {
                return Err(self.bad(format!("tensor with {} dimensions", s.len())));
            }
            s.iter().map(|d| d.as_u64().ok_or_else(|| self.bad(format!("tensor {what} holds {}", d.brief())))).collect()
        };
        Ok(Val::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset,
            size: dims(size, "size")?,
            stride: dims(stride, "stride")?,
        })))
    }

    /// ('storage', storage_type, key, location, numel[, view_metadata]).
    fn persistent_load(&mut self, pid: &Val) -> Result<Val> {
        let Some(items) = pid.as_seq() else {
            return Err(self.bad("persistent id is not a tuple"));
        };
        match items.first() {
            Some(Val::Str(s)) if &**s == "storage" => {}
            Some(Val::Str(s)) if &**s == "module" => {
                return Err(self.bad("the file pickles a whole nn.Module; save model.state_dict() instead"))
            }
            _ => return Err(self.bad("unknown persistent id")),
        }
        if items.len() != 5 && items.len() != 6 {
            return Err(self.bad("storage persistent id of unexpected length"));
        }
        let Val::Global(Global::Storage(dtype)) = items[1] else {
            return Err(self.bad("storage persistent id without a storage type"));
        };
        let key = items[2].as_key().ok_or_else(|| self.bad("storage key is not a string"))?;
        let numel = items[4].as_u64().ok_or_else(|| self.bad("storage size is not a non-negative integer"))?;
        match self.storages.get(&key) {
            Some(&(d, n)) if d != dtype || n != numel => {
                return Err(self.bad(format!("storage {key:?} declared twice with different types or sizes")))
            }
            _ => {
                self.storages.insert(key.clone(), (dtype, numel));
            }
        }
        let (view_offset, view_numel) = match items.get(5) {
            None | Some(Val::None) => (0, numel),
            Some(v) => match v.as_seq() {
                Some([_view_key, off, size]) => {
                    let off = off.as_u64().ok_or_else(|| self.bad("storage view offset"))?;
                    let size = size.as_u64().ok_or_else(|| self.bad("storage view size"))?;
                    if off.checked_add(size).is_none_or(|e| e > numel) {
                        return Err(
                            self.bad(format!("view [{off}, +{size}) outside storage {key:?} of {numel} elements"))
                        );
                    }
                    (off, size)
                }
                _ => return Err(self.bad("malformed storage view metadata")),
            },
        };
        Ok(Val::Storage(Rc::new(StorageRef { dtype, key, numel, view_offset, view_numel })))
    }
}

/// Tensors of an unpickled state dict (or of `{"state_dict": ...}` / `{"model": ...}` wrappers).
fn torch_entries(path: &Path, root: &Val) -> Result<Vec<Entry>> {
    let tensors_of = |v: &Val| -> Vec<Entry> {
        let Val::Dict(m) = v else { return Vec::new() };
        m.items
            .iter()
            .filter_map(|(k, v)| match (k.as_key(), v) {
                (Some(key), Val::Tensor(t)) => Some(Entry {
                    key,
                    shape: t.size.clone(),
                    dtype: t.storage.dtype.name().to_string(),
                    readable: t.storage.dtype == Dtype::F32,
                    src: EntrySrc::Torch(t.clone()),
                }),
                _ => None,
            })
            .collect()
    };
    if !matches!(root, Val::Dict(_)) {
        return Err(WeightsError::NotVgg {
            path: path.to_path_buf(),
            sample_keys: vec![format!("a pickled {}, not a state dict", root.brief())],
        });
    }
    let direct = tensors_of(root);
    if !direct.is_empty() {
        return Ok(direct);
    }
    for wrapper in ["state_dict", "model"] {
        if let Some(inner) = dict_get(root, wrapper) {
            let found = tensors_of(inner);
            if !found.is_empty() {
                return Ok(found);
            }
        }
    }
    Ok(Vec::new())
}

// ---------------------------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------------------------

/// Removes a temporary file when dropped unless disarmed, so every early return cleans up.
struct RemoveOnDrop {
    path: PathBuf,
    armed: bool,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Lowercase hex digest or prefix (>= 8 digits), for comparing with a computed digest.
fn normalise_hash(s: &str) -> Result<String> {
    let h = s.trim().to_ascii_lowercase();
    if (8..=64).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err(WeightsError::InvalidArgument(format!(
            "expected a sha256 as 8 to 64 hex digits (full digest or prefix), got {s:?}"
        )))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress_bar(enabled: bool, len: Option<u64>, name: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (ProgressBar::new(n), "{msg} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"),
        None => (ProgressBar::new_spinner(), "{msg} {spinner} {bytes} {bytes_per_sec}"),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

// ---------------------------------------------------------------------------------------------
// Deterministic normal random numbers
// ---------------------------------------------------------------------------------------------

/// splitmix64 + Box-Muller, using only +, -, *, / and sqrt (all correctly rounded in IEEE 754),
/// so every platform produces the same bits.
struct Normal {
    state: u64,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Normal { state: seed, spare: None }
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let r = (-2.0 * ln(self.uniform())).sqrt();
        let (s, c) = sin_cos_2pi(self.uniform());
        self.spare = Some(r * s);
        r * c
    }
}

/// Natural log for x in (0, 1], from the exponent bits and an atanh series on the mantissa.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1023; // x is normal: x >= 2^-53
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1, 2)
                                                                                    // ln(m) = 2 atanh(s), s = (m-1)/(m+1) in [0, 1/3): 20 terms reach f64 precision.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..20 {
        sum += term / (2 * k + 1) as f64;
        term *= s2;
    }
    exp as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

/// (sin, cos) of 2*pi*u for u in (0, 1], by Taylor series after reducing to [-pi/4, pi/4].
fn sin_cos_2pi(u: f64) -> (f64, f64) {
    // Octant reduction in turns (exact in binary), then radians.
    let q = (u * 4.0 + 0.5).floor(); // nearest quarter turn
    let r = (u - q * 0.25) * (2.0 * std::f64::consts::PI); // [-pi/4, pi/4]
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    for k in 0..12 {
        s += ts;
        c += tc;
        ts *= -r2 / ((2 * k + 2) * (2 * k + 3)) as f64;
        tc *= -r2 / ((2 * k + 1) * (2 * k + 2)) as f64;
    }
    match (q as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_trig_match_std_closely() {
        for &x in &[1e-300, 1e-10, 0.001, 0.1, 0.25, 0.5, 0.7, 0.999_999, 1.0] {
            assert!((ln(x) - x.ln()).abs() <= 1e-13 * x.ln().abs().max(1.0), "ln({x})");
        }
        for i in 1..=1000 {
            let u = i as f64 / 1000.0;
            let (s, c) = sin_cos_2pi(u);
            let a = 2.0 * std::f64::consts::PI * u;
            assert!((s - a.sin()).abs() < 1e-12 && (c - a.cos()).abs() < 1e-12, "u={u}");
        }
    }

    fn unpickle(bytes: &[u8]) -> Result<Val> {
        let p = Path::new("crafted.pkl");
        let mut vm = Unpickler::new(p);
        let mut src = Src { r: &mut &bytes[..], pos: 0, end: bytes.len() as u64 };
        vm.run(&mut src)
    }

    #[test]
    fn hostile_pickles_fail_cleanly() {
        // 100k nested tuples: refused at depth 64 instead of overflowing the stack on drop.
        let mut deep = b"\x80\x02N".to_vec();
        deep.extend(std::iter::repeat_n(0x85u8, 100_000));
        deep.push(b'.');
        assert!(matches!(unpickle(&deep), Err(WeightsError::Malformed { .. })));
        // A 4 GiB string length in a 10-byte pickle: truncated, nothing allocated.
        assert!(matches!(unpickle(b"\x80\x02X\xff\xff\xff\xff."), Err(WeightsError::Truncated { .. })));
        assert!(matches!(
            unpickle(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff."),
            Err(WeightsError::Truncated { .. })
        ));
        // Doubling a value through the memo: 2^60 leaves when expanded, but shared, so cheap;
        // 100 doublings nest too deep and are refused.
        for (rounds, ok) in [(60, true), (100, false)] {
            let mut bomb = b"\x80\x02]q\x00".to_vec();
            for _ in 0..rounds {
                bomb.extend_from_slice(b"h\x00h\x00\x86q\x00\x30"); // t = (t, t); memo[0] = t; pop
            }
            bomb.extend_from_slice(b"h\x00.");
            assert_eq!(unpickle(&bomb).is_ok(), ok, "{rounds} doublings");
        }
        // Re-memoising a growing list forces a copy per append: the work budget stops it.
        let mut quad = b"\x80\x02]".to_vec();
        for _ in 0..200_000 {
            quad.extend_from_slice(b"q\x00Na"); // memo[0] = list; list.append(None)
        }
        quad.push(b'.');
        assert!(matches!(unpickle(&quad), Err(WeightsError::Malformed { .. })));
        // Unknown memo key, stack underflow, unknown opcode, forbidden globals.
        assert!(matches!(unpickle(b"\x80\x02h\x07."), Err(WeightsError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02a."), Err(WeightsError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02\xfe."), Err(WeightsError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02cbuiltins\neval\n."), Err(WeightsError::ForbiddenGlobal { .. })));
        assert!(matches!(
            unpickle(b"\x80\x02ctorch.storage\n_load_from_bytes\n."),
            Err(WeightsError::ForbiddenGlobal { .. })
        ));
        assert!(matches!(
            unpickle(b"\x80\x02\x8c\x02os\x8c\x06system\x93."),
            Err(WeightsError::ForbiddenGlobal { global, .. }) if global == "os.system"
        ));
    }

    #[test]
    fn gather_handles_strides_and_rejects_out_of_range() {
        let storage = |numel| {
            Rc::new(StorageRef { dtype: Dtype::F32, key: "0".into(), numel, view_offset: 0, view_numel: numel })
        };
        let bytes: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
        // 3x4 row-major storage read as its 4x3 transpose.
        let t = TensorRef { storage: storage(12), offset: 0, size: vec![4, 3], stride: vec![1, 4] };
        assert_eq!(gather_f32(&t, &bytes, false).unwrap(), [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        // Size-1 dimensions may carry any stride.
        let t = TensorRef { storage: storage(12), offset: 5, size: vec![1, 2], stride: vec![u64::MAX, 1] };
        assert_eq!(gather_f32(&t, &bytes, false).unwrap(), [5., 6.]);
        // Past the end of the storage, or overflowing strides: errors.
        for (offset, size, stride) in
            [(11, vec![2], vec![1]), (0, vec![2, 2], vec![u64::MAX / 2, 1]), (0, vec![13], vec![1])]
        {
            let t = TensorRef { storage: storage(12), offset, size, stride };
            assert!(gather_f32(&t, &bytes, false).is_err());
        }
        // A storage claiming more elements than the bytes hold.
        let t = TensorRef { storage: storage(100), offset: 0, size: vec![2], stride: vec![1] };
        assert!(gather_f32(&t, &bytes, false).is_err());
    }

    #[test]
    fn long1_sign_extension() {
        // LONG1 of -1 (one byte 0xff) and of the legacy magic number.
        let p = Path::new("t");
        let mut vm = Unpickler::new(p);
        let neg = b"\x80\x02\x8a\x01\xff.";
        let mut src = Src { r: &mut &neg[..], pos: 0, end: neg.len() as u64 };
        assert!(matches!(vm.run(&mut src), Ok(Val::Int(-1))));
        let magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        let mut src = Src { r: &mut &magic[..], pos: 0, end: magic.len() as u64 };
        assert!(matches!(vm.run(&mut src), Ok(Val::Int(LEGACY_MAGIC))));
    }
}
