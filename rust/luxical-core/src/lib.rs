//! luxical-core: text → token ids → n-gram TF-IDF → sparse-to-dense ReLU network →
//! L2-normalised embedding. Pure Rust; the Python binding lives in `luxical-py`.

pub mod error;
pub mod fast_wordpiece;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod gemm;
pub mod hash_index;
pub mod heads;
pub mod mlp;
pub mod model;
pub mod ngrams;
pub mod options;
pub mod settings;
pub mod summary;
pub mod tfidf;
pub mod threads;
pub mod tokenize;
pub mod vocab;
pub mod weights;

pub use error::{Error, Result};
pub use model::{Csr, Featurizer, Model};
pub use options::RunOptions;

/// Hints the CPU to bring the cache line holding `item` into L1 (a no-op off x86-64).
/// Prefetching has no architectural effect, so any reference is fine.
#[inline]
pub(crate) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache; the pointer comes from a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            (item as *const T).cast::<i8>(),
            std::arch::x86_64::_MM_HINT_T0,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}
