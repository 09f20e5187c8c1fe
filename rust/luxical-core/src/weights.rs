//! Weight storage that several processes can share: float32 buffers either owned or
//! memory-mapped from a weight-cache file.
//!
//! The `.npz` stores the first layer `[out, in]`, but the runtime needs it transposed
//! (`[vocab, dim0]`, one row per n-gram) and the dense layers packed into panels. Doing
//! that on every load costs seconds and a private copy per process, so the converted
//! layers are written once to `<cache dir>/<key>.lxw` and memory-mapped afterwards: N
//! worker processes on one host then share one copy in the page cache, and loading skips
//! the conversion. The key is derived from the CRC-32 and size of every layer member of the
//! archive (content, not path), so a changed model never meets a stale cache. Any cache
//! problem falls back to private memory rather than failing the load.
//!
//! Several processes (Spark, Dask and Ray start their workers together) may load one model
//! into an empty cache at once. One entry has one writer: whoever misses takes an
//! exclusive `flock` on `<key>.lock` (blocking), looks again (another process may have
//! built the file meanwhile), and only then converts, writes `.<key>.<pid>.<n>.partial`,
//! makes it read-only and renames it into place. The others wait on the lock and map the
//! winner's file, so every process maps the same inode and no one replaces a file another
//! process maps. The kernel drops the lock of a process that dies, so a `.partial` whose
//! entry lock is free is stale (its writer is gone) and is removed by the next load; one
//! whose lock is held belongs to a live writer and is left alone.
//!
//! A cache file must never be modified in place: a process that maps it would die of
//! SIGBUS on a truncated page. Files are created read-only (0444); [`clear_cache`]
//! unlinks them (processes that map them keep their copy until they exit).
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Magic + layout version of a weight-cache file.
const MAGIC: &[u8; 8] = b"LUXWC001";
const HEADER: usize = 64;
const ALIGN: usize = 64;

enum Backing {
    Owned(Vec<f32>),
    Mapped(memmap2::Mmap),
}

/// A read-only float32 slice backed by owned memory or a shared mapping (cheap to clone).
#[derive(Clone)]
pub struct SharedF32 {
    backing: Arc<Backing>,
    /// In floats from the start of the backing.
    offset: usize,
    len: usize,
}

impl SharedF32 {
    pub fn owned(v: Vec<f32>) -> Self {
        let len = v.len();
        Self {
            backing: Arc::new(Backing::Owned(v)),
            offset: 0,
            len,
        }
    }

    /// Whether the data lives in a shared file mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(*self.backing, Backing::Mapped(_))
    }
}

impl Deref for SharedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match &*self.backing {
            Backing::Owned(v) => &v[self.offset..self.offset + self.len],
            Backing::Mapped(m) => {
                let bytes = &m[self.offset * 4..(self.offset + self.len) * 4];
                // SAFETY: the mapping is page aligned and sections start at multiples of 64
                // bytes, so the pointer is f32-aligned; the byte range is in bounds (checked
                // by `open`); any bit pattern is a valid f32; the file is little-endian and
                // the cache is only used on little-endian targets.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), self.len) }
            }
        }
    }
}

impl std::fmt::Debug for SharedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedF32({} floats, {})",
            self.len,
            if self.is_mapped() { "mapped" } else { "owned" }
        )
    }
}

/// A 64-bit key from the (crc32, size) of every layer member, in layer order.
pub fn cache_key(members: &[(u32, u64)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ MAGIC.iter().fold(0, |a, &b| a * 31 + u64::from(b));
    for &(crc, size) in members {
        for word in [u64::from(crc), size] {
            h ^= word;
            h = h.wrapping_mul(0x0100_0000_01b3).rotate_left(29);
        }
    }
    h
}

/// Checksum of the payload (fast, sequential; detects truncation and corruption); the
/// result does not depend on how the bytes are split between `update` calls.
struct Checksum {
    lanes: [u64; 4],
    pending: Vec<u8>,
    len: u64,
}

impl Checksum {
    fn new() -> Self {
        Self {
            lanes: [0; 4],
            pending: Vec::with_capacity(32),
            len: 0,
        }
    }

    fn block(&mut self, c: &[u8]) {
        for (j, lane) in self.lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(c[j * 8..j * 8 + 8].try_into().unwrap());
            *lane = (*lane ^ w)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(23);
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if !self.pending.is_empty() {
            let take = (32 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < 32 {
                return;
            }
            let block = std::mem::take(&mut self.pending);
            self.block(&block);
            self.pending = block;
            self.pending.clear();
        }
        let mut chunks = bytes.chunks_exact(32);
        for c in &mut chunks {
            self.block(c);
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    fn finish(&self) -> u64 {
        let mut h = self.len;
        for (j, &b) in self.pending.iter().enumerate() {
            h ^= u64::from(b) << ((j % 8) * 8);
        }
        for lane in self.lanes {
            h = (h ^ lane)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(31);
        }
        h
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut c = Checksum::new();
    c.update(bytes);
    c.finish()
}

/// Path of the cache file for `key` in `dir`.
pub fn cache_path(dir: &Path, key: u64) -> PathBuf {
    dir.join(format!("{key:016x}.lxw"))
}

/// Path of the lock file of the cache entry `key` (held while the entry is written).
fn lock_path(dir: &Path, key: u64) -> PathBuf {
    dir.join(format!("{key:016x}.lock"))
}

/// Name of a temporary file of entry `key`: `.<key>.<pid>.<n>.partial`.
fn partial_name(key: u64) -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    format!(".{key:016x}.{}.{n}.partial", std::process::id())
}

/// What a cache directory entry is, by name: `(key, kind)`; `None` for files not ours.
fn classify(name: &str) -> Option<(u64, EntryKind)> {
    let parse = |hex: &str| {
        (hex.len() == 16)
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
    };
    if let Some(hex) = name.strip_suffix(".lxw") {
        return Some((parse(hex)?, EntryKind::Cache));
    }
    if let Some(hex) = name.strip_suffix(".lock") {
        return Some((parse(hex)?, EntryKind::Lock));
    }
    let rest = name.strip_prefix('.')?.strip_suffix(".partial")?;
    Some((parse(rest.split('.').next()?)?, EntryKind::Partial))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Cache,
    Lock,
    Partial,
}

/// An exclusive lock on one cache entry (`flock` on its lock file): released on drop, and
/// by the kernel when the process dies.
pub struct EntryLock {
    _file: File,
}

/// `flock(LOCK_EX)` on `file`; `Ok(false)` if `wait` is false and another holds it.
#[cfg(unix)]
fn flock_exclusive(file: &File, wait: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a descriptor this function borrows for the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(err),
        }
    }
}

#[cfg(not(unix))]
fn flock_exclusive(_file: &File, _wait: bool) -> std::io::Result<bool> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "weight-cache locks need flock",
    ))
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_a: &std::fs::Metadata, _b: &std::fs::Metadata) -> bool {
    true
}

/// Locks cache entry `key` of `dir` (which must exist). `Ok(None)`: `wait` is false and
/// another process (or thread) holds it. `Err`: locks do not work here.
fn lock_entry(dir: &Path, key: u64, wait: bool) -> std::io::Result<Option<EntryLock>> {
    let path = lock_path(dir, key);
    loop {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            // A lock file created by another user: flock needs only a readable descriptor.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path)?,
            other => other?,
        };
        if !flock_exclusive(&file, wait)? {
            return Ok(None);
        }
        // `clear_cache` removes lock files while holding them: if ours was removed between
        // open and flock, we hold a lock no one else can see; take the current file's.
        match std::fs::metadata(&path) {
            Ok(now) if same_file(&now, &file.metadata()?) => {
                return Ok(Some(EntryLock { _file: file }))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
}

/// Names of the entries of `dir` that are ours, with their key and kind.
fn list_entries(dir: &Path) -> Vec<(String, u64, EntryKind)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let (key, kind) = classify(&name)?;
        Some((name, key, kind))
    })
    .collect()
}

/// Removes the temporary files of writers that died (their entry's lock is free); those of
/// live writers (lock held) stay. Best effort: errors are ignored.
pub fn remove_stale_partials(dir: &Path) {
    for (name, key, kind) in list_entries(dir) {
        if kind != EntryKind::Partial {
            continue;
        }
        // Only the holder of the entry's lock creates, renames or removes its partials, so
        // with the lock in hand this one is no live writer's.
        if let Ok(Some(_lock)) = lock_entry(dir, key, false) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
}

/// Removes every weight-cache file of `dir` (and the lock and stale temporary files),
/// returning how many cache files were removed. Files are unlinked, never truncated: a
/// process that maps one keeps its copy until it exits, and the next load rebuilds it. An
/// entry being written by another process is removed once that write has finished. A
/// missing directory holds nothing; files that are not the cache's are left alone.
pub fn clear_cache(dir: &Path) -> std::io::Result<usize> {
    let entries = list_entries(dir);
    let mut keys: Vec<u64> = entries.iter().map(|&(_, key, _)| key).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut removed = 0;
    for key in keys {
        let lock = lock_entry(dir, key, true)?;
        match std::fs::remove_file(cache_path(dir, key)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for (name, k, kind) in &entries {
            if *k == key && *kind == EntryKind::Partial {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        // Removed while held: a process waiting on this file's lock sees it is gone and
        // takes a new one (see `lock_entry`).
        let _ = std::fs::remove_file(lock_path(dir, key));
        drop(lock);
    }
    Ok(removed)
}

/// A cache miss: the right to build entry `key` (with its lock held, when locks work here).
pub struct Claim {
    dir: PathBuf,
    key: u64,
    lock: Option<EntryLock>,
}

/// Maps the cache file for `key`, or, if there is none (or it is damaged), returns the
/// claim to build it. The claim holds the entry's lock: processes loading the same model
/// at once wait here for the first one's file instead of converting it again.
pub fn open_or_claim(
    dir: &Path,
    key: u64,
    expected_lens: &[usize],
) -> Result<Vec<SharedF32>, Claim> {
    remove_stale_partials(dir);
    if let Some(sections) = open_cache(dir, key, expected_lens) {
        return Ok(sections);
    }
    let lock = std::fs::create_dir_all(dir)
        .and_then(|()| lock_entry(dir, key, true))
        .ok()
        .flatten();
    if lock.is_some() {
        if let Some(sections) = open_cache(dir, key, expected_lens) {
            return Ok(sections);
        }
    }
    Err(Claim {
        dir: dir.to_path_buf(),
        key,
        lock,
    })
}

impl Claim {
    /// Writes `sections` (each a float32 slice) as the entry's cache file.
    pub fn write(&self, sections: &[&[f32]]) -> std::io::Result<PathBuf> {
        write_cache(&self.dir, self.key, sections, self.lock.is_some())
    }

    /// Maps the entry's cache file (see [`open_cache`]).
    pub fn open(&self, expected_lens: &[usize]) -> Option<Vec<SharedF32>> {
        open_cache(&self.dir, self.key, expected_lens)
    }
}

/// Writes `sections` (each a float32 slice) to the cache file for `key`, atomically and
/// read-only. `locked`: the caller holds the entry's lock, so the file may replace a
/// damaged one; without the lock an existing file is never replaced (another process may
/// map it).
fn write_cache(
    dir: &Path,
    key: u64,
    sections: &[&[f32]],
    locked: bool,
) -> std::io::Result<PathBuf> {
    if cfg!(target_endian = "big") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "weight cache files are little-endian",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let path = cache_path(dir, key);
    let table = 16 * sections.len();
    let mut offsets = Vec::with_capacity(sections.len());
    let mut pos = (HEADER + table).next_multiple_of(ALIGN);
    for s in sections {
        offsets.push(pos);
        pos = (pos + s.len() * 4).next_multiple_of(ALIGN);
    }
    let total = pos;
    let first = offsets.first().copied().unwrap_or(total);
    let mut table_bytes = Vec::with_capacity(first - HEADER);
    for (s, &off) in sections.iter().zip(&offsets) {
        table_bytes.extend_from_slice(&(off as u64).to_le_bytes());
        table_bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
    }
    table_bytes.resize(first - HEADER, 0);
    let tmp = dir.join(partial_name(key));
    let result = (|| {
        // The name holds our pid and a per-process serial: a file already there was left by
        // a dead process that had our pid, and is overwritten.
        let mut file = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, &mut file);
        // Header last (it holds the checksum of what follows).
        w.write_all(&[0u8; HEADER])?;
        let mut sum = Checksum::new();
        sum.update(&table_bytes);
        w.write_all(&table_bytes)?;
        for s in sections {
            // SAFETY: any f32 slice is readable as bytes; the file is little-endian and
            // this function refuses big-endian targets above.
            let bytes = unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len() * 4) };
            let padding = [0u8; ALIGN];
            let pad = &padding[..bytes.len().next_multiple_of(ALIGN) - bytes.len()];
            for piece in bytes.chunks(1 << 20).chain(std::iter::once(pad)) {
                sum.update(piece);
                w.write_all(piece)?;
            }
        }
        w.flush()?;
        drop(w);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&key.to_le_bytes());
        header.extend_from_slice(&(sections.len() as u64).to_le_bytes());
        header.extend_from_slice(&(total as u64).to_le_bytes());
        header.extend_from_slice(&sum.finish().to_le_bytes());
        header.resize(HEADER, 0);
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        // Read-only: mapped files must never be written in place (SIGBUS in every process
        // that maps them). Our descriptor stays writable; nothing writes it after this.
        let mut perms = file.metadata()?.permissions();
        perms.set_readonly(true);
        file.set_permissions(perms)?;
        // A file damaged by a crash fails its checksum and is rebuilt, so the data is
        // synced for another reason: written pages sit in the page cache in 4 KiB folios,
        // and every process would map them so. Once they are on disk and dropped from the
        // cache, the first mapping (advised for huge pages, see `open_cache`) reads the
        // file back in 2 MiB folios and every process maps those: +10-16% on long
        // documents of a 2M-n-gram model (one TLB entry per 2 MiB of rows).
        #[cfg(target_os = "linux")]
        drop_from_page_cache(&file);
        if locked {
            std::fs::rename(&tmp, &path)
        } else {
            // No lock (the file system refuses flock): publish only if no file is there,
            // so that no process's mapping is ever replaced; a loser maps the winner's.
            match std::fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => std::fs::remove_file(&tmp),
            }
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Writes `file`'s data to disk and asks the kernel to drop it from the page cache (best
/// effort: errors are ignored, the file is complete either way).
#[cfg(target_os = "linux")]
fn drop_from_page_cache(file: &File) {
    use std::os::fd::AsRawFd;
    if file.sync_data().is_ok() {
        // SAFETY: a valid descriptor; POSIX_FADV_DONTNEED only drops clean cached pages.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

/// Maps the cache file for `key` and returns its sections, or `None` if it is missing,
/// for another key, truncated or corrupted.
pub fn open_cache(dir: &Path, key: u64, expected_lens: &[usize]) -> Option<Vec<SharedF32>> {
    if cfg!(target_endian = "big") {
        return None;
    }
    let file = File::open(cache_path(dir, key)).ok()?;
    // SAFETY: cache files are only ever created whole under a temporary name and renamed
    // into place, read-only, never modified in place (by us; see the module docs), so the
    // mapped bytes do not change under us.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    // Before the checksum touches every page: the first layer is read one random row per
    // n-gram, and with 4 KiB pages nearly every row costs a TLB miss too. The kernel maps
    // file pages in 2 MiB units only where its page cache holds them in 2 MiB folios, which
    // it builds when it reads the file from disk for this mapping (see `write_cache`).
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    let u64_at = |pos: usize| u64::from_le_bytes(map[pos..pos + 8].try_into().unwrap());
    if map.len() < HEADER || &map[..8] != MAGIC || u64_at(8) != key {
        return None;
    }
    let n = expected_lens.len();
    if u64_at(16) != n as u64 || u64_at(24) != map.len() as u64 || map.len() < HEADER + 16 * n {
        return None;
    }
    if checksum(&map[HEADER..]) != u64_at(32) {
        return None;
    }
    let mut spans = Vec::with_capacity(n);
    for (i, &len) in expected_lens.iter().enumerate() {
        let off = u64_at(HEADER + 16 * i) as usize;
        if u64_at(HEADER + 16 * i + 8) != len as u64
            || !off.is_multiple_of(ALIGN)
            || off.checked_add(len * 4)? > map.len()
        {
            return None;
        }
        spans.push((off / 4, len));
    }
    let backing = Arc::new(Backing::Mapped(map));
    Some(
        spans
            .into_iter()
            .map(|(offset, len)| SharedF32 {
                backing: Arc::clone(&backing),
                offset,
                len,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_detected() {
        let dir = std::env::temp_dir().join(format!("luxical-wc-{}", std::process::id()));
        let a: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = vec![-1.0, 2.5, f32::MIN_POSITIVE];
        let key = cache_key(&[(7, 100), (9, 12)]);
        let path = write_cache(&dir, key, &[&a, &b], true).unwrap();
        let s = open_cache(&dir, key, &[a.len(), b.len()]).unwrap();
        assert!(s[0].is_mapped());
        assert_eq!(&*s[0], &a[..]);
        assert_eq!(&*s[1], &b[..]);
        // Wrong key, wrong lengths, flipped payload byte, truncation: all refused.
        assert!(open_cache(&dir, key ^ 1, &[a.len(), b.len()]).is_none());
        assert!(open_cache(&dir, key, &[a.len(), b.len() + 1]).is_none());
        drop(s);
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
        let mut bytes = std::fs::read(&path).unwrap();
        // (Replaced, not written in place: the file is read-only.)
        let damage = |bytes: &[u8]| {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, bytes).unwrap();
        };
        bytes[HEADER + 200] ^= 1;
        damage(&bytes);
        assert!(open_cache(&dir, key, &[a.len(), b.len()]).is_none());
        bytes[HEADER + 200] ^= 1;
        damage(&bytes[..bytes.len() - 64]);
        assert!(open_cache(&dir, key, &[a.len(), b.len()]).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cache_files_leave_the_page_cache_and_map_advised_for_huge_pages() {
        let dir = scratch_dir("huge");
        let a: Vec<f32> = (0..(8 << 20) / 4).map(|i| i as f32).collect(); // 8 MiB
        let key = cache_key(&[(1, 2)]);
        let path = write_cache(&dir, key, &[&a], true).unwrap();
        // Written pages were dropped from the page cache (so that the first mapping reads
        // them back in 2 MiB folios): few of them are resident now.
        let file = File::open(&path).unwrap();
        let probe = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let pages = probe.len().div_ceil(4096);
        let mut resident = vec![0u8; pages];
        // SAFETY: a live mapping of `probe.len()` bytes and one status byte per page.
        let rc = unsafe {
            libc::mincore(
                probe.as_ptr() as *mut libc::c_void,
                probe.len(),
                resident.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        let cached = resident.iter().filter(|&&r| r & 1 == 1).count();
        // (tmpfs keeps files in the page cache: there is no disk to drop them to.)
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and a buffer of the right type.
        let on_tmpfs = unsafe { libc::statfs(c_dir.as_ptr(), fs.as_mut_ptr()) } == 0
            && unsafe { fs.assume_init() }.f_type == 0x0102_1994; // TMPFS_MAGIC
        if on_tmpfs {
            eprintln!(
                "not checked: {} is on tmpfs, whose files stay in memory",
                dir.display()
            );
        } else {
            assert!(
                cached * 4 < pages,
                "{cached} of {pages} pages still cached after writing"
            );
        }
        drop(probe);
        let s = open_cache(&dir, key, &[a.len()]).unwrap();
        assert_eq!(&*s[0], &a[..]);
        let middle = s[0].as_ptr() as usize + a.len() * 2;
        let flags = crate::vm_flags_at(middle).expect("the entry is mapped");
        if crate::kernel_has_thp() {
            assert!(
                flags.iter().any(|f| f == "hg"),
                "no MADV_HUGEPAGE: {flags:?}"
            );
        }
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("luxical-wc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)] // flock
    #[test]
    fn a_claim_excludes_other_loaders_until_its_file_is_written() {
        let dir = scratch_dir("claim");
        let a: Vec<f32> = (0..4096).map(|i| i as f32).collect();
        let (key, lens) = (cache_key(&[(1, 1)]), [a.len()]);
        let Err(claim) = open_or_claim(&dir, key, &lens) else {
            panic!("empty cache")
        };
        assert!(claim.lock.is_some());
        // Another loader (its own lock file descriptor) waits for the claim...
        let waiter = std::thread::spawn({
            let dir = dir.clone();
            move || open_or_claim(&dir, key, &lens).map(|s| s[0].to_vec())
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished());
        claim.write(&[&a]).unwrap();
        let mine = claim.open(&lens).unwrap();
        drop(claim);
        // ...and then maps the claimant's file instead of building its own.
        let theirs = waiter.join().unwrap().unwrap_or_else(|_| panic!("no file"));
        assert_eq!(theirs, &*mine[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)] // flock
    #[test]
    fn stale_partials_are_removed_and_live_ones_kept() {
        let dir = scratch_dir("partials");
        let (live, dead) = (0x11u64, 0x22u64);
        let live_partial = dir.join(partial_name(live));
        let dead_partial = dir.join(format!(".{dead:016x}.999999.0.partial"));
        let not_ours = dir.join(".notes.partial");
        for p in [&live_partial, &dead_partial, &not_ours] {
            std::fs::write(p, b"x").unwrap();
        }
        let held = lock_entry(&dir, live, true).unwrap().unwrap();
        remove_stale_partials(&dir);
        assert!(live_partial.exists() && !dead_partial.exists() && not_ours.exists());
        drop(held);
        remove_stale_partials(&dir);
        assert!(!live_partial.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)] // flock
    #[test]
    fn clear_unlinks_cache_files_and_leaves_other_files() {
        let dir = scratch_dir("clear");
        let a = vec![1.0f32; 100];
        for key in [1u64, 2] {
            let Err(claim) = open_or_claim(&dir, key, &[a.len()]) else {
                panic!("empty cache")
            };
            claim.write(&[&a]).unwrap();
        }
        let mapped = open_cache(&dir, 1, &[a.len()]).unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        assert_eq!(clear_cache(&dir).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
        assert_eq!(&*mapped[0], &a[..]); // unlinked, not truncated: the mapping stays valid
        assert_eq!(clear_cache(&dir.join("missing")).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)] // flock
    #[test]
    fn without_a_lock_an_existing_file_is_never_replaced() {
        use std::os::unix::fs::MetadataExt;
        let dir = scratch_dir("nolock");
        let (a, b) = (vec![1.0f32; 64], vec![2.0f32; 64]);
        let path = write_cache(&dir, 5, &[&a], false).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        // A second writer that could not lock (flock unsupported) loses to the first file.
        write_cache(&dir, 5, &[&b], false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(&*open_cache(&dir, 5, &[64]).unwrap()[0], &a[..]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1); // no temporary file left
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entry_names_are_classified() {
        assert_eq!(
            classify("00000000000000ff.lxw"),
            Some((255, EntryKind::Cache))
        );
        assert_eq!(
            classify("00000000000000ff.lock"),
            Some((255, EntryKind::Lock))
        );
        assert_eq!(
            classify(&partial_name(255)),
            Some((255, EntryKind::Partial))
        );
        assert_eq!(classify("ff.lxw"), None);
        assert_eq!(classify(".notes.partial"), None);
        assert_eq!(classify("notes.txt"), None);
    }

    #[test]
    fn checksum_ignores_how_bytes_are_split() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = checksum(&bytes);
        for split in [1, 5, 31, 32, 33, 500, 999] {
            let mut c = Checksum::new();
            c.update(&bytes[..split]);
            c.update(&bytes[split..]);
            assert_eq!(c.finish(), whole, "split at {split}");
        }
        let mut other = bytes.clone();
        other[500] ^= 4;
        assert_ne!(checksum(&other), whole);
        assert_ne!(checksum(&bytes[..999]), whole);
    }

    #[test]
    fn key_depends_on_every_member() {
        let k = cache_key(&[(1, 2), (3, 4)]);
        assert_ne!(k, cache_key(&[(1, 2), (3, 5)]));
        assert_ne!(k, cache_key(&[(3, 4), (1, 2)]));
        assert_ne!(k, cache_key(&[(1, 2)]));
    }
}
