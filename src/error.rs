//! One error type for the whole crate. Every error names where it happened (file, row/column,
//! section, step, tensor) and what was expected; the CLI turns it into a message and exit code.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum Error {
    /// An operating-system error on a file.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file whose content is wrong: `place` is a section, a row/column, a byte offset...
    Format {
        path: PathBuf,
        place: String,
        msg: String,
    },
    /// A bad flag, config value or combination of arguments.
    Usage(String),
    /// NaN/Inf or divergence during training.
    Numeric {
        step: u64,
        tensor: String,
        msg: String,
    },
    /// Device (CUDA / emulator) errors.
    Device(String),
    /// Shape mismatch between tensors or between a checkpoint and a store.
    Shape(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn format(
        path: impl AsRef<Path>,
        place: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            place: place.into(),
            msg: msg.into(),
        }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
    pub fn device(msg: impl Into<String>) -> Self {
        Error::Device(msg.into())
    }
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    /// Process exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Error::Format { path, place, msg } => {
                if place.is_empty() {
                    write!(f, "{}: {}", path.display(), msg)
                } else {
                    write!(f, "{}: {}: {}", path.display(), place, msg)
                }
            }
            Error::Usage(m) => write!(f, "{m}"),
            Error::Numeric { step, tensor, msg } => {
                write!(
                    f,
                    "training diverged at step {step}: tensor {tensor}: {msg}"
                )
            }
            Error::Device(m) => write!(f, "device error: {m}"),
            Error::Shape(m) => write!(f, "shape mismatch: {m}"),
        }
    }
}

impl std::error::Error for Error {}
