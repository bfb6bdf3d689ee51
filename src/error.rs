//! The one error type a user sees: each message says what went wrong. Messages name no command
//! line flag; the command line tool adds that advice (see `hint` in src/main.rs).

use std::fmt;

/// Everything that can go wrong in the library.
#[derive(Debug)]
pub enum Error {
    /// No GPU adapter at all (no driver installed).
    NoAdapter(String),
    /// The adapter asked for matched nothing.
    AdapterNotFound {
        /// What was asked for (`BACKEND:NAME`).
        wanted: String,
        /// Every adapter there is, described.
        available: Vec<String>,
    },
    /// Opening the device failed.
    Device(String),
    /// A GPU error caught by an error scope (validation, out of memory) or device loss.
    Gpu(String),
    /// The requested work does not fit the adapter or the host.
    TooLarge(String),
    /// A bad option value or combination.
    InvalidArgument(String),
    /// Reading or writing a file failed.
    Io {
        /// The file or folder.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An image could not be read or written.
    Image(crate::image_io::ImageIoError),
    /// A weights file could not be read, fetched or used.
    Weights(crate::weights::WeightsError),
    /// The loss or image became NaN/Inf.
    NonFinite {
        /// The step whose losses were not finite.
        step: u32,
        /// Where the last good image was written, if anywhere.
        saved: Option<String>,
    },
    /// The render was stopped (Ctrl-C / SIGTERM in the command line tool).
    Interrupted {
        /// Steps that ran.
        step: u32,
        /// Where the current image was written, if anywhere.
        saved: Option<String>,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(msg) => write!(f, "no GPU adapter found: {msg}"),
            Error::AdapterNotFound { wanted, available } => write!(
                f,
                "no adapter matches {wanted:?}; available: {}",
                if available.is_empty() { "none".to_string() } else { available.join("; ") }
            ),
            Error::Device(msg) => write!(f, "could not open the GPU device: {msg}"),
            Error::Gpu(msg) => write!(f, "GPU error: {msg}"),
            Error::TooLarge(msg) => write!(f, "{msg}"),
            Error::InvalidArgument(msg) => write!(f, "{msg}"),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Image(e) => write!(f, "{e}"),
            Error::Weights(e) => write!(f, "{e}"),
            Error::NonFinite { step, saved } => {
                write!(f, "the loss became NaN or infinite at step {step}")?;
                if let Some(p) = saved {
                    write!(f, "; the last good image was written to {p}")?;
                }
                Ok(())
            }
            Error::Interrupted { step, saved } => {
                write!(f, "interrupted at step {step}")?;
                if let Some(p) = saved {
                    write!(f, "; the current image was written to {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Image(e) => Some(e),
            Error::Weights(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::image_io::ImageIoError> for Error {
    fn from(e: crate::image_io::ImageIoError) -> Self {
        Error::Image(e)
    }
}

impl From<crate::weights::WeightsError> for Error {
    fn from(e: crate::weights::WeightsError) -> Self {
        Error::Weights(e)
    }
}
