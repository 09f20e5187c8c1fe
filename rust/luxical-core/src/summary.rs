//! Approximate n-gram counting in bounded memory: the Space-Saving algorithm (Metwally,
//! Agrawal, El Abbadi 2005), with mergeable summaries (Agarwal et al. 2012) so that shards
//! counted in parallel, or on different machines, combine into one summary.
//!
//! Guarantee (per summary of capacity k over a stream of N n-grams): every n-gram whose
//! true count exceeds N/k is in the summary, and for each tracked n-gram
//! `count - error <= true count <= count`, with `error <= N/k`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::ngrams::PAD_TOKEN;

/// Longest n-gram a summary can hold.
pub const MAX_NGRAM_LEN: usize = 8;

/// An n-gram as a fixed-size key, padded with `PAD_TOKEN`.
pub type NgramKey = [u32; MAX_NGRAM_LEN];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    count: u64,
    error: u64,
}

/// A Space-Saving summary of 1..=max_ngram_len-grams.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    max_ngram_len: usize,
    counters: FxHashMap<NgramKey, Counter>,
    /// Lazy min-heap of (count at push time, key); stale entries are re-pushed on pop.
    heap: BinaryHeap<Reverse<(u64, NgramKey)>>,
    total: u64,
}

impl SpaceSaving {
    pub fn new(capacity: usize, max_ngram_len: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidArgument(
                "summary capacity must be >= 1".into(),
            ));
        }
        if !(1..=MAX_NGRAM_LEN).contains(&max_ngram_len) {
            return Err(Error::InvalidArgument(format!(
                "max_ngram_len must be between 1 and {MAX_NGRAM_LEN}, got {max_ngram_len}"
            )));
        }
        Ok(Self {
            capacity,
            max_ngram_len,
            counters: FxHashMap::default(),
            heap: BinaryHeap::new(),
            total: 0,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn max_ngram_len(&self) -> usize {
        self.max_ngram_len
    }

    /// Number of n-gram occurrences seen.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The bound on every tracked count's overestimate: the smallest tracked count when
    /// the summary is full (0 while it still has room).
    pub fn error_bound(&self) -> u64 {
        if self.counters.len() < self.capacity {
            0
        } else {
            self.counters.values().map(|c| c.count).min().unwrap_or(0)
        }
    }

    /// Adds every 1..=max_ngram_len-gram of one document.
    pub fn add_document(&mut self, tokens: &[u32]) {
        for len in 1..=self.max_ngram_len.min(tokens.len()) {
            for window in tokens.windows(len) {
                let mut key = [PAD_TOKEN; MAX_NGRAM_LEN];
                key[..len].copy_from_slice(window);
                self.offer(key, 1);
            }
        }
    }

    /// Space-Saving update with weight `w`.
    fn offer(&mut self, key: NgramKey, w: u64) {
        self.total += w;
        if let Some(c) = self.counters.get_mut(&key) {
            c.count += w;
            return;
        }
        if self.counters.len() < self.capacity {
            self.counters.insert(key, Counter { count: w, error: 0 });
            self.heap.push(Reverse((w, key)));
            return;
        }
        // Evict the minimum: pop until the heap's top is current.
        let (min_key, min_count) = loop {
            let Reverse((count, k)) = self.heap.pop().expect("full summary has heap entries");
            match self.counters.get(&k) {
                Some(c) if c.count == count => break (k, count),
                Some(c) => self.heap.push(Reverse((c.count, k))),
                None => {}
            }
        };
        self.counters.remove(&min_key);
        let counter = Counter {
            count: min_count + w,
            error: min_count,
        };
        self.counters.insert(key, counter);
        self.heap.push(Reverse((counter.count, key)));
        // Keep the lazy heap from growing without bound.
        if self.heap.len() > 4 * self.capacity + 1024 {
            self.rebuild_heap();
        }
    }

    fn rebuild_heap(&mut self) {
        self.heap = self
            .counters
            .iter()
            .map(|(k, c)| Reverse((c.count, *k)))
            .collect();
    }

    /// Merges `other` into `self` (mergeable summaries): an n-gram missing from one side
    /// is credited with that side's error bound, so the merged counts stay upper bounds,
    /// then the `capacity` largest are kept.
    pub fn merge(&mut self, other: &SpaceSaving) -> Result<()> {
        if other.max_ngram_len != self.max_ngram_len {
            return Err(Error::InvalidArgument(format!(
                "cannot merge summaries of max_ngram_len {} and {}",
                self.max_ngram_len, other.max_ngram_len
            )));
        }
        let (m_self, m_other) = (self.error_bound(), other.error_bound());
        let mut merged: FxHashMap<NgramKey, Counter> = FxHashMap::default();
        for (k, c) in &self.counters {
            let o = other.counters.get(k).copied().unwrap_or(Counter {
                count: m_other,
                error: m_other,
            });
            merged.insert(
                *k,
                Counter {
                    count: c.count + o.count,
                    error: c.error + o.error,
                },
            );
        }
        for (k, c) in &other.counters {
            merged.entry(*k).or_insert(Counter {
                count: c.count + m_self,
                error: c.error + m_self,
            });
        }
        let mut entries: Vec<(NgramKey, Counter)> = merged.into_iter().collect();
        if entries.len() > self.capacity {
            entries.select_nth_unstable_by(self.capacity - 1, |a, b| {
                b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0))
            });
            entries.truncate(self.capacity);
        }
        self.counters = entries.into_iter().collect();
        self.total += other.total;
        self.rebuild_heap();
        Ok(())
    }

    /// Tracked n-grams as (unpadded tokens, count, error), by count descending then tokens.
    pub fn items(&self) -> Vec<(Vec<u32>, u64, u64)> {
        let mut items: Vec<_> = self
            .counters
            .iter()
            .map(|(k, c)| (unpad(k, self.max_ngram_len), c.count, c.error))
            .collect();
        items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        items
    }

    /// Builds a summary from raw parts (deserialisation).
    pub fn from_items(
        capacity: usize,
        max_ngram_len: usize,
        total: u64,
        items: impl IntoIterator<Item = (Vec<u32>, u64, u64)>,
    ) -> Result<Self> {
        let mut s = Self::new(capacity, max_ngram_len)?;
        for (tokens, count, error) in items {
            if tokens.is_empty() || tokens.len() > max_ngram_len || error > count {
                return Err(Error::InvalidArgument(format!(
                    "bad summary item: {} tokens, count {count}, error {error}",
                    tokens.len()
                )));
            }
            let mut key = [PAD_TOKEN; MAX_NGRAM_LEN];
            key[..tokens.len()].copy_from_slice(&tokens);
            s.counters.insert(key, Counter { count, error });
        }
        if s.counters.len() > capacity {
            return Err(Error::InvalidArgument(
                "more summary items than its capacity".into(),
            ));
        }
        s.total = total;
        s.rebuild_heap();
        Ok(s)
    }

    /// Counts `docs` in parallel: one summary per shard of documents, merged.
    pub fn from_documents_parallel(
        docs: &[Vec<u32>],
        capacity: usize,
        max_ngram_len: usize,
        n_shards: usize,
    ) -> Result<Self> {
        let shard_len = docs.len().div_ceil(n_shards.max(1)).max(1);
        let shards: Vec<Result<SpaceSaving>> = docs
            .par_chunks(shard_len)
            .map(|shard| {
                let mut s = SpaceSaving::new(capacity, max_ngram_len)?;
                shard.iter().for_each(|d| s.add_document(d));
                Ok(s)
            })
            .collect();
        let mut merged = SpaceSaving::new(capacity, max_ngram_len)?;
        for s in shards {
            merged.merge(&s?)?;
        }
        Ok(merged)
    }
}

impl SpaceSaving {
    /// Compact little-endian serialisation: capacity, max_ngram_len, total, len (u64
    /// each), then per item: n tokens (u8), tokens (u32 each), count, error (u64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.len() * 40);
        for v in [
            self.capacity as u64,
            self.max_ngram_len as u64,
            self.total,
            self.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (tokens, count, error) in self.items() {
            out.push(tokens.len() as u8);
            tokens
                .iter()
                .for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&error.to_le_bytes());
        }
        out
    }

    /// Inverse of `to_bytes`; refuses truncated or inconsistent input.
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(
                "not a serialised SpaceSaving summary (truncated or corrupted)".into(),
            )
        };
        let mut pos = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = data.get(pos..pos + n).ok_or_else(bad)?;
            pos += n;
            Ok(s)
        };
        let mut header = [0u64; 4];
        for h in header.iter_mut() {
            *h = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
        }
        let [capacity, max_len, total, len] = header;
        if len > capacity || max_len as usize > MAX_NGRAM_LEN {
            return Err(bad());
        }
        let mut items = Vec::with_capacity((len as usize).min(data.len() / 17));
        for _ in 0..len {
            let k = take(1)?[0] as usize;
            let mut tokens = Vec::with_capacity(k);
            for _ in 0..k {
                tokens.push(u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?));
            }
            let count = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
            let error = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
            items.push((tokens, count, error));
        }
        Self::from_items(capacity as usize, max_len as usize, total, items)
    }
}

fn unpad(key: &NgramKey, max_len: usize) -> Vec<u32> {
    key[..max_len]
        .iter()
        .copied()
        .take_while(|&t| t != PAD_TOKEN)
        .collect()
}

/// Exact counts of every 1..=max_ngram_len-gram (for small corpora and for testing).
pub fn exact_counts(docs: &[Vec<u32>], max_ngram_len: usize) -> FxHashMap<Vec<u32>, u64> {
    let mut counts: FxHashMap<Vec<u32>, u64> = FxHashMap::default();
    for doc in docs {
        for len in 1..=max_ngram_len.min(doc.len()) {
            for w in doc.windows(len) {
                *counts.entry(w.to_vec()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zipf-like synthetic token stream, deterministic.
    fn zipf_docs(n_docs: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        (0..n_docs)
            .map(|_| {
                (0..len)
                    .map(|_| (1.0 / (next() + 0.002)) as u32 % 400)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn exact_when_capacity_suffices() {
        let docs = vec![vec![1, 2, 1, 2], vec![2, 1]];
        let mut s = SpaceSaving::new(1000, 2).unwrap();
        docs.iter().for_each(|d| s.add_document(d));
        let exact = exact_counts(&docs, 2);
        assert_eq!(s.len(), exact.len());
        for (tokens, count, error) in s.items() {
            assert_eq!(error, 0);
            assert_eq!(count, exact[&tokens]);
        }
        // 1: x3, 2: x3, [1 2]: x2, [2 1]: x2; total 4+3 + 1+2... = 6 unigrams + 4 bigrams
        assert_eq!(s.total(), 10);
        assert_eq!(exact[&vec![1, 2]], 2);
    }

    #[test]
    fn space_saving_bounds_hold() {
        let docs = zipf_docs(200, 50, 7);
        let exact = exact_counts(&docs, 3);
        let mut s = SpaceSaving::new(300, 3).unwrap();
        docs.iter().for_each(|d| s.add_document(d));
        let n = s.total();
        let bound = n / 300;
        assert!(s.error_bound() <= bound);
        for (tokens, count, error) in s.items() {
            let truth = exact[&tokens];
            assert!(
                count >= truth && count - error <= truth,
                "{tokens:?}: {count} {error} vs {truth}"
            );
            assert!(error <= bound);
        }
        // every n-gram more frequent than N/k is tracked
        let tracked: FxHashMap<Vec<u32>, u64> =
            s.items().into_iter().map(|(t, c, _)| (t, c)).collect();
        for (tokens, &truth) in &exact {
            if truth > bound {
                assert!(tracked.contains_key(tokens), "{tokens:?} ({truth}) missing");
            }
        }
    }

    #[test]
    fn merged_summaries_keep_the_bounds() {
        let docs = zipf_docs(400, 40, 11);
        let exact = exact_counts(&docs, 2);
        let merged = SpaceSaving::from_documents_parallel(&docs, 250, 2, 4).unwrap();
        assert_eq!(merged.total(), exact.values().sum::<u64>());
        for (tokens, count, error) in merged.items() {
            let truth = exact[&tokens];
            assert!(
                count >= truth && count - error <= truth,
                "{tokens:?}: {count} {error} vs {truth}"
            );
        }
        let top_exact = exact.iter().max_by_key(|(_, &c)| c).unwrap();
        assert_eq!(&merged.items()[0].0, top_exact.0);
    }

    #[test]
    fn round_trip_items() {
        let docs = zipf_docs(20, 30, 3);
        let mut s = SpaceSaving::new(50, 2).unwrap();
        docs.iter().for_each(|d| s.add_document(d));
        let again = SpaceSaving::from_items(50, 2, s.total(), s.items()).unwrap();
        assert_eq!(again.items(), s.items());
        assert_eq!(again.total(), s.total());
        let bytes = s.to_bytes();
        let again = SpaceSaving::from_bytes(&bytes).unwrap();
        assert_eq!(again.items(), s.items());
        for cut in [0, 10, bytes.len() - 1] {
            assert!(SpaceSaving::from_bytes(&bytes[..cut]).is_err());
        }
    }
}
