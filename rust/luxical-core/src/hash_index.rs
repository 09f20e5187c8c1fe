//! The n-gram hash → feature index table: open addressing with linear probing, key and
//! value side by side in one 16-byte slot, so a lookup costs one cache miss (a general
//! purpose map costs two: control bytes, then the bucket). Lookups of a document's
//! hashes are software-prefetched a few ahead (`prefetch`), which lets the misses of a
//! multi-million-entry table overlap.

/// One slot: a key and its value (`EMPTY` = free).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    key: u64,
    value: u32,
}

const EMPTY: u32 = u32::MAX;

/// The value of a key that is not a feature but a step towards one (see
/// `Vocabulary`'s pruned n-gram enumeration).
pub const BRIDGE: u32 = u32::MAX - 1;

/// Map from 64-bit n-gram hashes to feature indices (`< u32::MAX`).
#[derive(Debug, Clone)]
pub struct HashIndex {
    shift: u32,
    mask: usize,
    slots: Vec<Slot>,
    len: usize,
}

impl HashIndex {
    /// An empty table with room for `n` entries at a load factor of at most 1/2.
    pub fn with_capacity(n: usize) -> Self {
        let cap = (2 * n).max(16).next_power_of_two();
        let mut slots = Vec::with_capacity(cap);
        // Lookups land on random slots: huge pages spare them a TLB miss each.
        crate::advise_spare_capacity(&mut slots);
        slots.resize(
            cap,
            Slot {
                key: 0,
                value: EMPTY,
            },
        );
        Self {
            shift: 64 - cap.trailing_zeros(),
            mask: cap - 1,
            slots,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: the top bits of key * 2^64/phi (keys are FNV hashes already;
        // this spreads any structure in their low bits).
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Inserts or overwrites `key`. `value` must be `< u32::MAX`; the table must have been
    /// built with room for every key (`with_capacity`), or have `spare() > 0`.
    pub fn insert(&mut self, key: u64, value: u32) {
        assert!(value != EMPTY, "value u32::MAX is reserved");
        assert!(self.len < self.max_len(), "HashIndex over capacity");
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.value == EMPTY {
                *slot = Slot { key, value };
                self.len += 1;
                return;
            }
            if slot.key == key {
                slot.value = value;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value of `key`, if present.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if slot.value == EMPTY {
                return None;
            }
            if slot.key == key {
                return Some(slot.value);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Hints the CPU to fetch the slot `key` starts probing at.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        crate::prefetch(&self.slots[self.home(key)]);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Most entries the table takes: a load factor of 5/8 (`with_capacity(n)` sizes it for
    /// at most 1/2 with `n` entries; the rest is room for a few extra keys).
    fn max_len(&self) -> usize {
        self.slots.len() / 8 * 5
    }

    /// How many more keys fit.
    pub fn spare(&self) -> usize {
        self.max_len().saturating_sub(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_std_map_including_overwrites_and_collisions() {
        let mut s = 12345u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let n = 5000;
        let mut ours = HashIndex::with_capacity(n + 100);
        let mut want = HashMap::new();
        for i in 0..n as u32 {
            // Some keys that share low and high bits, and some repeats (overwrite).
            let key = match i % 5 {
                0 => u64::from(i) << 40,
                1 => u64::from(i % 97),
                _ => next(),
            };
            ours.insert(key, i);
            want.insert(key, i);
        }
        assert_eq!(ours.len(), want.len());
        for (&k, &v) in &want {
            assert_eq!(ours.get(k), Some(v));
        }
        for _ in 0..10_000 {
            let k = next();
            assert_eq!(ours.get(k), want.get(&k).copied());
        }
        assert_eq!(ours.get(0), want.get(&0).copied());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_tables_are_advised_for_huge_pages() {
        if !crate::kernel_has_thp() {
            return;
        }
        // 2M entries: 4M slots of 16 bytes (64 MiB), the Luxical-One table's size.
        let table = HashIndex::with_capacity(1 << 21);
        let middle = table.slots.as_ptr() as usize + table.slots.len() * 8;
        let flags = crate::vm_flags_at(middle).expect("the table is mapped");
        assert!(
            flags.iter().any(|f| f == "hg"),
            "no MADV_HUGEPAGE: {flags:?}"
        );
        // A table under 4 MiB gets no advice (it may share a mapping with other
        // allocations); it still works as one.
        let small = HashIndex::with_capacity(100);
        assert_eq!(small.get(1), None);
    }
}
