//! luxical-core: text → token ids → n-gram TF-IDF → sparse-to-dense ReLU network →
//! L2-normalised embedding. Pure Rust; the Python binding lives in `luxical-py`.

pub mod error;
pub mod fast_wordpiece;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod gemm;
pub mod hash_index;
pub mod mlp;
pub mod model;
pub mod ngrams;
pub mod options;
pub mod summary;
pub mod tfidf;
pub mod threads;
pub mod tokenize;
pub mod vocab;
pub mod weights;

pub use error::{Error, Result};
pub use model::{Csr, Featurizer, Model};
pub use options::RunOptions;
