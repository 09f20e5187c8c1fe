//! The one place rayon pools are built.
//!
//! Pools are built lazily on first use (never at import) and cached by size, but only a
//! few of them ([`MAX_POOLS`], least recently used dropped first) and none larger than
//! [`max_threads`]: a caller cycling through thread counts, or asking for thousands,
//! cannot leave thousands of OS threads behind. A dropped pool's threads exit once the
//! calls still using it finish.
//!
//! After `fork()` the child has none of the parent's worker threads, so pools built by
//! another process id are abandoned (leaked, never touched) and rebuilt.

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

use crate::error::{Error, Result};
use crate::settings;

/// Environment variables consulted, in order, when the caller gives no thread count.
/// Each follows rayon's convention: a positive integer is a thread count; unset, `0`,
/// empty or not an integer means "not set" (the next one, else all cores).
pub const THREAD_ENV_VARS: [&str; 2] = ["LUXICAL_NUM_THREADS", "RAYON_NUM_THREADS"];

/// Pools kept alive at once (least recently used dropped first).
pub const MAX_POOLS: usize = 4;

/// Threads per available core a pool may have: embedding is CPU-bound, so more threads
/// than cores only cost memory and scheduling (a little oversubscription is allowed for
/// cores hidden by cgroup quotas).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The cap never goes below this many threads, so that small machines can still test
/// multi-threaded runs.
pub const MIN_MAX_THREADS: usize = 8;

struct Pools {
    pid: u32,
    /// Most recently used last.
    by_size: Vec<(usize, Arc<ThreadPool>)>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The largest pool luxical builds: [`MAX_THREADS_PER_CORE`] × the available cores, at
/// least [`MIN_MAX_THREADS`].
pub fn max_threads() -> usize {
    (MAX_THREADS_PER_CORE * available_cores()).max(MIN_MAX_THREADS)
}

/// The number of threads a call will use: `requested`, else the first of
/// `THREAD_ENV_VARS` that is set to a positive integer, else the number of available
/// cores; capped at [`max_threads`], with a warning (see [`settings::take_warnings`])
/// when the cap applies.
pub fn resolve_num_threads(requested: Option<usize>) -> Result<usize> {
    let (n, source) = match requested {
        Some(0) => {
            return Err(Error::InvalidArgument(
                "num_threads must be >= 1 (or None for the default)".into(),
            ))
        }
        Some(n) => (n, "num_threads".to_string()),
        None => match THREAD_ENV_VARS
            .iter()
            .find_map(|var| settings::env_thread_count(var).map(|n| (n, var)))
        {
            Some((n, var)) => (n, format!("environment variable {var}")),
            None => (available_cores(), "the number of cores".to_string()),
        },
    };
    let cap = max_threads();
    if n > cap {
        settings::warn(format!(
            "{source}={n} is more threads than luxical uses ({cap}: {MAX_THREADS_PER_CORE} \
             per available core, {} cores); using {cap}",
            available_cores()
        ));
        return Ok(cap);
    }
    Ok(n)
}

/// A pool of `resolve_num_threads(requested)` threads, built on first use.
pub fn pool(requested: Option<usize>) -> Result<Arc<ThreadPool>> {
    let n = resolve_num_threads(requested)?;
    let pid = std::process::id();
    let mut guard = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.as_ref().is_some_and(|p| p.pid != pid) {
        // Forked child: the parent's worker threads do not exist here. Dropping the pools
        // would try to signal them, so leak them.
        if let Some(stale) = guard.take() {
            std::mem::forget(stale);
        }
    }
    let pools = guard.get_or_insert_with(|| Pools {
        pid,
        by_size: Vec::new(),
    });
    if let Some(i) = pools.by_size.iter().position(|(size, _)| *size == n) {
        let entry = pools.by_size.remove(i);
        let found = Arc::clone(&entry.1);
        pools.by_size.push(entry);
        return Ok(found);
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
    if pools.by_size.len() >= MAX_POOLS {
        // Dropped here, or by the last call still running on it.
        pools.by_size.remove(0);
    }
    pools.by_size.push((n, Arc::clone(&built)));
    Ok(built)
}

/// Sizes of the pools currently kept, least recently used first (for tests).
#[doc(hidden)]
pub fn pool_sizes() -> Vec<usize> {
    let guard = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    guard
        .as_ref()
        .map(|p| p.by_size.iter().map(|(n, _)| *n).collect())
        .unwrap_or_default()
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
    fn counts_are_capped_with_a_warning() {
        let cap = max_threads();
        assert!(cap >= MIN_MAX_THREADS);
        assert_eq!(resolve_num_threads(Some(cap)).unwrap(), cap);
        assert_eq!(resolve_num_threads(Some(5000)).unwrap(), cap);
        assert!(settings::take_warnings()
            .iter()
            .any(|w| w.contains("num_threads=5000")));
    }

    #[test]
    fn pools_are_cached_per_size_and_few_are_kept() {
        let a = pool(Some(2)).unwrap();
        let b = pool(Some(2)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 2);
        assert_eq!(pool(Some(1)).unwrap().current_num_threads(), 1);
        // Other tests build pools concurrently: only the bound is checked here.
        for n in 1..=max_threads() + 3 {
            let _ = pool(Some(n)).unwrap();
            assert!(pool_sizes().len() <= MAX_POOLS);
        }
        assert!(pool_sizes().iter().all(|&n| n <= max_threads()));
        assert_eq!(
            pool(Some(10_000)).unwrap().current_num_threads(),
            max_threads()
        );
    }
}
