//! Join operators: a join reads two sides, and an operator per kind of join (stream-stream,
//! stream-table, table-table, foreign-key) keeps what each side has shown it and pairs each new
//! record with the other side's rows, as Kafka Streams' join processors do. A `stage` keys a
//! join's rows and lays the pairs out; [`JoinInput`] routes a query's inputs to its joins (one, or
//! one per JOIN of a multi-way join, each later one reading the rows of those before) and hands
//! the last one's rows, the joined input, to the rest of the query. What an operator keeps that a
//! restart must not lose (a stream-stream join's buffers) it lists as [`Change`]s of [`Entry`]s,
//! which `state` lays out for the query's changelog.

mod foreign_key;
mod input;
mod key_index;
mod keyed_rows;
mod shared_row;
mod stage;
mod state;
mod stream_stream;
mod stream_table;
mod table_table;

pub use input::JoinInput;
pub use shared_row::SharedRow;
pub use stage::{JoinedBatch, SidePlacement};

use eddy_common::{Result, external_err};
use eddy_sql::join::{JoinKind, JoinPlan};

use crate::admin::TopicAdmin;

/// The partition count a join reads both its sides with, which it joins partition by partition (a
/// key must be in the same partition on both sides): sides read from their own topics must have
/// the same count, or the join is refused (ksqlDB's message); a side repartitioned by its join
/// expression is read from a repartition topic with the other side's count (the larger of the two
/// when both are). A foreign-key join joins across partitions: its left side's count. The rows of
/// a multi-way join's earlier joins have those joins' count.
pub fn partitions(plan: &JoinPlan, admin: &dyn TopicAdmin) -> Result<i32> {
    let count = |s: &eddy_sql::catalog::Source| -> Result<i32> {
        admin.partitions(&s.topic)?.ok_or_else(|| {
            external_err!("Kafka: the join's input topic {} does not exist", s.topic)
        })
    };
    let (left, right) = (&plan.left.source, &plan.right.source);
    let l = match &plan.left.nested {
        Some(nested) => partitions(nested, admin)?,
        None => count(left)?,
    };
    if plan.kind == JoinKind::ForeignKey {
        return Ok(l);
    }
    let r = count(right)?;
    match (plan.left.repartition, plan.right.repartition) {
        (true, true) => return Ok(l.max(r)),
        (true, false) => return Ok(r),
        (false, true) => return Ok(l),
        (false, false) => {}
    }
    if l != r {
        // The rows of earlier joins are named after the source whose partitions they follow.
        let leaves = plan.leaves();
        let left = &leaves[leaves.len() - 2].source;
        return Err(eddy_common::Error::Plan(format!(
            "Can't join `{}` with `{}` since the number of partitions don't match. `{}` partitions = {l}; `{}` partitions = {r}. Please repartition either one so that the number of partitions match.",
            left.name, right.name, left.name, right.name
        )));
    }
    Ok(l)
}

/// Which side of a join a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    /// 0 for the left side, 1 for the right.
    pub fn index(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
}

/// Where a row comes from: the query input, partition and offset of its record, and for a row
/// that a multi-way join's earlier joins made of that record, which of the rows they made it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    pub input: u16,
    pub partition: i32,
    pub offset: i64,
    pub sub: u32,
}

/// One record of a side, keyed by its join expression.
#[derive(Debug, Clone)]
pub struct SideRow {
    /// The join expression's value, as Arrow row bytes (the same for equal values of either side);
    /// for the left side of a foreign-key join, the row's primary key.
    pub key: SharedRow,
    /// For the left side of a foreign-key join, the join expression's value (the foreign key),
    /// `None` when it is NULL.
    pub foreign: Option<SharedRow>,
    /// The record's columns (the side's decoded row); `None` for a record without a value.
    pub row: Option<SharedRow>,
    /// Its event time.
    pub time: i64,
    /// Its position in the batch being processed.
    pub at: usize,
    pub origin: Origin,
}

/// What an operator keeps of a record: it is buffered to join the other side's, or, unmatched, it
/// waits for its window to close to be emitted with NULLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Buffered,
    Waiting,
}

/// Names a kept record by where it came from: an operator keeps a record at most once of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId {
    pub kind: EntryKind,
    pub side: Side,
    pub origin: Origin,
}

/// A kept record: its join key, its row, its time and its arrival number (which orders records of
/// the same time).
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: EntryId,
    pub key: SharedRow,
    pub row: SharedRow,
    pub time: i64,
    pub seq: u64,
}

/// A change to what an operator keeps.
#[derive(Debug, Clone)]
pub enum Change {
    Put(Entry),
    Delete(EntryId),
}

/// One row of a join's output: the rows of each side (`None`: NULLs), or a tombstone for the key.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The joined row's key (a foreign-key join's: the left row's primary key).
    pub key: SharedRow,
    pub left: Option<SharedRow>,
    pub right: Option<SharedRow>,
    pub time: i64,
    /// The result row for the key is deleted (a table-table join whose result no longer exists).
    pub tombstone: bool,
    /// The batch row whose processing produced it.
    pub at: usize,
}

/// What a join operator did with a batch of one side.
#[derive(Debug, Default)]
pub struct JoinOutput {
    pub rows: Vec<Joined>,
    /// Records dropped because the window they could join in had closed.
    pub late_records: usize,
}

/// A join operator: takes one side's records, in order, and returns the joined rows they make.
pub trait JoinOperator: Send + std::fmt::Debug {
    fn process(&mut self, side: Side, rows: Vec<SideRow>) -> Result<JoinOutput>;

    /// Starts listing the changes to what it keeps, for [`JoinOperator::changes`]. An operator
    /// whose state is read back from its inputs' topics instead (a table's rows) keeps no list.
    fn log_changes(&mut self) {}

    /// The changes since the last call, in the order they happened, and its stream time.
    fn changes(&mut self) -> (Vec<Change>, i64) {
        (Vec::new(), i64::MIN)
    }

    /// Takes back what it kept (the entries a changelog holds) and its stream time, before any
    /// record is processed.
    fn restore(&mut self, _entries: Vec<Entry>, _stream_time: i64) {}
}
