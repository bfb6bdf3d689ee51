//! What can go wrong reading or writing an image ([`ImageIoError`], one-line messages) and the
//! limits applied while decoding ([`DecodeLimits`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::SUPPORTED_OUTPUT_EXTENSIONS;

/// Everything that can go wrong reading or writing an image. Each message is one line that names
/// the file and says what to do about it.
#[derive(Debug)]
pub enum ImageIoError {
    /// The input file does not exist.
    NotFound {
        /// The input file.
        path: PathBuf,
    },
    /// The input exists but could not be opened or read (permissions, a directory, I/O error).
    Read {
        /// The input file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The input file is empty.
    Empty {
        /// The input file.
        path: PathBuf,
    },
    /// The content is not a recognisable image.
    NotAnImage {
        /// The input file.
        path: PathBuf,
    },
    /// `read_png_text` was given something other than a PNG.
    NotPng {
        /// The input file.
        path: PathBuf,
    },
    /// A recognised image format that stylize does not decode (e.g. GIF, WebP).
    UnsupportedFormat {
        /// The input file.
        path: PathBuf,
        /// The format (or kind of format) found.
        format: String,
    },
    /// The header claims more pixels than the limits allow (refused before allocating).
    TooLarge {
        /// The input file.
        path: PathBuf,
        /// Width in pixels (from the header; 0 when unknown).
        width: u32,
        /// Height in pixels (from the header; 0 when unknown).
        height: u32,
        /// The width limit.
        max_width: u32,
        /// The height limit.
        max_height: u32,
    },
    /// Decoding would need more memory than the limit allows (refused before allocating).
    TooMuchMemory {
        /// The input file.
        path: PathBuf,
        /// Width in pixels (from the header; 0 when unknown).
        width: u32,
        /// Height in pixels (from the header; 0 when unknown).
        height: u32,
        /// Bytes decoding would need (at least).
        needed_bytes: u64,
        /// The memory limit in bytes.
        max_bytes: u64,
    },
    /// The header says the image has no pixels.
    ZeroSize {
        /// The input file.
        path: PathBuf,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
    },
    /// The content looked like `format` but could not be decoded (truncated, corrupt, ...).
    Decode {
        /// The input file.
        path: PathBuf,
        /// The format the content looked like.
        format: String,
        /// The decoder's message, on one line.
        message: String,
    },
    /// The output extension is not one we can write.
    UnsupportedExtension {
        /// The output file.
        path: PathBuf,
    },
    /// The output's directory does not exist (or is not a directory).
    OutputDirMissing {
        /// The output file.
        path: PathBuf,
        /// The output directory.
        dir: PathBuf,
    },
    /// The output's directory exists but we cannot create files in it.
    OutputDirNotWritable {
        /// The output file.
        path: PathBuf,
        /// The output directory.
        dir: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// Writing, syncing or renaming the output failed.
    Write {
        /// The output file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The encoder refused the image or the text (e.g. JPEG larger than 65535 px).
    Encode {
        /// The output file.
        path: PathBuf,
        /// The encoder's message, on one line.
        message: String,
    },
    /// A (key, value) text pair cannot be stored in a PNG.
    InvalidText {
        /// The output file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `Planar` handed to `save_image` is malformed.
    InvalidImage {
        /// The output file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ImageIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ImageIoError::*;
        match self {
            NotFound { path } => write!(f, "{}: file not found; check the path", path.display()),
            Read { path, source } => write!(f, "{}: cannot read the file: {source}", path.display()),
            Empty { path } => write!(f, "{}: the file is empty (0 bytes), not a PNG or JPEG image", path.display()),
            NotAnImage { path } => write!(
                f,
                "{}: not a PNG or JPEG image (the content is not recognised as an image, whatever its extension)",
                path.display()
            ),
            NotPng { path } => {
                write!(f, "{}: not a PNG file; only PNG files carry the embedded text chunks", path.display())
            }
            UnsupportedFormat { path, format } => {
                write!(f, "{}: {format} images are not supported; convert it to PNG or JPEG", path.display())
            }
            TooLarge { path, width, height, max_width, max_height } => write!(
                f,
                "{}: image is {width}x{height} pixels, larger than the limit of {max_width}x{max_height}; \
                 refusing to decode it (a damaged file or a decompression bomb?); downscale it first",
                path.display()
            ),
            TooMuchMemory { path, width, height, needed_bytes, max_bytes } => write!(
                f,
                "{}: decoding this {width}x{height} image needs about {}, more than the {} limit; \
                 downscale it first",
                path.display(),
                human_bytes(*needed_bytes),
                human_bytes(*max_bytes)
            ),
            ZeroSize { path, width, height } => {
                write!(f, "{}: image has zero size ({width}x{height}); nothing to load", path.display())
            }
            Decode { path, format, message } => {
                write!(f, "{}: cannot decode {format} image (truncated or corrupt file?): {message}", path.display())
            }
            UnsupportedExtension { path } => write!(
                f,
                "{}: unsupported output extension; use one of {}",
                path.display(),
                SUPPORTED_OUTPUT_EXTENSIONS.join(", ")
            ),
            OutputDirMissing { path, dir } => {
                write!(f, "{}: output directory {} does not exist; create it first", path.display(), dir.display())
            }
            OutputDirNotWritable { path, dir, source } => {
                write!(f, "{}: output directory {} is not writable: {source}", path.display(), dir.display())
            }
            Write { path, source } => write!(f, "{}: cannot write the image: {source}", path.display()),
            Encode { path, message } => write!(f, "{}: cannot encode the image: {message}", path.display()),
            InvalidText { path, key, reason } => {
                write!(f, "{}: cannot store text entry {key:?} in the PNG: {reason}", path.display())
            }
            InvalidImage { path, reason } => write!(f, "{}: invalid image to save: {reason}", path.display()),
        }
    }
}

/// 1536 -> "1.5 KiB", 3 << 30 -> "3.0 GiB": readable sizes for messages.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl std::error::Error for ImageIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImageIoError::Read { source, .. }
            | ImageIoError::OutputDirNotWritable { source, .. }
            | ImageIoError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Limits applied while decoding, checked against the header before any pixel buffer exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Widest image accepted, in pixels.
    pub max_width: u32,
    /// Tallest image accepted, in pixels.
    pub max_height: u32,
    /// Bound on the peak memory of `load_image`: the decoded buffer (plus a rotated copy when EXIF
    /// asks for one) and the f32 planar result.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_width: 20_000, max_height: 20_000, max_alloc_bytes: 1 << 30 }
    }
}

/// Decoder messages sometimes end in or contain newlines; ours are one line.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
