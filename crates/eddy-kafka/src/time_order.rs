//! Timestamp order across a join's inputs: records are buffered per input partition and handed out
//! oldest first, and only while every assigned partition either has records buffered or has none
//! left to fetch (its position is at its end), as Kafka Streams' tasks do — so what a join gives does
//! not depend on which topic the consumer happened to fetch first. A partition that has records to
//! fetch but none buffered holds back the others' records newer than the latest it gave, for at most
//! [`MAX_IDLE`]. What is buffered of a partition the consumer no longer has (revoked) is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use eddy_runtime::{Record, RecordRef};

/// How long records wait for a partition that is behind but has nothing buffered.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// Records of several topics waiting to be processed in time order.
pub(crate) struct TimeOrder {
    topics: Vec<String>,
    /// Buffered records by input (index into `topics`) and partition.
    queues: BTreeMap<(usize, i32), VecDeque<Record>>,
    /// Since when a partition behind has held the others back.
    held_since: Option<Instant>,
    /// The latest record time each partition gave.
    latest: BTreeMap<(usize, i32), i64>,
}

impl TimeOrder {
    pub(crate) fn new(topics: Vec<String>) -> Self {
        TimeOrder {
            topics,
            queues: BTreeMap::new(),
            held_since: None,
            latest: BTreeMap::new(),
        }
    }

    /// Buffers records read from `topic`.
    pub(crate) fn push<R: RecordRef>(&mut self, topic: &str, records: &[R]) {
        let Some(input) = self.topics.iter().position(|t| t == topic) else {
            return;
        };
        for r in records {
            let latest = self
                .latest
                .entry((input, r.partition()))
                .or_insert(i64::MIN);
            *latest = (*latest).max(r.timestamp());
            self.queues
                .entry((input, r.partition()))
                .or_default()
                .push_back(Record::copy_of(r));
        }
    }

    /// The records that can be processed now, oldest first, as runs of one input each.
    pub(crate) fn ready<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Vec<(usize, Vec<Record>)> {
        let behind = self.behind_keeping_assigned(consumer);
        // A partition behind with nothing buffered may still give records as old as the latest it
        // gave (a partition's records come in time order, mostly): older ones can go.
        let horizon_of = |queues: &BTreeMap<(usize, i32), VecDeque<Record>>,
                          latest: &BTreeMap<(usize, i32), i64>| {
            behind
                .iter()
                .filter(|k| queues.get(k).is_none_or(VecDeque::is_empty))
                .map(|k| latest.get(k).copied().unwrap_or(i64::MIN))
                .min()
        };
        let mut horizon = horizon_of(&self.queues, &self.latest);
        let waited = match horizon {
            None => {
                self.held_since = None;
                false
            }
            // Waited long enough: what is buffered goes, oldest first.
            Some(_) => self.held_since.get_or_insert_with(Instant::now).elapsed() >= MAX_IDLE,
        };
        let mut runs: Vec<(usize, Vec<Record>)> = Vec::new();
        loop {
            let oldest = self
                .queues
                .iter()
                .filter_map(|(k, q)| q.front().map(|r| (r.timestamp, *k)))
                .min();
            let Some((time, key)) = oldest else { break };
            if !waited && horizon.is_some_and(|h| time > h) {
                break;
            }
            let Some(record) = self.queues.get_mut(&key).and_then(VecDeque::pop_front) else {
                break;
            };
            match runs.last_mut() {
                Some((input, records)) if *input == key.0 => records.push(record),
                _ => runs.push((key.0, vec![record])),
            }
            // A partition that ran dry while more of it is to come holds the others back too.
            horizon = horizon_of(&self.queues, &self.latest);
            if horizon.is_some() {
                self.held_since.get_or_insert_with(Instant::now);
            }
        }
        runs
    }

    /// The assigned partitions with records left to fetch. What is buffered of partitions no longer
    /// assigned (revoked since it was fetched) is dropped: their next owner reads them.
    fn behind_keeping_assigned<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Vec<(usize, i32)> {
        let Ok(positions) = consumer.position() else {
            return Vec::new();
        };
        let mut assigned = Vec::new();
        let mut behind = Vec::new();
        for e in positions.elements() {
            let Some(input) = self.topics.iter().position(|t| t == e.topic()) else {
                continue;
            };
            let key = (input, e.partition());
            assigned.push(key);
            let ends = cached_watermarks(consumer, e.topic(), e.partition());
            let at_end = match (e.offset(), ends) {
                (Offset::Offset(o), Some((_, high))) => o >= high,
                (_, Some((low, high))) => high <= low,
                (_, None) => false,
            };
            if !at_end {
                behind.push(key);
            }
        }
        self.queues.retain(|k, _| assigned.contains(k));
        self.latest.retain(|k, _| assigned.contains(k));
        behind
    }
}

/// A partition's low and high watermarks as the consumer's last fetch of it reported them (no
/// request: asking the broker takes too long to do in the processing loop); `None` before a fetch.
fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; librdkafka only reads `topic` (a
    // NUL-terminated string that outlives the call) and writes the two integers it is given.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}
