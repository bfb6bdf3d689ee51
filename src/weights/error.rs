//! WeightsError, the one error type of this module, and shorthands that build it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::Model;

/// Everything that can go wrong; each message is one line naming the file and what to do.
#[derive(Debug)]
pub enum WeightsError {
    /// `needed` outside 1..=(the model's layer count), or a malformed hash string.
    InvalidArgument(String),
    /// An I/O operation on a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. "open" (the message reads "cannot open").
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// Not a format this module reads.
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What the file looks like instead.
        detail: String,
    },
    /// The container is broken (bad pickle, inconsistent sizes, bad zip).
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is broken.
        detail: String,
    },
    /// The file ends before the data it declares.
    Truncated {
        /// The file.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// A pickle names a global outside the allow-list (it would run code in Python).
    ForbiddenGlobal {
        /// The file.
        path: PathBuf,
        /// The global as `module.name`.
        global: String,
    },
    /// No VGG conv1_1 tensor is in the file.
    NotVgg {
        /// The file.
        path: PathBuf,
        /// Up to 5 of the tensor names the file does hold, for the message.
        sample_keys: Vec<String>,
    },
    /// The file holds the other model's layers than the one asked for.
    WrongModel {
        /// The file.
        path: PathBuf,
        /// The model asked for (`--model`).
        wanted: Model,
        /// The model the file holds.
        found: Model,
    },
    /// A layer the caller needs is absent.
    MissingLayer {
        /// The file.
        path: PathBuf,
        /// The model whose layers were asked for.
        model: Model,
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
    BadShape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<u64>,
    },
    /// A tensor has an element type we do not read.
    BadDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The element type found, e.g. "float16".
        dtype: String,
    },
    /// A weight is NaN or infinite.
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Flat index of the first non-finite value.
        index: usize,
        /// That value.
        value: f32,
    },
    /// HTTP failure, connection closed early, length mismatch.
    Download {
        /// What was being downloaded.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The downloaded bytes do not have the expected SHA-256.
    HashMismatch {
        /// What was downloaded.
        url: String,
        /// The expected digest (or prefix), lowercase hex.
        expected: String,
        /// The digest of the bytes received, lowercase hex.
        found: String,
    },
    /// The default weights could not be downloaded (no network, a proxy, a corrupt copy): the
    /// download's error and what to do instead.
    DefaultUnavailable {
        /// The download's error message.
        cause: String,
        /// Where the cache expects the file: a copy put there is used from then on.
        path: PathBuf,
        /// The `stylize weights fetch` command that retries the download.
        retry: String,
    },
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
                "{}: not a VGG16/VGG19 weights file: no tensor named features.0.weight or conv1_1.weight \
                 (found {})",
                path.display(),
                if sample_keys.is_empty() { "no tensors".to_string() } else { sample_keys.join(", ") }
            ),
            WrongModel { path, wanted, found } => write!(
                f,
                "{}: holds {found} (conv1_1..{}), not {wanted}; use --model {} (or leave --model out \
                 to use the file's model) or {wanted} weights",
                path.display(),
                found.convs().last().map_or("", |c| c.0),
                found.name()
            ),
            MissingLayer { path, model, layer, tensor, needed, available } => {
                let convs = model.convs();
                write!(
                    f,
                    "{}: has no tensor `{tensor}` ({layer}): the chosen layers need conv1_1..{} ({needed} \
                     conv layers of {model}) but the file has {}; choose taps at or below {} or use full \
                     {model} weights",
                    path.display(),
                    convs[needed.saturating_sub(1).min(convs.len() - 1)].0,
                    if *available == 0 {
                        "none of them".to_string()
                    } else {
                        format!("conv1_1..{} only", convs[available - 1].0)
                    },
                    if *available == 0 { "(none)".to_string() } else { convs[available - 1].0.replace("conv", "relu") }
                )
            }
            BadShape { path, tensor, expected, found } => {
                write!(f, "{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", path.display())
            }
            BadDtype { path, tensor, dtype } => write!(
                f,
                "{}: tensor `{tensor}` has element type {dtype}; only floating-point \
                 tensors (float32, float64, float16, bfloat16) are read (convert with tensor.float())",
                path.display()
            ),
            NonFinite { path, tensor, index, value } => write!(
                f,
                "{}: tensor `{tensor}` holds a non-finite value ({value}) at flat index {index}",
                path.display()
            ),
            Download { url, detail } => write!(f, "download of {url} failed: {detail}"),
            DefaultUnavailable { cause, path, retry } => write!(
                f,
                "{cause}. To go on: pass --weights PATH (a VGG .pth or .npz file), or put a copy of {} at {}, \
                 or retry the download with `{retry}`",
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                path.display()
            ),
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

pub(super) type Result<T> = std::result::Result<T, WeightsError>;

pub(super) fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> WeightsError + 'a {
    move |source| WeightsError::Io { path: path.to_path_buf(), action, source }
}

pub(super) fn malformed(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::Malformed { path: path.to_path_buf(), detail: detail.into() }
}

pub(super) fn truncated(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::Truncated { path: path.to_path_buf(), detail: detail.into() }
}
