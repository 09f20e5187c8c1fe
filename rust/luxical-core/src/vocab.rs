//! The n-gram vocabulary: recognized n-grams, their hash → feature index map, and
//! per-document feature counting.
//!
//! Counting prunes: an n-gram can only be recognized if the (n-1)-grams it starts and ends
//! with are, when every recognized n-gram's two (n-1)-grams are themselves recognized or
//! stored as "bridges" (keys that are no feature; added at load for the n-grams a
//! vocabulary lacks, which frequency-selected vocabularies mostly do not). So once the
//! window at a start misses, no longer window from there is hashed or looked up: on long
//! documents about a third of the lookups of a 2M-n-gram model, each a cache miss in a
//! 64 MB table. The features and their order are exactly those of looking up everything.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{Error, Result};
use crate::hash_index::{HashIndex, BRIDGE};
use crate::ngrams::{
    fnv1a_absorb_padding, fnv1a_absorb_u32, hash_ngram, hash_padded_row, FNV_OFFSET_BASIS,
    PAD_TOKEN,
};

/// The recognized n-grams of a model and the map used to look them up.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    max_ngram_len: usize,
    /// Row-major `[vocab_size, max_ngram_len]` token ids, padded with `PAD_TOKEN`.
    ngrams: Vec<u32>,
    /// Hash (format v1, see `ngrams`) → feature index, plus the bridges (`BRIDGE`).
    lookup: HashIndex,
    /// The bridges fitted in the table: counting may prune (see the module docs).
    prune: bool,
}

/// Reusable per-thread scratch for `Vocabulary::count_features`.
#[derive(Debug, Default)]
pub struct CountScratch {
    states: Vec<u64>,
    hashes: Vec<u64>,
    /// Starts of the windows of the current length still worth looking up, and of those
    /// found (recognized or bridge).
    live: Vec<u32>,
    found: Vec<bool>,
    slot_of_feature: FxHashMap<u32, u32>,
}

impl Vocabulary {
    /// Builds a vocabulary from stored rows and the stored hash map.
    ///
    /// Checks the invariants the reference relies on: every key is the hash of the row its
    /// value points at, values are a permutation of `0..vocab_size`.
    pub fn from_parts(
        ngrams: Vec<u32>,
        max_ngram_len: usize,
        keys: &[i64],
        values: &[u32],
    ) -> Result<Self> {
        if max_ngram_len == 0 {
            return Err(Error::InconsistentModel(
                "recognized_ngrams has 0 columns (max n-gram length must be >= 1)".into(),
            ));
        }
        if !ngrams.len().is_multiple_of(max_ngram_len) {
            return Err(Error::InconsistentModel(
                "recognized_ngrams length is not a multiple of its row length".into(),
            ));
        }
        let vocab_size = ngrams.len() / max_ngram_len;
        if vocab_size > BRIDGE as usize {
            return Err(Error::InconsistentModel(format!(
                "vocabulary of {vocab_size} n-grams exceeds the u32 index range"
            )));
        }
        if keys.len() != values.len() || keys.len() != vocab_size {
            return Err(Error::InconsistentModel(format!(
                "ngram_hash_to_ngram_idx has {} keys and {} values, expected {} of each \
                 (one per recognized n-gram)",
                keys.len(),
                values.len(),
                vocab_size
            )));
        }
        let mut seen = vec![false; vocab_size];
        for (i, &value) in values.iter().enumerate() {
            let idx = value as usize;
            if idx >= vocab_size || std::mem::replace(&mut seen[idx], true) {
                return Err(Error::InconsistentModel(format!(
                    "ngram_hash_to_ngram_idx_values[{i}] = {value} is out of range or repeated \
                     (vocabulary size {vocab_size})"
                )));
            }
        }
        // Every key must be the hash of its row (checked in parallel: millions of rows).
        // (On our own pool, not rayon's global one: ours is rebuilt after fork().)
        let pool = crate::threads::pool(None).or_else(|_| crate::threads::pool(Some(1)))?;
        let wrong = pool.install(|| {
            keys.par_iter()
                .zip(values)
                .position_first(|(&key, &value)| {
                    let idx = value as usize;
                    hash_padded_row(&ngrams[idx * max_ngram_len..(idx + 1) * max_ngram_len])
                        != key as u64
                })
        });
        if let Some(i) = wrong {
            return Err(Error::InconsistentModel(format!(
                "ngram_hash_to_ngram_idx_keys[{i}] is not the FNV-1a hash of \
                 recognized_ngrams[{}]; the file is corrupted",
                values[i]
            )));
        }
        let mut lookup = HashIndex::with_capacity(vocab_size);
        for (&k, &v) in keys.iter().zip(values) {
            lookup.insert(k as u64, v);
        }
        let prune = pool.install(|| add_bridges(&mut lookup, &ngrams, max_ngram_len));
        Ok(Self {
            max_ngram_len,
            ngrams,
            lookup,
            prune,
        })
    }

    /// Builds a vocabulary from n-gram rows alone (index = row number), computing keys.
    pub fn from_ngrams(ngrams: Vec<u32>, max_ngram_len: usize) -> Result<Self> {
        if max_ngram_len == 0 || !ngrams.len().is_multiple_of(max_ngram_len) {
            return Err(Error::InvalidArgument(
                "n-gram rows must be a non-empty multiple of max_ngram_len".into(),
            ));
        }
        let keys: Vec<i64> = ngrams
            .chunks_exact(max_ngram_len)
            .map(|row| hash_padded_row(row) as i64)
            .collect();
        let values: Vec<u32> = (0..keys.len() as u32).collect();
        Self::from_parts(ngrams, max_ngram_len, &keys, &values)
    }

    pub fn max_ngram_len(&self) -> usize {
        self.max_ngram_len
    }

    pub fn len(&self) -> usize {
        self.ngrams.len() / self.max_ngram_len
    }

    pub fn is_empty(&self) -> bool {
        self.ngrams.is_empty()
    }

    /// Row-major `[vocab_size, max_ngram_len]` padded token ids.
    pub fn ngrams(&self) -> &[u32] {
        &self.ngrams
    }

    /// The unpadded token ids of feature `idx`.
    pub fn ngram(&self, idx: usize) -> &[u32] {
        let row = &self.ngrams[idx * self.max_ngram_len..(idx + 1) * self.max_ngram_len];
        let len = row
            .iter()
            .position(|&t| t == PAD_TOKEN)
            .unwrap_or(row.len());
        &row[..len]
    }

    /// The (hash, index) pairs, in index order (the order files we write use).
    pub fn hash_map_arrays(&self) -> (Vec<i64>, Vec<u32>) {
        let keys = self
            .ngrams
            .chunks_exact(self.max_ngram_len)
            .map(|row| hash_padded_row(row) as i64)
            .collect();
        (keys, (0..self.len() as u32).collect())
    }

    /// Appends `(feature index, count)` for every recognized n-gram of `tokens` to
    /// `features`, in order of first occurrence in the reference's enumeration order
    /// (length-major: all unigrams left to right, then all bigrams, and so on; each
    /// window's hash built from its start's state one token shorter, so a document of T
    /// tokens costs O(T * max_ngram_len) byte steps). Returns the number of features added.
    pub fn count_features(
        &self,
        tokens: &[u32],
        scratch: &mut CountScratch,
        features: &mut Vec<(u32, u32)>,
    ) -> usize {
        let start = features.len();
        let CountScratch {
            states,
            hashes,
            live,
            found,
            slot_of_feature: slots,
        } = scratch;
        slots.clear();
        let n_tokens = tokens.len();
        states.clear();
        states.resize(n_tokens, FNV_OFFSET_BASIS);
        found.clear();
        found.resize(n_tokens, false);
        live.clear();
        live.extend(0..n_tokens as u32);
        // Look up with the slot of a hash a few places ahead already on its way.
        // 32 on a Sapphire Rapids Xeon, Luxical-One shape (2M n-grams), long documents:
        // +5% over 16; 48 and 64 no better, 8 worse.
        const AHEAD: usize = 32;
        let lookup = &self.lookup;
        for len in 1..=self.max_ngram_len.min(n_tokens) {
            // Found: this length's windows only (else a start pruned at an earlier length
            // would keep its neighbour live: a wasted lookup, never a wrong count).
            found.fill(false);
            // Each live window's hash from its start's prefix state (one more token).
            let n_pad = self.max_ngram_len - len;
            hashes.clear();
            hashes.extend(live.iter().map(|&s| {
                let s = s as usize;
                states[s] = fnv1a_absorb_u32(states[s], tokens[s + len - 1]);
                fnv1a_absorb_padding(states[s], n_pad)
            }));
            for (i, (&hash, &s)) in hashes.iter().zip(live.iter()).enumerate() {
                if let Some(&ahead) = hashes.get(i + AHEAD) {
                    lookup.prefetch(ahead);
                }
                let hit = lookup.get(hash);
                found[s as usize] = hit.is_some();
                match hit {
                    Some(idx) if idx != BRIDGE => {
                        let next = (features.len() - start) as u32;
                        let slot = *slots.entry(idx).or_insert(next);
                        if slot == next {
                            features.push((idx, 1));
                        } else {
                            features[start + slot as usize].1 += 1;
                        }
                    }
                    _ => {}
                }
            }
            // Windows of the next length: one fewer start; with pruning only those whose
            // two shorter windows (at s and s + 1) were found.
            let n_next = (n_tokens + 1).saturating_sub(len + 1);
            if self.prune {
                let found = &*found;
                live.retain(|&s| {
                    let s = s as usize;
                    s < n_next && found[s] && found[s + 1]
                });
            } else {
                live.truncate(n_next);
            }
        }
        features.len() - start
    }
}

/// Adds the bridges that make pruning exact (see the module docs): every (n-1)-gram that
/// starts or ends a recognized n-gram (or a bridge), and is not recognized itself. Returns
/// whether they fit in the table's spare room; if not, none is added and counting looks
/// up every window.
fn add_bridges(lookup: &mut HashIndex, ngrams: &[u32], max_ngram_len: usize) -> bool {
    let unpadded = |row: &[u32]| -> usize {
        row.iter()
            .position(|&t| t == PAD_TOKEN)
            .unwrap_or(row.len())
    };
    // The two sides of every row, where the table lacks them (in parallel: millions of
    // rows, each a random lookup).
    let table = &*lookup;
    let missing: Vec<Vec<u32>> = ngrams
        .par_chunks_exact(max_ngram_len)
        .flat_map_iter(|row| {
            let row = &row[..unpadded(row)];
            let sides: &[&[u32]] = if row.len() >= 2 {
                &[&row[..row.len() - 1], &row[1..]]
            } else {
                &[]
            };
            sides
                .iter()
                .filter(|side| table.get(hash_ngram(side, max_ngram_len)).is_none())
                .map(|side| side.to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    // Bridges need their own sides too.
    let mut bridges: FxHashSet<u64> = FxHashSet::default();
    let mut work = missing;
    while let Some(piece) = work.pop() {
        let hash = hash_ngram(&piece, max_ngram_len);
        if table.get(hash).is_some() || !bridges.insert(hash) {
            continue;
        }
        if bridges.len() > table.spare() {
            return false;
        }
        if piece.len() >= 2 {
            work.push(piece[..piece.len() - 1].to_vec());
            work.push(piece[1..].to_vec());
        }
    }
    for hash in bridges {
        lookup.insert(hash, BRIDGE);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        // max_ngram_len 3: [5], [6], [5 6], [6 5 6]
        let p = PAD_TOKEN;
        Vocabulary::from_ngrams(vec![5, p, p, 6, p, p, 5, 6, p, 6, 5, 6], 3).unwrap()
    }

    #[test]
    fn counts_by_hand() {
        let v = vocab();
        let mut scratch = CountScratch::default();
        let mut feats = Vec::new();
        // tokens 5 6 5 6 7: unigrams 5 x2, 6 x2, (7 unknown); bigrams [5 6] x2 ([6 5], [6 7]
        // unknown); trigrams [6 5 6] x1.
        let n = v.count_features(&[5, 6, 5, 6, 7], &mut scratch, &mut feats);
        assert_eq!(n, 4);
        assert_eq!(feats, vec![(0, 2), (1, 2), (2, 2), (3, 1)]);
        // Appends after existing content without mixing documents.
        let n = v.count_features(&[6], &mut scratch, &mut feats);
        assert_eq!(n, 1);
        assert_eq!(feats[4], (1, 1));
    }

    /// Counting straight from the definition: every window of every length looked up in a
    /// std map of the unpadded rows, features in order of first occurrence (length-major).
    fn naive_counts(rows: &[Vec<u32>], tokens: &[u32], max_len: usize) -> Vec<(u32, u32)> {
        let index: std::collections::HashMap<&[u32], u32> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (&r[..], i as u32))
            .collect();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for len in 1..=max_len.min(tokens.len()) {
            for w in tokens.windows(len) {
                if let Some(&idx) = index.get(w) {
                    match out.iter_mut().find(|(i, _)| *i == idx) {
                        Some(entry) => entry.1 += 1,
                        None => out.push((idx, 1)),
                    }
                }
            }
        }
        out
    }

    fn padded(rows: &[Vec<u32>], max_len: usize) -> Vec<u32> {
        rows.iter()
            .flat_map(|r| {
                r.iter()
                    .copied()
                    .chain(std::iter::repeat(PAD_TOKEN))
                    .take(max_len)
            })
            .collect()
    }

    #[test]
    fn pruned_counting_matches_looking_up_every_window() {
        // Random vocabularies over a small alphabet (so that documents hit often), most of
        // them not closed under taking sides (an n-gram whose (n-1)-grams are absent),
        // against random documents.
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1du64);
        let mut pruned_models = 0;
        for trial in 0..300 {
            let max_len = 1 + (trial % 5);
            let alphabet = 2 + next(6) as u32;
            let mut rows: Vec<Vec<u32>> = Vec::new();
            for _ in 0..next(40) {
                let len = 1 + next(max_len as u64) as usize;
                let row: Vec<u32> = (0..len).map(|_| next(u64::from(alphabet)) as u32).collect();
                if !rows.contains(&row) {
                    rows.push(row);
                }
            }
            if rows.is_empty() {
                continue;
            }
            let v = Vocabulary::from_ngrams(padded(&rows, max_len), max_len).unwrap();
            pruned_models += usize::from(v.prune);
            let mut scratch = CountScratch::default();
            for _ in 0..5 {
                let tokens: Vec<u32> = (0..next(30))
                    .map(|_| next(u64::from(alphabet)) as u32)
                    .collect();
                let mut got = vec![(99, 99)]; // appends after what is there
                v.count_features(&tokens, &mut scratch, &mut got);
                assert_eq!(got[0], (99, 99));
                assert_eq!(
                    got[1..],
                    naive_counts(&rows, &tokens, max_len),
                    "rows {rows:?} tokens {tokens:?}"
                );
            }
        }
        assert!(
            pruned_models > 150,
            "pruning was on for {pruned_models} models only"
        );
    }

    #[test]
    fn too_many_bridges_turn_pruning_off_and_counting_stays_exact() {
        // One 5-gram and nothing under it: 14 bridges, more than a 16-slot table takes.
        let rows = vec![vec![1u32, 2, 3, 4, 5]];
        let v = Vocabulary::from_ngrams(padded(&rows, 5), 5).unwrap();
        assert!(!v.prune);
        let mut feats = Vec::new();
        v.count_features(
            &[9, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5],
            &mut CountScratch::default(),
            &mut feats,
        );
        assert_eq!(feats, vec![(0, 2)]);
        // The small vocabulary above needs one bridge ([6 5] under [6 5 6]) and prunes.
        assert!(vocab().prune);
    }

    #[test]
    fn ngram_rows_unpad() {
        let v = vocab();
        assert_eq!(v.ngram(2), &[5, 6]);
        assert_eq!(v.ngram(3), &[6, 5, 6]);
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn rejects_corrupted_keys() {
        let p = PAD_TOKEN;
        let rows = vec![5, p, 6, p];
        let good = crate::ngrams::hash_ngram(&[5], 2) as i64;
        let err = Vocabulary::from_parts(rows.clone(), 2, &[good, 12345], &[0, 1]).unwrap_err();
        assert!(err.to_string().contains("not the FNV-1a hash"), "{err}");
        let err = Vocabulary::from_parts(rows, 2, &[good, good], &[0, 0]).unwrap_err();
        assert!(err.to_string().contains("repeated"), "{err}");
    }
}
