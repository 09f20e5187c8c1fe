//! How a batch runs: threads, the per-document token limit, cancellation.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::tokenize::DEFAULT_MAX_TOKENS;

/// Options of one batch call (embed, TF-IDF, tokenize, document frequencies).
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Threads (`None`: `LUXICAL_NUM_THREADS`, else `RAYON_NUM_THREADS`, else all cores).
    pub num_threads: Option<usize>,
    /// Each document is embedded from its first `max_tokens` tokens (`None`: all of them,
    /// with memory growing with the longest document).
    pub max_tokens: Option<usize>,
    /// Set from another thread to stop the batch early with `Error::Cancelled` (checked
    /// between documents / chunks of documents).
    pub cancel: Option<&'a AtomicBool>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            num_threads: None,
            max_tokens: Some(DEFAULT_MAX_TOKENS),
            cancel: None,
        }
    }
}

impl<'a> RunOptions<'a> {
    /// Defaults with `num_threads` threads.
    pub fn threads(num_threads: Option<usize>) -> Self {
        Self {
            num_threads,
            ..Self::default()
        }
    }

    /// `Err(Error::Cancelled)` once the cancel flag is set.
    #[inline]
    pub fn check_cancelled(&self) -> Result<()> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}
