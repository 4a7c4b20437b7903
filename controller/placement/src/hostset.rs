//! A set of host slots as a bitset.
//!
//! It exists so the static filters (arch, site, state, firmware, zones, pools) can be answered for
//! all hosts at once: a request's candidates are the AND of a few posting sets, and a walk tests
//! one bit per host instead of comparing strings.

use crate::index::Slot;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostSet {
    words: Vec<u64>,
}

impl HostSet {
    pub fn insert(&mut self, slot: Slot) {
        let (word, bit) = (slot as usize / 64, slot % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << bit;
    }

    pub fn remove(&mut self, slot: Slot) {
        let (word, bit) = (slot as usize / 64, slot % 64);
        if let Some(bits) = self.words.get_mut(word) {
            *bits &= !(1 << bit);
        }
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    pub fn contains(&self, slot: Slot) -> bool {
        let (word, bit) = (slot as usize / 64, slot % 64);
        self.words.get(word).is_some_and(|bits| bits & (1 << bit) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|bits| bits.count_ones() as usize).sum()
    }

    /// Keeps only the slots also in `other`.
    pub fn retain_in(&mut self, other: &HostSet) {
        self.words.truncate(other.words.len());
        for (bits, other_bits) in self.words.iter_mut().zip(&other.words) {
            *bits &= other_bits;
        }
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    /// Splits off the slots not in `keep`: `self` keeps the others, the result holds them.
    pub fn split_off_outside(&mut self, keep: &HostSet) -> HostSet {
        let mut outside = self.clone();
        for (i, bits) in outside.words.iter_mut().enumerate() {
            *bits &= !keep.words.get(i).copied().unwrap_or(0);
        }
        self.retain_in(keep);
        outside
    }

    /// The slots, in increasing order.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &bits)| {
            let base = i as Slot * 64;
            BitIter(bits).map(move |bit| base + bit)
        })
    }
}

struct BitIter(u64);

impl Iterator for BitIter {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_keep_a_canonical_form() {
        let mut a = HostSet::default();
        for slot in [0, 3, 64, 130] {
            a.insert(slot);
        }
        let mut keep = HostSet::default();
        keep.insert(3);
        keep.insert(130);
        let outside = a.split_off_outside(&keep);
        assert_eq!(a.slots().collect::<Vec<_>>(), [3, 130]);
        assert_eq!(outside.slots().collect::<Vec<_>>(), [0, 64]);
        assert_eq!((a.len(), outside.len()), (2, 2));
        a.remove(130);
        a.remove(3);
        assert!(a.is_empty());
        assert_eq!(a, HostSet::default());
    }
}
