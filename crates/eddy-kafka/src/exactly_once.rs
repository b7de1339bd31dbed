//! Stateless persistent queries with exactly-once output on a broker without transactions. Every
//! output record carries its origin (the input record it was made from, and its place among that
//! record's rows); after each batch the sink acknowledged, a checkpoint per input partition (the next
//! input offset, and from where in each output partition later records can be) goes to the query's
//! checkpoint topic. When partitions are assigned — after a crash, a restart, a move to another
//! server — the input resumes from the checkpoints, and the output from their scan positions on is
//! read back: rows whose origin is already there are processed again but not written again.
//!
//! What this cannot give without transactions: a server that is cut off from the group while it
//! still writes (a zombie) is not fenced, and output readers see records as soon as they are written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, external_err};
use eddy_runtime::changelog::{Checkpoint, SinkMark};
use eddy_runtime::format::DecodeError;
use eddy_runtime::{PersistentQuery, ProcessedBatch, Record, RecordRef, TopicAdmin};

use crate::cluster::{Deliveries, InternalTopic, KafkaCluster, kafka_err};
use crate::consume::{Reader, Step, commit, run};
use crate::crash_point;
use crate::delivery::Halt;
use crate::delivery_error::DeliveryError;
use crate::internal_topics::checkpoint_topic;
use crate::ledger::{Frontier, scan, settle_producer};
use crate::origin::{Origin, writer_id};
use crate::poll::next_offsets;
use crate::query_stats::{QueryStats, bytes_of};
use crate::query_task::{QueryTask, TaskConfig};
use crate::rebalance::{Rebalance, Rebalancing};
use crate::supervisor::Failure;

/// Batches produced but not yet acknowledged, at most.
const IN_FLIGHT: usize = 4;

/// A produced batch waiting for its acknowledgements, then for its checkpoints.
struct InFlight {
    sent: std::result::Result<Deliveries, DeliveryError>,
    produced: u64,
    /// Next offset to consume, per input partition.
    offsets: BTreeMap<i32, i64>,
}

/// An input row's identity in the output: input partition, input offset, its place among the rows
/// made from that record.
type RowId = (i32, i64, u32);

/// What the loop and the rebalance callbacks share.
#[derive(Default)]
struct Progress {
    in_flight: VecDeque<InFlight>,
    frontier: Frontier,
    /// Rows already in the output that input read again would make again, with where they are in
    /// the output: until the input is past them, checkpoints keep them in the range to read back.
    written: HashMap<RowId, (i32, i64)>,
}

/// An exactly-once stateless query's task.
pub(crate) struct ExactlyOnce {
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    topic: String,
    checkpoints: String,
    writer: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<QueryStats>,
    /// Where an input partition without a checkpoint starts (`earliest` or `latest`).
    offset_reset: String,
    progress: Mutex<Progress>,
    broken: Mutex<Option<String>>,
}

/// Starts an exactly-once stateless persistent query (consumer settings in `config`).
pub(crate) fn start(
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    task: &TaskConfig,
    config: ClientConfig,
    name: String,
) -> Result<QueryTask> {
    let topic = query.pipeline.source().topic.clone();
    let inputs = cluster
        .partitions(&topic)?
        .ok_or_else(|| external_err!("Kafka: the query's input topic {topic} does not exist"))?;
    let checkpoints = checkpoint_topic(&task.group_id);
    if cluster.partitions(&checkpoints)?.is_none() {
        // Only the latest checkpoint of each partition is read.
        cluster.create_internal_topic(
            &checkpoints,
            InternalTopic::Query,
            inputs,
            &[("cleanup.policy", "compact")],
        )?;
    }
    // Eager rebalancing: revoked partitions are settled before another member gets them.
    let config = config
        .clone()
        .set("partition.assignment.strategy", "range")
        .clone();
    let writer = writer_id(&task.group_id);
    let offset_reset = task.offset_reset.clone();
    let metrics = task.metrics;
    QueryTask::supervised(name, query.id.clone(), task, move |stop, stats| {
        // Records an earlier attempt handed the producer are in the output before it is read back.
        settle_producer(&cluster)?;
        let task = Arc::new(ExactlyOnce {
            cluster: cluster.clone(),
            query: query.clone(),
            topic: topic.clone(),
            checkpoints: checkpoints.clone(),
            writer,
            stop: stop.clone(),
            stats: stats.clone(),
            offset_reset: offset_reset.clone(),
            progress: Mutex::new(Progress {
                frontier: Frontier::at_end(&cluster, &query.sink_spec.topic)
                    .map_err(|e| e.to_string())?,
                ..Progress::default()
            }),
            broken: Mutex::new(None),
        });
        let consumer: BaseConsumer<Rebalance<ExactlyOnce>> = config
            .create_with_context(Rebalance(task.clone()))
            .map_err(|e| format!("cannot create the query's consumer: {e}"))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
        let mut step = ExactStep {
            task: &task,
            consumer: &consumer,
        };
        run(
            stop,
            &mut Reader::new(&consumer, None).counting(metrics.then_some(&stats.consumed_bytes)),
            &mut step,
        )
        .or_else(Halt::into_result)
    })
}

/// The loop's step of an exactly-once stateless query.
struct ExactStep<'a> {
    task: &'a ExactlyOnce,
    consumer: &'a BaseConsumer<Rebalance<ExactlyOnce>>,
}

impl Step for ExactStep<'_> {
    fn ready(&mut self) -> Result<bool, Halt> {
        match self.task.take_broken() {
            // What was handed over is settled; the next attempt resumes after it.
            Some(broken) => {
                let _ = self.task.settle_all(self.consumer);
                Err(Halt::Failed(broken))
            }
            None => Ok(true),
        }
    }

    fn process<R: RecordRef>(&mut self, _: usize, batch: Vec<R>) -> Result<(), Halt> {
        self.task
            .produce(self.consumer, batch)
            .map_err(Halt::Failed)
    }

    /// A turn that read nothing settles what is in flight.
    fn settle(&mut self, polled: usize) -> Result<(), Halt> {
        if polled == 0 {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Halt> {
        self.task.settle_all(self.consumer).map_err(Halt::Failed)
    }
}

impl Rebalancing for ExactlyOnce {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                match self.resume(consumer, &partitions) {
                    Ok(starts) => {
                        for (p, o) in &starts {
                            let _ = tpl.set_partition_offset(&self.topic, *p, Offset::Offset(*o));
                        }
                        tracing::info!(query = %self.query.id, ?partitions, "partitions assigned");
                        if let Err(e) = consumer.assign(tpl) {
                            self.break_with(format!("taking the assigned partitions failed: {e}"));
                        }
                        // The group's offsets follow the checkpoints, for tools that measure lag.
                        let topic = self.topic.as_str();
                        commit(
                            consumer,
                            &self.query.id,
                            starts.iter().map(|(p, o)| (topic, *p, *o)),
                        );
                    }
                    // Nothing is assigned: the attempt ends and the next one joins the group again.
                    Err(e) => {
                        self.break_with(format!("resuming the assigned partitions failed: {e}"))
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Still ours until unassigned: what is in flight is settled, so the next owner's
                // checkpoints and scan see it.
                if let Err(e) = self.settle_all(consumer) {
                    self.break_with(e);
                }
                self.lock().written.clear();
                tracing::info!(query = %self.query.id, "partitions revoked");
                let _ = consumer.unassign();
            }
            other => self.break_with(format!("rebalancing failed: {other:?}")),
        }
    }

    fn broken(&self) -> &Mutex<Option<String>> {
        &self.broken
    }
}

impl ExactlyOnce {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn break_with(&self, message: String) {
        tracing::error!(query = %self.query.id, "{message}");
        *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    /// Where each assigned partition resumes (its checkpoint, written now for a partition that has
    /// none), and the rows the output already holds from input after those positions.
    fn resume(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        let mut checkpoints = self.read_checkpoints(partitions)?;
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !checkpoints.contains_key(p))
            .collect();
        if !missing.is_empty() {
            // Before anything of these partitions is written: where they start, and that nothing of
            // this query can be in the output after the current ends.
            let frontier = Frontier::at_end(&self.cluster, &self.query.sink_spec.topic)?;
            let mut first = Vec::new();
            for p in missing {
                let start = self.first_offset(consumer, p)?;
                first.push((p, start));
                checkpoints.insert(p, (start, frontier.clone()));
            }
            self.write_checkpoints(&first, &frontier)?.wait()?;
        }
        let mut from: Option<Frontier> = None;
        for (_, f) in checkpoints.values() {
            match &mut from {
                Some(from) => from.earliest(f),
                None => from = Some(f.clone()),
            }
        }
        let starts: BTreeMap<i32, i64> = checkpoints.iter().map(|(p, (o, _))| (*p, *o)).collect();
        let mut written = HashMap::new();
        if let Some(from) = from {
            scan(
                &self.cluster,
                &self.query.sink_spec.topic,
                &from,
                self.writer,
                &self.stop,
                |origin, _, at| {
                    if let Origin::Row {
                        partition,
                        offset,
                        index,
                        ..
                    } = origin
                        && starts.get(&partition).is_some_and(|s| offset >= *s)
                    {
                        written.insert((partition, offset, index), at);
                    }
                },
            )?;
        }
        if !written.is_empty() {
            tracing::info!(
                query = %self.query.id,
                rows = written.len(),
                "the output already holds rows of input after the checkpoints: they are not written again"
            );
        }
        self.lock().written.extend(written);
        Ok(starts)
    }

    /// The latest checkpoint of each of `partitions` that has one: next input offset, and where the
    /// output is to be read back from.
    fn read_checkpoints(&self, partitions: &[i32]) -> Result<BTreeMap<i32, (i64, Frontier)>> {
        let ends = self.cluster.end_offsets(&self.checkpoints)?;
        let from: BTreeMap<i32, i64> = partitions
            .iter()
            .filter_map(|p| {
                let end = *ends.get(usize::try_from(*p).ok()?)?;
                (end > 0).then_some((*p, end - 1))
            })
            .collect();
        let mut found = BTreeMap::new();
        let mut bad = None;
        self.cluster.read_from(
            &self.checkpoints,
            &from,
            Duration::from_secs(60),
            Some(&self.stop),
            |m| {
                let read = m.payload().map(Checkpoint::decode);
                match read {
                    Some(Ok(c)) => {
                        let next = c.positions.iter().find(|(p, _)| *p == m.partition());
                        if let (Some((_, next)), Some(sink)) = (next, c.sink) {
                            found.insert(
                                m.partition(),
                                (*next, Frontier::from_positions(&sink.scan_from)),
                            );
                        }
                    }
                    Some(Err(e)) => bad = Some(e),
                    None => {}
                }
            },
        )?;
        match bad {
            // A checkpoint that cannot be read is not guessed around.
            Some(e) => Err(external_err!("{}: {e}", self.checkpoints)),
            None => Ok(found),
        }
    }

    /// Where a partition without a checkpoint starts: the group's committed offset (a query that
    /// ran at-least-once before), else `auto.offset.reset`.
    fn first_offset(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        partition: i32,
    ) -> Result<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map_err(kafka_err)?;
        if let Some(Offset::Offset(o)) = committed
            .find_partition(&self.topic, partition)
            .map(|e| e.offset())
        {
            return Ok(o);
        }
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, partition, Duration::from_secs(10))
            .map_err(kafka_err)?;
        Ok(if self.offset_reset == "latest" {
            high
        } else {
            low
        })
    }

    /// Hands the producer a checkpoint per input partition (to the same partition of the
    /// checkpoint topic): the next input offset, and `frontier`.
    fn write_checkpoints(
        &self,
        next: &[(i32, i64)],
        frontier: &Frontier,
    ) -> std::result::Result<Deliveries, DeliveryError> {
        let scan_from = frontier.positions();
        let records: Vec<Record> = next
            .iter()
            .map(|(p, o)| Record {
                key: None,
                value: Some(
                    Checkpoint {
                        positions: vec![(*p, *o)],
                        stream_time: 0,
                        sink: Some(SinkMark {
                            epoch: 0,
                            scan_from: scan_from.clone(),
                        }),
                    }
                    .encode(),
                ),
                timestamp: crate::cluster::now_millis(),
                partition: *p,
                offset: 0,
                headers: Vec::new(),
            })
            .collect();
        self.cluster.send(&self.checkpoints, &records)
    }

    /// Hands a batch's output to the producer; settles the oldest batch in flight past
    /// [`IN_FLIGHT`].
    fn produce<R: RecordRef>(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        batch: Vec<R>,
    ) -> std::result::Result<(), Failure> {
        let (records, origins) = self.output(&batch);
        self.stats
            .consumed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let offsets = next_offsets(&batch);
        drop(batch);
        let sent = self
            .cluster
            .send_with_origins(&self.query.sink_spec.topic, &records, &origins);
        let oldest = {
            let mut progress = self.lock();
            progress.in_flight.push_back(InFlight {
                sent,
                produced: records.len() as u64,
                offsets,
            });
            if progress.in_flight.len() > IN_FLIGHT {
                progress.in_flight.pop_front()
            } else {
                None
            }
        };
        match oldest {
            Some(oldest) => self.settle(consumer, oldest),
            None => Ok(()),
        }
    }

    /// The output records of a batch, each with its origin, leaving out those already written. When
    /// the batch fails as a whole, its records are processed one at a time, and a record that fails
    /// by itself is skipped, counted and logged.
    fn output<R: RecordRef>(&self, batch: &[R]) -> (Vec<Record>, Vec<Vec<u8>>) {
        let (query, stats) = (&self.query, &self.stats);
        let process = |records: &[R]| {
            query.pipeline.process(records).and_then(|p| {
                stats.record_errors(&query.id, &self.topic, &p, records);
                Ok((query.sink_spec.rows(&p)?, p))
            })
        };
        let mut out = (Vec::new(), Vec::new());
        match process(batch) {
            Ok((rows, processed)) => self.mark(rows, &processed, &mut out),
            Err(e) => {
                tracing::warn!(query = %query.id, "a batch failed ({e}); processing its records one by one");
                for m in batch {
                    match process(std::slice::from_ref(m)) {
                        Ok((rows, processed)) => self.mark(rows, &processed, &mut out),
                        Err(e) => stats.skipped(
                            &query.id,
                            &self.topic,
                            &DecodeError::processing(m.partition(), m.offset(), &e.to_string()),
                            bytes_of(m),
                        ),
                    }
                }
            }
        }
        out
    }

    /// Gives each output row its origin and leaves out the rows already written.
    fn mark(
        &self,
        rows: Vec<(usize, Record)>,
        processed: &ProcessedBatch,
        out: &mut (Vec<Record>, Vec<Vec<u8>>),
    ) {
        let same = |a: usize, b: usize| {
            processed.partition[a] == processed.partition[b]
                && processed.offset[a] == processed.offset[b]
        };
        // Rows made from one record are next to each other: a row's index is its distance from the
        // first of them.
        let mut first = Vec::with_capacity(processed.offset.len());
        for i in 0..processed.offset.len() {
            first.push(if i > 0 && same(i - 1, i) {
                first[i - 1]
            } else {
                i
            });
        }
        let mut progress = self.lock();
        for (i, record) in rows {
            let id: RowId = (
                processed.partition[i],
                processed.offset[i],
                u32::try_from(i - first[i]).unwrap_or(u32::MAX),
            );
            if !progress.written.is_empty() && progress.written.remove(&id).is_some() {
                continue;
            }
            out.1.push(
                Origin::Row {
                    writer: self.writer,
                    partition: id.0,
                    offset: id.1,
                    index: id.2,
                }
                .encode(),
            );
            out.0.push(record);
        }
    }

    fn settle_all(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
    ) -> std::result::Result<(), Failure> {
        loop {
            let next = self.lock().in_flight.pop_front();
            match next {
                Some(batch) => self.settle(consumer, batch)?,
                None => return Ok(()),
            }
        }
    }

    /// Waits for a batch's acknowledgements, then checkpoints its input partitions. A batch the
    /// sink did not take ends the attempt (after every other batch in flight is settled one way or
    /// the other): the next one reads back what got through.
    fn settle(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        batch: InFlight,
    ) -> std::result::Result<(), Failure> {
        let ends = match batch.sent.and_then(Deliveries::wait_ends) {
            Ok(ends) => ends,
            Err(e) => {
                let rest: Vec<InFlight> = self.lock().in_flight.drain(..).collect();
                for other in rest {
                    let _ = other.sent.and_then(Deliveries::wait_ends);
                }
                return Err(format!(
                    "producing to {} failed: {e}",
                    self.query.sink_spec.topic
                ));
            }
        };
        crash_point::pass("rows-settled");
        let frontier = {
            let mut progress = self.lock();
            progress.frontier.advance(&ends);
            // Rows read back that the input has passed without making them again are not waited for.
            progress
                .written
                .retain(|(p, o, _), _| batch.offsets.get(p).is_none_or(|next| o >= next));
            progress
                .frontier
                .held_at(progress.written.values().copied())
        };
        let next: Vec<(i32, i64)> = batch.offsets.iter().map(|(p, o)| (*p, *o)).collect();
        // Not waited for: a checkpoint that does not arrive leaves an earlier one, which is as right
        // (it only has more to read back).
        if let Err(e) = self.write_checkpoints(&next, &frontier) {
            tracing::warn!(query = %self.query.id, "writing a checkpoint failed: {e}");
        }
        self.stats
            .produced
            .fetch_add(batch.produced, Ordering::Relaxed);
        // The group's offsets are for tools that watch lag; the checkpoints are what resumes.
        let topic = self.topic.as_str();
        commit(
            consumer,
            &self.query.id,
            next.iter().map(|(p, o)| (topic, *p, *o)),
        );
        self.stats.progressed();
        Ok(())
    }
}
