//! The one error type of the core. Every fallible function returns `Result<T, Error>`;
//! the binding maps each variant to a Python exception class.

use std::path::PathBuf;

/// Everything that can go wrong in luxical-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The model file is not a readable `.npz` (zip) archive, or an entry is damaged.
    #[error("model file is not a valid .npz archive: {0}")]
    Archive(String),

    /// A required array is absent from the model file.
    #[error("model file has no array '{0}'; is it a Luxical model saved by luxical >= 1.0?")]
    MissingArray(String),

    /// An array has a dtype we cannot read (object arrays are refused: we never unpickle).
    #[error("array '{array}' has dtype '{found}', expected {expected}")]
    UnsupportedDtype {
        array: String,
        found: String,
        expected: &'static str,
    },

    /// The `.npy` header of an array is malformed or its data is truncated.
    #[error("array '{array}' is malformed: {reason}")]
    MalformedArray { array: String, reason: String },

    /// An array has the wrong shape, or arrays disagree with each other.
    #[error("array '{array}' has shape {found:?}, expected {expected}")]
    ShapeMismatch {
        array: String,
        expected: String,
        found: Vec<usize>,
    },

    /// The file declares a format version this build cannot read.
    #[error(
        "model format version {found} is not supported (this luxical reads version {supported}); \
         upgrade luxical or re-save the model with a matching version"
    )]
    UnsupportedFormatVersion { found: i64, supported: i64 },

    /// Arrays are individually well formed but inconsistent with each other.
    #[error("inconsistent model: {0}")]
    InconsistentModel(String),

    /// The tokenizer JSON could not be parsed or built.
    #[error("cannot build the tokenizer from the model's tokenizer.json: {0}")]
    TokenizerLoad(String),

    /// The tokenizer failed on one document.
    #[error("tokenizer failed on texts[{index}]: {message}")]
    Tokenize { index: usize, message: String },

    /// A caller-supplied argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),

    /// The caller cancelled the batch (e.g. Ctrl-C in Python).
    #[error("cancelled")]
    Cancelled,

    /// Building a thread pool failed.
    #[error("cannot build a thread pool of {threads} threads: {message}")]
    ThreadPool { threads: usize, message: String },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
