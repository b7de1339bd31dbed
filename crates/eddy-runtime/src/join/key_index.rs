//! An index from keys (row bytes) to values, made for looking a batch of keys up at once: open
//! addressing with linear probing over slots that hold each key's hash and, when it is short, the
//! key itself, so that a lookup reads one slot; a batch's first slots are all read before any is
//! compared, which lets the processor fetch them from memory in parallel instead of one at a time.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

/// Keys up to this many bytes are kept in their slot.
const INLINE: usize = 30;

/// A key's bytes, held inline when short.
#[derive(Debug, Clone)]
pub enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    pub fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                Key::Inline { len, bytes }
            }
            _ => Key::Heap(key.into()),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot<V> {
    hash: u64,
    key: Key,
    value: V,
}

/// Keys and their values. Callers hash a key once ([`KeyIndex::hash`]) for all they do with it.
#[derive(Debug)]
pub struct KeyIndex<V> {
    slots: Vec<Option<Slot<V>>>,
    len: usize,
    hasher: DefaultHashBuilder,
}

impl<V> Default for KeyIndex<V> {
    fn default() -> Self {
        KeyIndex::with_hasher(DefaultHashBuilder::default())
    }
}

fn empty_slots<V>(n: usize) -> Vec<Option<Slot<V>>> {
    std::iter::repeat_with(|| None).take(n).collect()
}

impl<V> KeyIndex<V> {
    /// An empty index hashing with `hasher` (indexes that share one hash a key alike).
    pub fn with_hasher(hasher: DefaultHashBuilder) -> Self {
        KeyIndex {
            slots: empty_slots(16),
            len: 0,
            hasher,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The hash `key` is found by.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn find(&self, hash: u64, key: &[u8]) -> usize {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        loop {
            match &self.slots[at] {
                None => return at,
                Some(slot) if slot.hash == hash && slot.key.bytes() == key => return at,
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Reads the first slot of each hash, so that the slots not in cache are fetched together
    /// (the reads do not wait for each other) before the lookups that need them. `read` reads a
    /// value's first bytes too: a slot can span two cache lines.
    pub fn touch(&self, hashes: impl Iterator<Item = u64>, read: impl Fn(&V) -> u64) {
        let mask = self.mask();
        let touched = hashes.fold(0u64, |acc, h| {
            acc ^ self.slots[h as usize & mask]
                .as_ref()
                .map_or(0, |s| s.hash ^ read(&s.value))
        });
        std::hint::black_box(touched);
    }

    /// The value of `key` (of hash `hash`).
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&V> {
        self.slots[self.find(hash, key)].as_ref().map(|s| &s.value)
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        let at = self.find(hash, key);
        self.slots[at].as_mut().map(|s| &mut s.value)
    }

    /// The value of `key`, made by `value` if it has none.
    pub fn get_or_insert_with(
        &mut self,
        hash: u64,
        key: &[u8],
        value: impl FnOnce() -> V,
    ) -> &mut V {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let at = self.find(hash, key);
        if self.slots[at].is_none() {
            self.len += 1;
        }
        let slot = self.slots[at].get_or_insert_with(|| Slot {
            hash,
            key: Key::new(key),
            value: value(),
        });
        &mut slot.value
    }

    /// Sets the value of `key`; returns its previous one.
    pub fn insert(&mut self, hash: u64, key: &[u8], value: V) -> Option<V> {
        let mut value = Some(value);
        let slot = self.get_or_insert_with(hash, key, || value.take().expect("not taken yet"));
        value.map(|v| std::mem::replace(slot, v))
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<V> {
        let mask = self.mask();
        let mut hole = self.find(hash, key);
        let removed = self.slots[hole].take()?;
        self.len -= 1;
        // Keys placed after the hole by collisions move back into it, so that every key stays
        // reachable from its first slot without crossing an empty one.
        let mut next = (hole + 1) & mask;
        while let Some(slot) = &self.slots[next] {
            let home = slot.hash as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[next].take();
                hole = next;
            }
            next = (next + 1) & mask;
        }
        Some(removed.value)
    }

    /// Every value, to change in place.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().flatten().map(|s| &mut s.value)
    }

    /// Every value, in the order of [`KeyIndex::values_mut`].
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.slots.iter().flatten().map(|s| &s.value)
    }

    fn grow(&mut self) {
        let size = 2 * self.slots.len();
        let old = std::mem::replace(&mut self.slots, empty_slots(size));
        let mask = self.mask();
        for slot in old.into_iter().flatten() {
            let mut at = slot.hash as usize & mask;
            while self.slots[at].is_some() {
                at = (at + 1) & mask;
            }
            self.slots[at] = Some(slot);
        }
    }
}

impl<V: Copy> KeyIndex<V> {
    /// The values of `keys`, in their order.
    pub fn get_many(&self, keys: &[&[u8]]) -> Vec<Option<V>> {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(k)).collect();
        self.touch(hashes.iter().copied(), |_| 0);
        keys.iter()
            .zip(&hashes)
            .map(|(key, hash)| self.get(*hash, key).copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Inserts and removes keys short and long in a pseudo-random order, checking every lookup
    /// against a `HashMap`.
    #[test]
    fn agrees_with_a_map() {
        let mut index = KeyIndex::default();
        let mut map = HashMap::new();
        let mut state = 12345u64;
        for step in 0..200_000u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (state >> 33) % 5_000;
            let key: Vec<u8> = match n % 3 {
                0 => n.to_le_bytes().to_vec(),
                _ => format!("{n:0>40}").into_bytes(),
            };
            let hash = index.hash(&key);
            if (state >> 20).is_multiple_of(3) {
                assert_eq!(index.remove(hash, &key), map.remove(&key), "step {step}");
            } else {
                assert_eq!(
                    index.insert(hash, &key, step),
                    map.insert(key.clone(), step)
                );
            }
            assert_eq!(index.len(), map.len());
        }
        let keys: Vec<Vec<u8>> = (0..5_000u64)
            .map(|n| match n % 3 {
                0 => n.to_le_bytes().to_vec(),
                _ => format!("{n:0>40}").into_bytes(),
            })
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let expected: Vec<Option<u64>> = keys.iter().map(|k| map.get(k).copied()).collect();
        assert_eq!(index.get_many(&refs), expected);
        let mut sum: u64 = index.values().copied().sum();
        assert_eq!(sum, map.values().sum::<u64>());
        index.values_mut().for_each(|v| *v += 1);
        sum = index.values().copied().sum();
        assert_eq!(sum, map.values().map(|v| v + 1).sum::<u64>());
    }
}
