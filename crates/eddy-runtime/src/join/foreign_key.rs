//! Foreign-key table-table join: each row of the left table joins the row of the right table whose
//! primary key its join expression gives, and the result is keyed by the left row's primary key
//! (Kafka Streams' foreign-key `KTable#join`). A left change emits its key's row at its time; a
//! right change emits the row of every left key that refers to it (in key order) at its time.

use std::collections::BTreeSet;

use hashbrown::{HashMap, HashSet};

use eddy_common::Result;

use super::{JoinOperator, JoinOutput, Joined, SharedRow, Side, SideRow};

/// The left rows with their foreign keys, the right rows, and who refers to whom.
#[derive(Debug, Default)]
pub struct ForeignKeyJoin {
    /// LEFT JOIN: a left row without a right row is emitted with NULLs.
    keep_unmatched: bool,
    left: HashMap<SharedRow, (SharedRow, Option<SharedRow>)>,
    right: HashMap<SharedRow, SharedRow>,
    /// The left keys whose foreign key is each right key.
    referrers: HashMap<SharedRow, BTreeSet<SharedRow>>,
    /// The left keys an inner join has a result row for.
    joined: HashSet<SharedRow>,
}

impl ForeignKeyJoin {
    pub fn new(keep_unmatched: bool) -> Self {
        ForeignKeyJoin {
            keep_unmatched,
            ..ForeignKeyJoin::default()
        }
    }

    /// The result row of a left key, given its left row and the right row it refers to: `None`
    /// when an inner join has none and had none before (nothing to emit).
    fn result(
        &mut self,
        key: SharedRow,
        left: Option<SharedRow>,
        right: Option<SharedRow>,
        time: i64,
        at: usize,
    ) -> Option<Joined> {
        let exists = left.is_some() && (right.is_some() || self.keep_unmatched);
        let existed = if exists {
            !self.joined.insert(key.clone())
        } else {
            self.joined.remove(&key)
        };
        if !exists && !existed && left.is_some() {
            // An inner join's left row without a match, which had no result before either.
            return None;
        }
        Some(Joined {
            key,
            left: if exists { left } else { None },
            right: if exists { right } else { None },
            time,
            tombstone: !exists,
            at,
        })
    }
}

impl JoinOperator for ForeignKeyJoin {
    fn process(&mut self, side: Side, rows: Vec<SideRow>) -> Result<JoinOutput> {
        let mut out = JoinOutput::default();
        for r in rows {
            match side {
                Side::Left => {
                    if let Some((_, Some(old))) = self.left.remove(&r.key)
                        && let Some(keys) = self.referrers.get_mut(&old)
                    {
                        keys.remove(&r.key);
                        if keys.is_empty() {
                            self.referrers.remove(&old);
                        }
                    }
                    let right = r.foreign.as_ref().and_then(|f| self.right.get(f)).cloned();
                    if let Some(row) = &r.row {
                        if let Some(f) = &r.foreign {
                            self.referrers
                                .entry(f.clone())
                                .or_default()
                                .insert(r.key.clone());
                        }
                        self.left
                            .insert(r.key.clone(), (row.clone(), r.foreign.clone()));
                    }
                    out.rows
                        .extend(self.result(r.key, r.row, right, r.time, r.at));
                }
                Side::Right => {
                    match &r.row {
                        Some(row) => self.right.insert(r.key.clone(), row.clone()),
                        None => self.right.remove(&r.key),
                    };
                    let keys: Vec<SharedRow> = self
                        .referrers
                        .get(&r.key)
                        .map(|k| k.iter().cloned().collect())
                        .unwrap_or_default();
                    for key in keys {
                        let left = self.left.get(&key).map(|(row, _)| row.clone());
                        out.rows
                            .extend(self.result(key, left, r.row.clone(), r.time, r.at));
                    }
                }
            }
        }
        Ok(out)
    }
}
