//! The input of a join query: routes each query input's records to the join that reads it, runs
//! the joins in order (a multi-way join's later joins read the rows of those before as their left
//! side) and hands the last one's rows, the joined input, to the rest of the query. It keeps what
//! the joins' state across restarts needs: their changelog records and the records already in it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::row::OwnedRow;
use hashbrown::{HashMap, HashSet};

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::Source;
use eddy_sql::join::JoinPlan;

use super::stage::{JoinedBatch, KEYS, SidePlacement, Stage};
use super::state::{entry_key, parse_key};
use super::{EntryId, EntryKind, Side};
use crate::changelog::{Checkpoint, SinkMark, StateChange, StateKey, covers, input_position};
use crate::record::RecordRef;
use crate::registry::SchemaRegistry;

/// A join query's inputs and joins.
#[derive(Debug)]
pub struct JoinInput {
    /// The joins in the order they run: the last makes the joined input.
    stages: Vec<Stage>,
    /// The keys a filtered table-table join's output holds a row for.
    present: Mutex<HashSet<OwnedRow>>,
    /// The operators list their state changes for a changelog.
    logged: AtomicBool,
    /// After a restore, per input and partition: the last offset past the checkpoint that a write
    /// cut short already processed (its output went out before the write). Records up to it are
    /// left out when read again: the state restored includes them, and what came after them.
    replayed: Mutex<HashMap<(u16, i32), i64>>,
    /// The number, among the query's joins, of its first join (not 0 for the joins after a
    /// split, see [`JoinInput::split_at`]).
    first: usize,
}

impl JoinInput {
    /// The input of `plan`, whose joined input's columns `used` (indexes) the query reads.
    pub fn new(
        plan: Arc<JoinPlan>,
        registry: &Arc<dyn SchemaRegistry>,
        used: &std::collections::HashSet<usize>,
    ) -> Result<Self> {
        // Each join reads of the rows of the one before what it hands on or joins on; every
        // join's rows keep their pseudo-columns and keys.
        let mut used = used.clone();
        let mut stages = Vec::new();
        for p in plan.stages().into_iter().rev() {
            used.extend(0..KEYS + p.key.columns.len());
            let stage = Stage::new(Arc::new(p.clone()), registry, &used)?;
            used = stage.used(Side::Left).clone();
            stages.push(stage);
        }
        stages.reverse();
        if stages.len() > usize::from(u16::MAX) {
            return Err(exec_err!("a join of {} sources", stages.len() + 1));
        }
        Ok(JoinInput::of(stages, 0))
    }

    fn of(stages: Vec<Stage>, first: usize) -> JoinInput {
        JoinInput {
            stages,
            present: Mutex::default(),
            logged: AtomicBool::new(false),
            replayed: Mutex::default(),
            first,
        }
    }

    /// The same join with nothing seen yet (listing its state changes if this one does).
    pub fn fresh(&self) -> JoinInput {
        self.fresh_with(self.stages.iter().map(Stage::fresh).collect(), self.first)
    }

    /// Joins `stages` with nothing seen yet, listing their state changes if this one does.
    fn fresh_with(&self, stages: Vec<Stage>, first: usize) -> JoinInput {
        let fresh = JoinInput::of(stages, first);
        if self.logged.load(Ordering::Relaxed) {
            fresh.log_changes();
        }
        fresh
    }

    /// The number (among the query's joins) of the first join after the first whose left side,
    /// the rows of the joins before it, must be repartitioned by its join expression: where a
    /// server splits the query (see [`JoinInput::split_at`]).
    pub fn repartitioned_join(&self) -> Option<usize> {
        (1..self.stages.len())
            .find(|n| self.stages[*n].placement(Side::Left).is_some())
            .map(|n| n + self.first)
    }

    /// The joins split before join `n` (a number among the query's joins, see
    /// [`JoinInput::repartitioned_join`]), each with nothing seen yet: the joins before it, with
    /// how join `n` places their rows; and join `n` on, whose left side reads those rows back from
    /// the query's internal topic (`source`).
    pub fn split_at(
        &self,
        n: usize,
        source: Arc<Source>,
    ) -> Result<(JoinInput, SidePlacement, JoinInput)> {
        let at = n
            .checked_sub(self.first)
            .filter(|at| (1..self.stages.len()).contains(at))
            .ok_or_else(|| exec_err!("no join {n} to split a query at"))?;
        let placement = self.stages[at]
            .placement(Side::Left)
            .ok_or_else(|| exec_err!("join {n} does not repartition its left side"))?;
        let before = self.fresh_with(
            self.stages[..at].iter().map(Stage::fresh).collect(),
            self.first,
        );
        let schema = self.stages[at - 1].plan.schema.clone();
        let after: Vec<Stage> =
            std::iter::once(self.stages[at].reading_earlier_rows(source, schema))
                .chain(self.stages[at + 1..].iter().map(Stage::fresh))
                .collect();
        Ok((before, placement, self.fresh_with(after, n)))
    }

    /// Whether query input `input` holds rows of earlier joins, read back from the query's
    /// internal topic.
    pub fn reads_joined_rows(&self, input: usize) -> bool {
        input == 0 && self.stages[0].reads_earlier_rows()
    }

    fn last(&self) -> &Stage {
        self.stages.last().expect("a join has a stage")
    }

    /// The join reading query input `input`, and the side it reads it as: the first input is the
    /// first join's left side, input `i` the right side of join `i - 1`.
    fn route(&self, input: usize) -> Result<(usize, Side)> {
        match input {
            0 => Ok((0, Side::Left)),
            i if i <= self.stages.len() => Ok((i - 1, Side::Right)),
            i => Err(exec_err!(
                "a join of {} sources has no input {i}",
                self.stages.len() + 1
            )),
        }
    }

    /// Whether a join keeps state that its inputs' topics cannot give back, which a changelog
    /// keeps instead: a stream-stream join's buffers. (Tables are read back from their topics.)
    pub fn keeps_state(&self) -> bool {
        self.stages.iter().any(Stage::keeps_state)
    }

    /// Lists the state changes, for [`JoinInput::changes`].
    pub fn log_changes(&self) {
        self.logged.store(true, Ordering::Relaxed);
        for stage in &self.stages {
            stage.operator().log_changes();
        }
    }

    /// The changelog records of the state changed since the last call, in the order the changes
    /// happened (join by join), then a checkpoint: `positions` are the input positions the state
    /// now includes (see [`input_position`]), `sink` where an exactly-once output stands.
    pub fn changes(
        &self,
        positions: &[(i32, i64)],
        sink: Option<&SinkMark>,
    ) -> Result<Vec<StateChange>> {
        let mut out = Vec::new();
        // The checkpoint's stream time: the earliest of the joins that keep state, so that none
        // drops after a restart what it would have joined before.
        let mut stream_time = None;
        for (n, stage) in self.stages.iter().enumerate() {
            let (changes, time) = stage.changes()?;
            if stage.keeps_state() {
                stream_time = Some(stream_time.map_or(time, |t: i64| t.min(time)));
            }
            out.extend(changes.into_iter().map(|(id, value)| StateChange {
                key: entry_key(n, &id),
                value,
            }));
        }
        out.push(StateChange {
            key: StateKey::Checkpoint.encode(),
            value: Some(
                Checkpoint {
                    positions: positions.to_vec(),
                    stream_time: stream_time.unwrap_or(i64::MIN),
                    sink: sink.cloned(),
                }
                .encode(),
            ),
        });
        Ok(out)
    }

    /// Restores the state from its changelog records (the latest of each key counts); returns the
    /// checkpoint whose input positions to resume from (`None` without a complete write).
    pub fn restore(&self, records: Vec<StateChange>) -> Result<Option<Checkpoint>> {
        let checkpoint_key = StateKey::Checkpoint.encode();
        let mut checkpoint = None;
        let mut latest: HashMap<(usize, EntryId), Option<Vec<u8>>> = HashMap::new();
        for r in records {
            if r.key == checkpoint_key {
                checkpoint = r.value.as_deref().map(Checkpoint::decode).transpose()?;
            } else if let Some((stage, id)) = parse_key(&r.key)? {
                if stage >= self.stages.len() {
                    return Err(exec_err!(
                        "the join's changelog holds a record of join {stage}, which this query does not have"
                    ));
                }
                latest.insert((stage, id), r.value);
            } else {
                return Err(exec_err!(
                    "the join's changelog holds a record this version does not write"
                ));
            }
        }
        let positions = checkpoint
            .as_ref()
            .map(|c| c.positions.clone())
            .unwrap_or_default();
        // A write's changes come in the order of the records that made them, each record's own
        // entry after everything it changed: whatever part of a write reached the changelog is
        // the state after the records it names (kept since, or already forgotten again).
        let mut replayed: HashMap<(u16, i32), i64> = HashMap::new();
        for (_, id) in latest
            .keys()
            .filter(|(_, id)| id.kind == EntryKind::Buffered)
        {
            let o = id.origin;
            if !covers(
                &positions,
                input_position(usize::from(o.input), o.partition),
                o.offset,
            ) {
                let last = replayed.entry((o.input, o.partition)).or_insert(o.offset);
                *last = (*last).max(o.offset);
            }
        }
        let stream_time = checkpoint.as_ref().map_or(i64::MIN, |c| c.stream_time);
        for (n, stage) in self.stages.iter().enumerate() {
            let kept: Vec<(EntryId, &[u8])> = latest
                .iter()
                .filter(|((s, _), _)| *s == n)
                .filter_map(|((_, id), v)| Some((*id, v.as_deref()?)))
                .collect();
            stage.restore(kept, stream_time)?;
        }
        *self.replayed.lock().unwrap_or_else(|p| p.into_inner()) = replayed;
        Ok(checkpoint)
    }

    /// Which rows of a filtered table-table join's output to keep (`deletes`: the rows that delete
    /// their key): a deletion of a key whose last row was not emitted is dropped.
    pub fn settle(&self, batch: &RecordBatch, deletes: &BooleanArray) -> Result<BooleanArray> {
        let keys = self
            .last()
            .keys
            .convert_columns(&batch.columns()[KEYS..KEYS + self.last().plan.key.columns.len()])
            .map_err(|e| exec_err!("{e}"))?;
        let mut present = self.present.lock().unwrap_or_else(|p| p.into_inner());
        Ok((0..batch.num_rows())
            .map(|i| {
                let key = keys.row(i).owned();
                Some(if deletes.value(i) {
                    present.remove(&key)
                } else {
                    present.insert(key);
                    true
                })
            })
            .collect())
    }

    /// The sources the join reads from topics, in the order of the FROM clause (query inputs).
    pub fn sources(&self) -> Vec<Arc<Source>> {
        let mut sources = vec![self.stages[0].source(Side::Left).clone()];
        sources.extend(self.stages.iter().map(|s| s.source(Side::Right).clone()));
        sources
    }

    /// The partition (of `partitions`) each record of query input `input`, a side repartitioned
    /// by its join expression, goes to (see [`Stage::placements`]).
    pub fn placements<R: RecordRef>(
        &self,
        input: usize,
        records: &[R],
        partitions: i32,
    ) -> Result<Vec<i32>> {
        let (stage, side) = self.route(input)?;
        self.stages[stage].placements(side, records, partitions)
    }

    /// Decodes records of query input `input` and joins them, and what they make in each later
    /// join; the joined rows come out in the joined input's layout.
    pub fn process<R: RecordRef>(&self, input: usize, records: &[R]) -> Result<JoinedBatch> {
        let (first, side) = self.route(input)?;
        let stage = &self.stages[first];
        let decoded = stage.decode(side, records)?;
        let number = u16::try_from(input).map_err(|_| exec_err!("join input {input}"))?;
        let mut joined = {
            let mut replayed = self.replayed.lock().unwrap_or_else(|p| p.into_inner());
            stage.join(side, decoded, number, Some(&mut *replayed))?
        };
        for later in &self.stages[first + 1..] {
            let next = later.join(Side::Left, joined.decoded, number, None)?;
            joined = JoinedBatch {
                decoded: next.decoded,
                late_records: joined.late_records + next.late_records,
                expression_errors: [joined.expression_errors, next.expression_errors].concat(),
            };
        }
        Ok(joined)
    }
}
