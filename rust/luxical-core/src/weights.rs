//! Weight storage that several processes can share: float32 buffers either owned or
//! memory-mapped from a weight-cache file.
//!
//! The `.npz` stores the first layer `[out, in]`, but the runtime needs it transposed
//! (`[vocab, dim0]`, one row per n-gram) and the dense layers packed into panels. Doing
//! that on every load costs seconds and a private copy per process, so the converted
//! layers are written once to `<cache dir>/<key>.lxw` and memory-mapped afterwards: N
//! worker processes on one host then share one copy in the page cache, and loading skips
//! the conversion. The key is derived from the CRC-32 and size of every layer member of the
//! archive (content, not path), so a changed model never meets a stale cache. Files are
//! written to a temporary name and renamed into place, carry a checksum that is verified
//! on open, and any cache problem falls back to private memory rather than failing the
//! load.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
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

/// Writes `sections` (each a float32 slice) to the cache file for `key`, atomically.
pub fn write_cache(dir: &Path, key: u64, sections: &[&[f32]]) -> std::io::Result<PathBuf> {
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
    let tmp = dir.join(format!(
        ".{key:016x}.{}.{:?}.partial",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| {
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
        // No fsync: a file damaged by a crash fails its checksum and is rebuilt.
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Maps the cache file for `key` and returns its sections, or `None` if it is missing,
/// for another key, truncated or corrupted.
pub fn open_cache(dir: &Path, key: u64, expected_lens: &[usize]) -> Option<Vec<SharedF32>> {
    if cfg!(target_endian = "big") {
        return None;
    }
    let file = File::open(cache_path(dir, key)).ok()?;
    // SAFETY: cache files are only ever created whole under a temporary name and renamed
    // into place, never modified in place, so the mapped bytes do not change under us.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
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
            || off % ALIGN != 0
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
        let path = write_cache(&dir, key, &[&a, &b]).unwrap();
        let s = open_cache(&dir, key, &[a.len(), b.len()]).unwrap();
        assert!(s[0].is_mapped());
        assert_eq!(&*s[0], &a[..]);
        assert_eq!(&*s[1], &b[..]);
        // Wrong key, wrong lengths, flipped payload byte, truncation: all refused.
        assert!(open_cache(&dir, key ^ 1, &[a.len(), b.len()]).is_none());
        assert!(open_cache(&dir, key, &[a.len(), b.len() + 1]).is_none());
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 200] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(open_cache(&dir, key, &[a.len(), b.len()]).is_none());
        bytes[HEADER + 200] ^= 1;
        std::fs::write(&path, &bytes[..bytes.len() - 64]).unwrap();
        assert!(open_cache(&dir, key, &[a.len(), b.len()]).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
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
