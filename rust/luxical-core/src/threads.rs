//! The one place rayon pools are built.
//!
//! Pools are built lazily on first use (never at import), one per requested size, and
//! cached. After `fork()` the child has none of the parent's worker threads, so a pool
//! built by another process id is abandoned (leaked, never touched) and rebuilt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// Environment variables consulted, in order, when the caller gives no thread count.
pub const THREAD_ENV_VARS: [&str; 2] = ["LUXICAL_NUM_THREADS", "RAYON_NUM_THREADS"];

struct Pools {
    pid: u32,
    by_size: HashMap<usize, Arc<ThreadPool>>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

/// The number of threads a call will use: `requested`, else the first valid positive
/// integer among `THREAD_ENV_VARS`, else the number of available cores.
pub fn resolve_num_threads(requested: Option<usize>) -> Result<usize> {
    if let Some(n) = requested {
        if n == 0 {
            return Err(Error::InvalidArgument(
                "num_threads must be >= 1 (or None for the default)".into(),
            ));
        }
        return Ok(n);
    }
    for var in THREAD_ENV_VARS {
        if let Ok(text) = std::env::var(var) {
            match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => return Ok(n),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "environment variable {var}={text:?} is not a positive integer"
                    )))
                }
            }
        }
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A pool of `resolve_num_threads(requested)` threads, built on first use.
pub fn pool(requested: Option<usize>) -> Result<Arc<ThreadPool>> {
    let n = resolve_num_threads(requested)?;
    let pid = std::process::id();
    let mut guard = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.as_ref().is_some_and(|p| p.pid != pid) {
        // Forked child: the parent's worker threads do not exist here. Dropping the pool
        // would try to signal them, so leak it.
        if let Some(stale) = guard.take() {
            std::mem::forget(stale);
        }
    }
    let pools = guard.get_or_insert_with(|| Pools {
        pid,
        by_size: HashMap::new(),
    });
    if let Some(p) = pools.by_size.get(&n) {
        return Ok(Arc::clone(p));
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("luxical-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool {
            threads: n,
            message: e.to_string(),
        })?;
    let built = Arc::new(built);
    pools.by_size.insert(n, Arc::clone(&built));
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_count_wins_and_zero_is_rejected() {
        assert_eq!(resolve_num_threads(Some(3)).unwrap(), 3);
        assert!(resolve_num_threads(Some(0)).is_err());
    }

    #[test]
    fn pools_are_cached_per_size() {
        let a = pool(Some(2)).unwrap();
        let b = pool(Some(2)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 2);
        assert_eq!(pool(Some(1)).unwrap().current_num_threads(), 1);
    }
}
