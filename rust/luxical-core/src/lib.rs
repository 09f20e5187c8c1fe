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

/// Asks the kernel to back the whole 2 MiB pages inside `len` bytes at `ptr` with
/// transparent huge pages when they are first touched (`madvise(MADV_HUGEPAGE)`; Linux
/// only, a no-op elsewhere and for buffers under 4 MiB; errors are ignored: it is a hint).
///
/// Why: the n-gram table and the first layer are read at random, one 16-byte slot or one
/// row per n-gram. With 4 KiB pages almost every such read of a multi-million-entry model
/// also misses the TLB (its 2,048 entries cover 8 MiB), and the page walk costs about as
/// much as the cache miss itself. Call it on memory no one has written yet: pages already
/// touched stay 4 KiB until `khugepaged` gets to them, if ever.
pub(crate) fn advise_huge_pages(ptr: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    #[cfg(target_os = "linux")]
    if len >= 2 * HUGE {
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + len) / HUGE * HUGE;
        if start < end {
            // SAFETY: MADV_HUGEPAGE changes no contents and no permissions; the range lies
            // inside the caller's allocation and is page aligned.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len, HUGE);
}

/// `vec.reserve_exact(n)`'s fresh capacity advised for huge pages (see
/// [`advise_huge_pages`]) before anything is written to it.
pub(crate) fn advise_spare_capacity<T>(vec: &mut Vec<T>) {
    let spare = vec.spare_capacity_mut();
    advise_huge_pages(spare.as_ptr().cast::<u8>(), std::mem::size_of_val(spare));
}

/// Whether this kernel has transparent huge pages at all (else `MADV_HUGEPAGE` fails and
/// the tests of the advice have nothing to check).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn kernel_has_thp() -> bool {
    let has = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
    if !has {
        eprintln!("skipped: this kernel has no transparent huge pages (no /sys/kernel/mm/transparent_hugepage)");
    }
    has
}

/// The `VmFlags` of the mapping holding `addr` in this process (`/proc/self/smaps`): tests
/// check that the huge-page advice (`hg`) reached the kernel.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn vm_flags_at(addr: usize) -> Option<Vec<String>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().map(str::to_owned).collect());
            }
        }
    }
    None
}

/// A seeded xorshift64 generator for tests: each call gives a value below `n`.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}
