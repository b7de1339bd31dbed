//! What an exactly-once query already wrote, on a broker without transactions: each of its output
//! records carries its origin (see `origin`), its checkpoints say from where in each output
//! partition its later records can be (a [`Frontier`]), and after a crash the tail of the output
//! from there is read back ([`scan`]) so that what is processed again is not written again.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rdkafka::message::Message;

use eddy_common::Result;
use eddy_runtime::RecordRef;
use eddy_runtime::changelog::Positions;

use crate::cluster::KafkaCluster;
use crate::message_view::MessageView;
use crate::origin::{HEADER, Origin};

/// How long reading back the tail of an output may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a new attempt waits for the records an earlier one left with the producer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Per output partition, the offset from which a writer's records not yet covered by a checkpoint
/// can be: the end of the partition when the writer started, moved past each of its records the
/// broker acknowledged (a producer keeps its records' order within a partition, so later ones land
/// after those).
#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier(BTreeMap<i32, i64>);

impl Frontier {
    /// The ends of `topic`'s partitions now.
    pub(crate) fn at_end(cluster: &KafkaCluster, topic: &str) -> Result<Frontier> {
        let ends = cluster.end_offsets(topic)?;
        Ok(Frontier(
            ends.into_iter()
                .enumerate()
                .map(|(p, end)| (p as i32, end))
                .collect(),
        ))
    }

    /// Moves past records the broker acknowledged (`ends`: per partition, the offset after them).
    pub(crate) fn advance(&mut self, ends: &BTreeMap<i32, i64>) {
        for (p, end) in ends {
            let at = self.0.entry(*p).or_insert(*end);
            *at = (*at).max(*end);
        }
    }

    /// As checkpointed.
    pub(crate) fn positions(&self) -> Positions {
        self.0.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// From checkpointed positions.
    pub(crate) fn from_positions(positions: &[(i32, i64)]) -> Frontier {
        Frontier(positions.iter().copied().collect())
    }

    /// This frontier, held back to records that are still to be read back after a crash (output
    /// partition and offset of each).
    pub(crate) fn held_at(&self, records: impl Iterator<Item = (i32, i64)>) -> Frontier {
        let mut held = self.clone();
        for (p, o) in records {
            let at = held.0.entry(p).or_insert(o);
            *at = (*at).min(o);
        }
        held
    }

    /// The earlier of two frontiers in each partition (what two checkpoints leave to scan).
    pub(crate) fn earliest(&mut self, other: &Frontier) {
        for (p, o) in &other.0 {
            let at = self.0.entry(*p).or_insert(*o);
            *at = (*at).min(*o);
        }
    }
}

/// Waits until the shared producer holds no records an earlier attempt handed it (they are either
/// in the output or failed for good), so a scan sees all of them.
pub(crate) fn settle_producer(cluster: &KafkaCluster) -> std::result::Result<(), String> {
    use rdkafka::producer::Producer;
    cluster
        .producer()
        .flush(SETTLE_TIMEOUT)
        .map_err(|e| format!("records of an earlier attempt are still not delivered: {e}"))
}

/// Reads `topic` from `from` to its end and hands `each` the origin, key, partition and offset of
/// every record `writer` wrote there. Records without an origin, or with one of another writer, are passed over;
/// an origin that cannot be read is a record of another writer.
pub(crate) fn scan(
    cluster: &KafkaCluster,
    topic: &str,
    from: &Frontier,
    writer: u64,
    stop: &AtomicBool,
    mut each: impl FnMut(Origin, Option<&[u8]>, (i32, i64)),
) -> Result<()> {
    cluster.read_from(topic, &from.0, SCAN_TIMEOUT, Some(stop), |m| {
        let Some(view) = MessageView::of(m) else {
            return;
        };
        let origin = (0..view.header_count())
            .filter_map(|i| view.header(i))
            .filter(|(key, _)| *key == HEADER)
            .find_map(|(_, value)| Origin::decode(value?).ok());
        if let Some(origin) = origin.filter(|o| o.writer() == writer) {
            each(origin, m.key(), (m.partition(), m.offset()));
        }
    })
}
