//! Timestamp order across a join's inputs, per task as Kafka Streams orders them: records are
//! buffered per input partition and handed out oldest first within their task — the partitions of
//! one number across the inputs, for a join that joins partition by partition; every partition, for
//! a foreign-key join — and only while every assigned partition of the task either has records
//! buffered or has none left to fetch (its position is at its end), so what a join gives does not
//! depend on which topic the consumer happened to fetch first. A partition that has records to fetch
//! but none buffered holds back its task's records newer than the latest it gave, until it has had
//! nothing buffered for [`MAX_LAGGING`]. A partition at its end with nothing buffered holds them back
//! for the query's `max.task.idle.ms` since it ran dry (Kafka Streams' setting; 0, its default, does
//! not wait): records its producer is writing at that moment may be older than the others'. A
//! partition's wait runs only while it holds records of its task back, and starts again whenever it
//! gives records: a quiet spell before the records come does not count, and a partition that keeps
//! running dry while its records flow (every micro-batch takes what it had) never lets the others
//! run ahead of it. What is buffered of a partition the consumer no longer has (revoked) is dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use eddy_runtime::{Pipeline, Record, RecordRef};
use eddy_sql::join::JoinKind;

/// How long records wait for a partition that is behind but has nothing buffered.
const MAX_LAGGING: Duration = Duration::from_secs(5);

/// An input (index into the topics) and a partition of it.
type Key = (usize, i32);

/// Records of several topics waiting to be processed in time order.
pub(crate) struct TimeOrder {
    topics: Vec<String>,
    /// Whether the partitions of one number form a task (a join partition by partition), or all
    /// partitions one task (a foreign-key join).
    by_partition: bool,
    /// Buffered records by input and partition.
    queues: BTreeMap<Key, VecDeque<Record>>,
    /// The latest record time each partition gave.
    latest: BTreeMap<Key, i64>,
    /// How long a partition at its end with nothing buffered holds the others back.
    idle: Duration,
    /// Since when each partition, with nothing buffered, has held back records of its task.
    holding_since: BTreeMap<Key, Instant>,
    /// The partitions whose wait ran out since they last gave records (logged once each).
    gone_on_without: BTreeSet<Key>,
}

impl TimeOrder {
    /// Records of `topics`, ordered per partition number when `by_partition` (else all together), a
    /// partition that ran dry holding the others back for `idle`.
    pub(crate) fn new(topics: Vec<String>, by_partition: bool, idle: Duration) -> Self {
        TimeOrder {
            topics,
            by_partition,
            queues: BTreeMap::new(),
            latest: BTreeMap::new(),
            idle,
            holding_since: BTreeMap::new(),
            gone_on_without: BTreeSet::new(),
        }
    }

    /// The time order of a pipeline's inputs (`topics`) when it has several, a join's: a foreign-key
    /// join's partitions all together, another join's partition by partition.
    pub(crate) fn of(pipeline: &Pipeline, topics: &[String], idle: Duration) -> Option<Self> {
        let join = pipeline.plan.join.as_ref().filter(|_| topics.len() > 1)?;
        let by_partition = join.stages().iter().all(|s| s.kind != JoinKind::ForeignKey);
        Some(TimeOrder::new(topics.to_vec(), by_partition, idle))
    }

    /// The task a partition belongs to.
    fn task(&self, (_, partition): Key) -> i32 {
        if self.by_partition { partition } else { 0 }
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
            self.holding_since.remove(&(input, r.partition()));
            self.gone_on_without.remove(&(input, r.partition()));
            self.queues
                .entry((input, r.partition()))
                .or_default()
                .push_back(Record::copy_of(r));
        }
    }

    /// The records that can be processed now, oldest first within each task, as runs of one input
    /// each.
    pub(crate) fn ready<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Vec<(usize, Vec<Record>)> {
        // Without the consumer's positions nothing can be known to be in order: all waits.
        let Some(assigned) = self.assigned_keeping_theirs(consumer) else {
            return Vec::new();
        };
        let tasks: BTreeSet<i32> = assigned.iter().map(|(k, _)| self.task(*k)).collect();
        // Per task: how far its records can go (`None`: no partition holds them back).
        let mut horizons: BTreeMap<i32, Option<i64>> = tasks
            .iter()
            .map(|task| (*task, self.horizon(*task, &assigned)))
            .collect();
        let mut runs: Vec<(usize, Vec<Record>)> = Vec::new();
        loop {
            let oldest = self
                .queues
                .iter()
                .filter_map(|(k, q)| q.front().map(|r| (r.timestamp, *k)))
                .filter(|(time, k)| {
                    horizons
                        .get(&self.task(*k))
                        .is_none_or(|h| h.is_none_or(|h| *time <= h))
                })
                .min();
            let Some((_, key)) = oldest else { break };
            let Some(record) = self.queues.get_mut(&key).and_then(VecDeque::pop_front) else {
                break;
            };
            match runs.last_mut() {
                Some((input, records)) if *input == key.0 => records.push(record),
                _ => runs.push((key.0, vec![record])),
            }
            // A partition that ran dry holds the rest of its task back too.
            let task = self.task(key);
            let horizon = self.horizon(task, &assigned);
            horizons.insert(task, horizon);
        }
        // The waits run while records are held back: from now for the partitions that hold back
        // what their tasks have left; not for a task with nothing buffered (a quiet spell before
        // the records come does not count).
        let now = Instant::now();
        for task in tasks {
            let waiting = self
                .queues
                .iter()
                .any(|(k, q)| self.task(*k) == task && !q.is_empty());
            for &(key, _) in &assigned {
                if self.task(key) != task {
                    continue;
                }
                let empty = self.queues.get(&key).is_none_or(VecDeque::is_empty);
                if waiting && empty {
                    self.holding_since.entry(key).or_insert(now);
                } else {
                    self.holding_since.remove(&key);
                }
            }
        }
        runs
    }

    /// The latest time up to which `task`'s records can go while a partition of it with nothing
    /// buffered may still give records as old as the latest it gave (a partition's records come in
    /// time order, mostly): one with records left to fetch that has held the others back for less
    /// than [`MAX_LAGGING`] (or `idle`, if longer), or one at its end that has for less than
    /// `idle`. `None` when none holds the others back.
    fn horizon(&mut self, task: i32, assigned: &[(Key, bool)]) -> Option<i64> {
        let mut horizon = None;
        for &(key, at_end) in assigned {
            if self.task(key) != task || self.queues.get(&key).is_some_and(|q| !q.is_empty()) {
                continue;
            }
            let wait = if at_end {
                self.idle
            } else {
                MAX_LAGGING.max(self.idle)
            };
            let waited = self
                .holding_since
                .get(&key)
                .map_or(Duration::ZERO, Instant::elapsed);
            if waited < wait {
                let latest = self.latest.get(&key).copied().unwrap_or(i64::MIN);
                horizon = Some(horizon.map_or(latest, |h: i64| h.min(latest)));
            } else if !at_end && self.gone_on_without.insert(key) {
                // Kafka Streams counts this as enforced processing: the other side's records may
                // meet this one's late now.
                tracing::info!(
                    topic = self.topics[key.0],
                    partition = key.1,
                    "a join goes on without a partition that has records to fetch but gave none for {wait:?}"
                );
            }
        }
        horizon
    }

    /// The assigned partitions, each with whether it is at its end (nothing left to fetch); `None`
    /// when the consumer cannot tell its positions. What is buffered of partitions no longer
    /// assigned (revoked since it was fetched) is dropped: their next owner reads them.
    fn assigned_keeping_theirs<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Option<Vec<(Key, bool)>> {
        let positions = match consumer.position() {
            Ok(positions) => positions,
            Err(e) => {
                tracing::debug!("the join's consumer cannot tell its positions: {e}");
                return None;
            }
        };
        let mut assigned = Vec::new();
        for e in positions.elements() {
            let Some(input) = self.topics.iter().position(|t| t == e.topic()) else {
                continue;
            };
            let ends = cached_watermarks(consumer, e.topic(), e.partition());
            let at_end = match (e.offset(), ends) {
                (Offset::Offset(o), Some((_, high))) => o >= high,
                (_, Some((low, high))) => high <= low,
                (_, None) => false,
            };
            assigned.push(((input, e.partition()), at_end));
        }
        let mine = |k: &Key| assigned.iter().any(|(a, _)| a == k);
        self.queues.retain(|k, _| mine(k));
        self.latest.retain(|k, _| mine(k));
        self.holding_since.retain(|k, _| mine(k));
        self.gone_on_without.retain(mine);
        Some(assigned)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::TopicPartitionList;
    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;

    fn record(partition: i32, timestamp: i64) -> Record {
        Record {
            key: None,
            value: None,
            timestamp,
            partition,
            offset: 0,
            headers: Vec::new(),
        }
    }

    /// (input, partition, time) of what `ready` gives.
    fn given(runs: Vec<(usize, Vec<Record>)>) -> Vec<(usize, i32, i64)> {
        runs.into_iter()
            .flat_map(|(i, rs)| rs.into_iter().map(move |r| (i, r.partition, r.timestamp)))
            .collect()
    }

    /// A consumer assigned the two partitions of the mock cluster's empty topics `a` and `b`, once
    /// it knows they are at their end.
    fn consumer_at_ends(
        mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    ) -> BaseConsumer {
        let mut tpl = TopicPartitionList::new();
        for t in ["a", "b"] {
            mock.create_topic(t, 2, 1).expect("topic");
            for p in 0..2 {
                tpl.add_partition_offset(t, p, Offset::Beginning)
                    .expect("offset");
            }
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "time-order")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tpl
            .elements()
            .iter()
            .any(|e| cached_watermarks(&consumer, e.topic(), e.partition()).is_none())
        {
            assert!(Instant::now() < deadline, "no fetch of every partition");
            let _ = consumer.poll(Duration::from_millis(50));
        }
        consumer
    }

    #[test]
    fn a_partition_that_ran_dry_holds_its_task_back_for_max_task_idle() {
        let mock = MockCluster::new(1).expect("mock cluster");
        let consumer = consumer_at_ends(&mock);
        let topics = vec!["a".to_string(), "b".to_string()];

        // 0 (Kafka Streams' default): a side at its end holds nothing back.
        let mut order = TimeOrder::new(topics.clone(), true, Duration::ZERO);
        order.push("a", &[record(0, 100)]);
        assert_eq!(given(order.ready(&consumer)), [(0, 0, 100)]);

        // Waiting: `b`, dry, holds `a`'s newer record back, and a record of `b` that comes
        // meanwhile goes first; `b` dry again holds `a` back again.
        let mut order = TimeOrder::new(topics.clone(), true, Duration::from_secs(60));
        order.push("a", &[record(0, 100)]);
        assert_eq!(given(order.ready(&consumer)), []);
        order.push("b", &[record(0, 50)]);
        assert_eq!(given(order.ready(&consumer)), [(1, 0, 50)]);
        assert_eq!(given(order.ready(&consumer)), []);
        // `b` gives a newer record: `a`'s goes, and `a`, dry now, holds `b`'s back. Partition 1
        // of either, dry too, is another task: it holds nothing of partition 0 back.
        order.push("b", &[record(0, 150)]);
        assert_eq!(given(order.ready(&consumer)), [(0, 0, 100)]);

        // A partition's wait starts again whenever it gives records: `b`, running dry after each of
        // its records while those keep coming, holds `a` back for longer than one wait in all.
        let mut order = TimeOrder::new(topics.clone(), true, Duration::from_millis(40));
        order.push("a", &[record(0, 100)]);
        assert_eq!(given(order.ready(&consumer)), []);
        for t in 50..56 {
            std::thread::sleep(Duration::from_millis(15));
            order.push("b", &[record(0, t)]);
            assert_eq!(given(order.ready(&consumer)), [(1, 0, t)]);
        }
        assert_eq!(given(order.ready(&consumer)), []);

        // A quiet spell with nothing buffered is no wait: the wait starts when `a` has a record.
        let mut order = TimeOrder::new(topics.clone(), true, Duration::from_millis(40));
        assert_eq!(given(order.ready(&consumer)), []);
        std::thread::sleep(Duration::from_millis(60));
        order.push("a", &[record(0, 100)]);
        assert_eq!(given(order.ready(&consumer)), []);

        // A foreign-key join's partitions are one task: partition 1, dry, holds partition 0 back.
        let mut order = TimeOrder::new(topics.clone(), false, Duration::from_secs(60));
        order.push("a", &[record(0, 100)]);
        order.push("b", &[record(0, 150)]);
        assert_eq!(given(order.ready(&consumer)), []);

        // Once the wait is over, what is buffered goes.
        let mut order = TimeOrder::new(topics, true, Duration::from_millis(20));
        order.push("a", &[record(0, 100)]);
        std::thread::sleep(Duration::from_millis(50));
        let mut ready = given(order.ready(&consumer));
        if ready.is_empty() {
            // `b` ran dry at the first call above (the wait starts there).
            std::thread::sleep(Duration::from_millis(50));
            ready = given(order.ready(&consumer));
        }
        assert_eq!(ready, [(0, 0, 100)]);
    }
}
