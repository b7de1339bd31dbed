//! The output of one aggregation shard under exactly-once, on a broker without transactions. The
//! shard's writes are numbered (epochs): every record it emits carries its origin — the shard, the
//! epoch of the write it belongs to, and the how-many-th record of its key in that epoch — and the
//! rows a write emits at its checkpoint carry where the input stood (the cut). The checkpoint keeps
//! the epoch and from where in each output partition later records can be.
//!
//! After a crash the state is restored from the last checkpoint (epoch k) and the output is read
//! back from there: the records of epoch k + 1 found are what the crashed write got out. Replay
//! processes the input up to exactly that write's cut, emits again, and leaves out what was found;
//! the write's checkpoint then follows, and the shard goes on. Replaying the same input from the
//! same state emits the same records, so nothing is lost and nothing is written twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use eddy_common::Result;
use eddy_runtime::Record;
use eddy_runtime::changelog::{Positions, SinkMark};

use crate::cluster::KafkaCluster;
use crate::ledger::{Frontier, scan};
use crate::origin::Origin;

/// A record's identity within an epoch: its key and the how-many-th record of that key it is.
type RecordId = (Option<Vec<u8>>, u32);

/// What a crashed write got out, to be left out when replay emits it again.
#[derive(Debug)]
struct Replay {
    written: HashSet<RecordId>,
    /// Where the crashed write's input stood when it emitted at its checkpoint, if it got that far.
    cut: Option<BTreeMap<i32, i64>>,
    since: Instant,
}

/// A shard's exactly-once output.
#[derive(Debug)]
pub(crate) struct ExactOutput {
    writer: u64,
    shard: i32,
    /// The epoch of the last completed write.
    epoch: u64,
    frontier: Frontier,
    /// How many records of each key the current epoch emitted while folding records in.
    occurrences: HashMap<Option<Vec<u8>>, u32>,
    replay: Option<Replay>,
}

impl ExactOutput {
    /// The output of `shard` restored at a checkpoint with `mark` (`None`: the shard never completed
    /// an exactly-once write, and nothing of it can be in `topic` after its current ends).
    pub(crate) fn restore(
        cluster: &KafkaCluster,
        topic: &str,
        writer: u64,
        shard: i32,
        mark: Option<SinkMark>,
        stop: &AtomicBool,
    ) -> Result<ExactOutput> {
        let Some(mark) = mark else {
            let frontier = Frontier::at_end(cluster, topic)?;
            return Ok(ExactOutput::new(writer, shard, 0, frontier, None));
        };
        let frontier = Frontier::from_positions(&mark.scan_from);
        let mut replay = Replay {
            written: HashSet::new(),
            cut: None,
            since: Instant::now(),
        };
        scan(cluster, topic, &frontier, writer, stop, |origin, key, _| {
            if let Origin::Write {
                shard: s,
                epoch,
                occurrence,
                cut,
                ..
            } = origin
                && s == shard
                && epoch == mark.epoch + 1
            {
                replay.written.insert((key.map(<[u8]>::to_vec), occurrence));
                if let Some(cut) = cut {
                    replay.cut = Some(cut.into_iter().collect());
                }
            }
        })?;
        if !replay.written.is_empty() {
            tracing::info!(
                shard,
                records = replay.written.len(),
                cut = ?replay.cut,
                "the output holds records of an unfinished write: replay leaves them out"
            );
        }
        let replay = (!replay.written.is_empty()).then_some(replay);
        Ok(ExactOutput::new(
            writer, shard, mark.epoch, frontier, replay,
        ))
    }

    fn new(
        writer: u64,
        shard: i32,
        epoch: u64,
        frontier: Frontier,
        replay: Option<Replay>,
    ) -> ExactOutput {
        ExactOutput {
            writer,
            shard,
            epoch,
            frontier,
            occurrences: HashMap::new(),
            replay,
        }
    }

    /// A write a crash interrupted is being made again: until it is, the shard writes nothing else
    /// (a write before the cut would end the epoch early, and records the crashed write got out
    /// would come again under the next one).
    pub(crate) fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// A crashed write has been being made again for `patience` or longer.
    pub(crate) fn replaying_for(&self, patience: Duration) -> bool {
        self.replay
            .as_ref()
            .is_some_and(|r| r.since.elapsed() >= patience)
    }

    /// Gives up making a crashed write again (its input is gone, or replay emits differently than
    /// it did): the shard goes on as if it had been made. Returns how many records that write got
    /// out which did not come again (they may come again later, a second time).
    pub(crate) fn abandon_replay(&mut self) -> usize {
        self.replay.take().map_or(0, |r| r.written.len())
    }

    /// Where replay has to stop and write: the cut of the write a crash interrupted.
    pub(crate) fn cut(&self) -> Option<&BTreeMap<i32, i64>> {
        self.replay.as_ref()?.cut.as_ref()
    }

    /// Gives records of the current epoch their origins (`cut`: they are emitted by the write at
    /// these input positions), leaving out those a crashed write already got out.
    pub(crate) fn mark(
        &mut self,
        records: Vec<Record>,
        cut: Option<&Positions>,
    ) -> (Vec<Record>, Vec<Vec<u8>>) {
        let mut kept = Vec::with_capacity(records.len());
        let mut origins = Vec::with_capacity(records.len());
        for record in records {
            let occurrence = self.occurrences.get(&record.key).copied().unwrap_or(0);
            // A write emits each key once, after everything folded in: only keys emitted while
            // folding (deletes, closed windows) can come again in the same epoch.
            if cut.is_none() {
                self.occurrences.insert(record.key.clone(), occurrence + 1);
            }
            if let Some(replay) = &mut self.replay
                && replay.written.remove(&(record.key.clone(), occurrence))
            {
                // A crashed write that emitted only while folding is made again once all of that
                // is: any cut from there on is one it could have had.
                if replay.cut.is_none() && replay.written.is_empty() {
                    self.replay = None;
                }
                continue;
            }
            origins.push(
                Origin::Write {
                    writer: self.writer,
                    shard: self.shard,
                    epoch: self.epoch + 1,
                    occurrence,
                    cut: cut.cloned(),
                }
                .encode(),
            );
            kept.push(record);
        }
        (kept, origins)
    }

    /// The broker acknowledged records (`ends`: per partition, the offset after them).
    pub(crate) fn delivered(&mut self, ends: &BTreeMap<i32, i64>) {
        self.frontier.advance(ends);
    }

    /// What the checkpoint of the current write keeps.
    pub(crate) fn mark_of_write(&self) -> SinkMark {
        SinkMark {
            epoch: self.epoch + 1,
            scan_from: self.frontier.positions(),
        }
    }

    /// The current write's checkpoint is in the changelog: the next epoch begins.
    pub(crate) fn written(&mut self) {
        self.epoch += 1;
        self.occurrences.clear();
        self.replay = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> Record {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            timestamp: 0,
            partition: -1,
            offset: 0,
            headers: Vec::new(),
        }
    }

    fn keys(records: &[Record]) -> Vec<&[u8]> {
        records.iter().filter_map(|r| r.key.as_deref()).collect()
    }

    /// A shard restored at epoch 4 whose write 5 got `written` out before a crash.
    fn replaying(written: &[(&str, u32)], cut: Option<BTreeMap<i32, i64>>) -> ExactOutput {
        let replay = Replay {
            written: written
                .iter()
                .map(|(k, n)| (Some(k.as_bytes().to_vec()), *n))
                .collect(),
            cut,
            since: Instant::now(),
        };
        ExactOutput::new(7, 0, 4, Frontier::from_positions(&[(0, 10)]), Some(replay))
    }

    #[test]
    fn a_crashed_write_is_made_again_only_at_its_cut() {
        let cut = BTreeMap::from([(0, 100)]);
        let mut out = replaying(&[("a", 0), ("b", 0)], Some(cut.clone()));
        assert_eq!(out.cut(), Some(&cut));
        // Rows folded in short of the cut: still replaying, whatever they match.
        let (kept, _) = out.mark(vec![record("c")], None);
        assert_eq!(keys(&kept), [b"c"]);
        assert!(out.replaying());
        // The write at the cut leaves out what the crashed one got out, under epoch 5.
        let (kept, origins) = out.mark(
            vec![record("a"), record("b"), record("d")],
            Some(&vec![(0, 100)]),
        );
        assert_eq!(keys(&kept), [b"d"]);
        match Origin::decode(&origins[0]).unwrap() {
            Origin::Write {
                epoch,
                occurrence,
                cut,
                ..
            } => {
                assert_eq!((epoch, occurrence, cut), (5, 0, Some(vec![(0, 100)])));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            out.replaying(),
            "replaying until the write's checkpoint is in"
        );
        out.written();
        assert!(!out.replaying());
        assert_eq!(out.mark_of_write().epoch, 6);
    }

    #[test]
    fn a_crashed_write_without_a_cut_is_made_again_once_all_it_emitted_is() {
        let mut out = replaying(&[("a", 0), ("a", 1)], None);
        assert_eq!(out.cut(), None);
        let (kept, _) = out.mark(vec![record("a"), record("b")], None);
        assert_eq!(keys(&kept), [b"b"]);
        assert!(
            out.replaying(),
            "the second record of a in that write is still to come"
        );
        let (kept, _) = out.mark(vec![record("a"), record("a")], None);
        assert_eq!(keys(&kept), [b"a"], "the third record of a is new");
        assert!(!out.replaying());
    }

    #[test]
    fn a_replay_that_cannot_finish_is_given_up() {
        let mut out = replaying(&[("a", 0), ("b", 0)], Some(BTreeMap::from([(0, 100)])));
        assert!(!out.replaying_for(Duration::from_secs(3600)));
        assert!(out.replaying_for(Duration::ZERO));
        assert_eq!(out.abandon_replay(), 2);
        assert!(!out.replaying() && out.cut().is_none());
        // From there on every record is written, under the next epoch.
        let (kept, _) = out.mark(vec![record("a")], Some(&vec![(0, 90)]));
        assert_eq!(keys(&kept), [b"a"]);
    }
}
