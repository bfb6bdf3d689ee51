//! The one error type a user sees: each message says what went wrong and what to do.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// No GPU adapter at all (no driver installed).
    NoAdapter(String),
    /// The user's --adapter choice matched nothing.
    AdapterNotFound {
        wanted: String,
        available: Vec<String>,
    },
    /// request_device failed.
    Device(String),
    /// A GPU error caught by an error scope (validation, out of memory) or device loss.
    Gpu(String),
    /// The requested work does not fit the adapter.
    TooLarge(String),
    /// Bad command-line value or combination.
    InvalidArgument(String),
    Io {
        path: String,
        source: std::io::Error,
    },
    Image(String),
    Weights(String),
    /// The loss or image became NaN/Inf.
    NonFinite {
        step: u32,
        saved: Option<String>,
    },
    /// Ctrl-C / SIGTERM during a render.
    Interrupted {
        step: u32,
        saved: Option<String>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(msg) => write!(f, "no GPU adapter found: {msg}"),
            Error::AdapterNotFound { wanted, available } => write!(
                f,
                "no adapter matches --adapter {wanted:?}; available: {} (see `stylize devices`)",
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
                write!(f, "the loss became NaN or infinite at step {step} (try a smaller --lr)")?;
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

impl std::error::Error for Error {}

impl From<crate::image_io::ImageIoError> for Error {
    fn from(e: crate::image_io::ImageIoError) -> Self {
        Error::Image(e.to_string())
    }
}

impl From<crate::weights::WeightsError> for Error {
    fn from(e: crate::weights::WeightsError) -> Self {
        Error::Weights(e.to_string())
    }
}
