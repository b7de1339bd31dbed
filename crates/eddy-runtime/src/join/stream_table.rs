//! Stream-table join: each stream record meets the row its key has in the table at that point; a
//! change of the table updates the table and emits nothing (Kafka Streams' `KStream#join(KTable)`).

use hashbrown::HashMap;

use eddy_common::Result;

use super::{JoinOperator, JoinOutput, Joined, SharedRow, Side, SideRow};

/// The table side's rows by key; the stream is on the left.
#[derive(Debug, Default)]
pub struct StreamTableJoin {
    /// LEFT JOIN: a stream record whose key the table lacks is emitted with NULLs.
    keep_unmatched: bool,
    table: HashMap<SharedRow, SharedRow>,
}

impl StreamTableJoin {
    pub fn new(keep_unmatched: bool) -> Self {
        StreamTableJoin {
            keep_unmatched,
            table: HashMap::new(),
        }
    }
}

impl JoinOperator for StreamTableJoin {
    fn process(&mut self, side: Side, rows: Vec<SideRow>) -> Result<JoinOutput> {
        let mut out = JoinOutput::default();
        match side {
            Side::Right => {
                for r in rows {
                    match r.row {
                        Some(row) => self.table.insert(r.key, row),
                        None => self.table.remove(&r.key),
                    };
                }
            }
            Side::Left => {
                for r in rows {
                    // A stream record without a value joins nothing.
                    let Some(row) = r.row else { continue };
                    let right = self.table.get(&r.key).cloned();
                    if right.is_none() && !self.keep_unmatched {
                        continue;
                    }
                    out.rows.push(Joined {
                        key: r.key,
                        left: Some(row),
                        right,
                        time: r.time,
                        tombstone: false,
                        at: r.at,
                    });
                }
            }
        }
        Ok(out)
    }
}
