//! The index from a group's key (and window start) to its slot. It holds slots only: the key bytes
//! live once, in the group, and the index hashes and compares them there — with a million groups
//! that halves what keys cost.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;

use super::Group;

#[derive(Default)]
pub(super) struct GroupIndex {
    table: HashTable<usize>,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for GroupIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupIndex({} groups)", self.table.len())
    }
}

/// What a group is found by: its key bytes and, for a time window, the window's start.
fn identity(g: &Group) -> (&[u8], Option<i64>) {
    (&g.key, g.window.map(|w| w.start))
}

fn hash_of(hasher: &DefaultHashBuilder, key: &[u8], start: Option<i64>) -> u64 {
    let mut h = hasher.build_hasher();
    key.hash(&mut h);
    start.hash(&mut h);
    h.finish()
}

fn slot_group(groups: &[Option<Group>], slot: usize) -> &Group {
    groups[slot].as_ref().expect("an indexed group is live")
}

impl GroupIndex {
    /// The slot of the group with this key and window start.
    pub(super) fn get(
        &self,
        groups: &[Option<Group>],
        key: &[u8],
        start: Option<i64>,
    ) -> Option<usize> {
        let hash = hash_of(&self.hasher, key, start);
        self.table
            .find(hash, |&s| identity(slot_group(groups, s)) == (key, start))
            .copied()
    }

    /// Indexes the group in `slot` (which must be live in `groups`).
    pub(super) fn insert(&mut self, groups: &[Option<Group>], slot: usize) {
        let (key, start) = identity(slot_group(groups, slot));
        let hash = hash_of(&self.hasher, key, start);
        let hasher = &self.hasher;
        self.table.insert_unique(hash, slot, |&s| {
            let (k, st) = identity(slot_group(groups, s));
            hash_of(hasher, k, st)
        });
    }

    /// Removes the group in `slot` (still live in `groups`) from the index.
    pub(super) fn remove(&mut self, groups: &[Option<Group>], slot: usize) {
        let (key, start) = identity(slot_group(groups, slot));
        let hash = hash_of(&self.hasher, key, start);
        if let Ok(entry) = self.table.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
    }
}
