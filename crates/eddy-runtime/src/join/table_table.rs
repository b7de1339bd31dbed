//! Table-table join on the primary key: a change of either side looks the key up in the other and
//! updates (or deletes) the joined row, as Kafka Streams' `KTable#join` family does; the joined row
//! takes the later of the two rows' times.

use hashbrown::HashMap;

use eddy_common::Result;
use eddy_sql::join::JoinType;

use super::{JoinOperator, JoinOutput, Joined, SharedRow, Side, SideRow};

/// Each side's current rows (and their times) by key.
#[derive(Debug)]
pub struct TableTableJoin {
    join_type: JoinType,
    tables: [HashMap<SharedRow, (SharedRow, i64)>; 2],
}

impl TableTableJoin {
    pub fn new(join_type: JoinType) -> Self {
        TableTableJoin {
            join_type,
            tables: [HashMap::new(), HashMap::new()],
        }
    }

    /// Whether a change on `side` emits when the other side has no row for the key.
    fn keeps(&self, side: Side) -> bool {
        match side {
            Side::Left => self.join_type.keeps_left(),
            Side::Right => self.join_type.keeps_right(),
        }
    }
}

impl JoinOperator for TableTableJoin {
    fn process(&mut self, side: Side, rows: Vec<SideRow>) -> Result<JoinOutput> {
        let mut out = JoinOutput::default();
        for r in rows {
            match &r.row {
                Some(row) => {
                    self.tables[side.index()].insert(r.key.clone(), (row.clone(), r.time));
                }
                None => {
                    self.tables[side.index()].remove(&r.key);
                }
            }
            let other = self.tables[side.other().index()].get(&r.key).cloned();
            let emits = match (&r.row, &other) {
                (_, Some(_)) => true,
                // This side's row alone (or its deletion) is the result when unmatched rows are kept.
                (_, None) => self.keeps(side),
            };
            if !emits {
                continue;
            }
            let time = other.as_ref().map_or(r.time, |(_, t)| r.time.max(*t));
            let other = other.map(|(row, _)| row);
            // The result exists while a side it keeps has a row.
            let this_kept = r.row.is_some() && self.keeps(side);
            let other_kept = other.is_some() && self.keeps(side.other());
            let inner = r.row.is_some() && other.is_some();
            let tombstone = !(inner || this_kept || other_kept);
            let (left, right) = match side {
                Side::Left => (r.row, other),
                Side::Right => (other, r.row),
            };
            out.rows.push(Joined {
                key: r.key,
                left: if tombstone { None } else { left },
                right: if tombstone { None } else { right },
                time,
                tombstone,
                at: r.at,
            });
        }
        Ok(out)
    }
}
