//! Query tasks over Kafka: a consumer feeds micro-batches through a pipeline; persistent queries produce
//! to their sink and commit offsets only after the sink acknowledged (at-least-once; exactly-once
//! ones are in `exactly_once` and `stateful`); push queries hand their rows to a channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_runtime::arrow::array::RecordBatch;
use eddy_runtime::arrow::compute::{filter_record_batch, not};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use eddy_common::{Result, external_err, internal_err};
use eddy_runtime::engine::Properties;
use eddy_runtime::format::DecodeError;
use eddy_runtime::format::limits::cut;
use eddy_runtime::{PersistentQuery, Pipeline, ProcessedBatch, Record, RecordRef, TopicAdmin};
use eddy_sql::statement::SourceKind;

use crate::cluster::{Deliveries, KafkaCluster, base_config, kafka_err};
use crate::delivery::{DeliveryError, Halt, deliver};
use crate::poll::{next_offsets, poll_batch};
use crate::processing_log::ProcessingLog;
use crate::repartition::{Repartitioned, Shuffle, read_topics, unwrap};
use crate::supervisor::{Backoff, Failure, panic_message, supervise};
use crate::table_restore::restore_tables;
use crate::time_order::TimeOrder;
use crate::{exactly_once, stateful, transactional};

/// Stack of a query's thread: evaluating an expression recurses once per level of its nesting
/// (at most `eddy_sql::limits`). Reserved address space; only what is used is memory.
const STACK_BYTES: usize = 16 << 20;

/// Counters of a running query, shown by `SHOW QUERIES EXTENDED` and `DESCRIBE EXTENDED`.
#[derive(Debug, Default)]
pub struct QueryStats {
    pub consumed: AtomicU64,
    pub produced: AtomicU64,
    /// Records skipped because they could not be processed (decoded, placed in a window, ...).
    pub decode_errors: AtomicU64,
    /// Expression failures (the expression yielded NULL).
    pub expression_errors: AtomicU64,
    /// Records dropped because they came after their window closed (window and grace period).
    pub late_records: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// How many times the query failed and was started again.
    pub restarts: AtomicU64,
    /// Why the query is failing, while it is (it waits to be tried again, or is being retried and
    /// has not yet got past the failure).
    failure: Mutex<Option<String>>,
    /// Where skipped records and failures are logged besides the server log.
    log: Option<Arc<ProcessingLog>>,
}

impl QueryStats {
    /// Counts and logs what went wrong processing `records`.
    pub(crate) fn record_errors<R: RecordRef>(
        &self,
        query: &str,
        topic: &str,
        processed: &ProcessedBatch,
        records: &[R],
    ) {
        if !processed.decode_errors.is_empty() {
            // The skipped records' bytes, when the processing log holds them.
            let index: HashMap<(i32, i64), &R> =
                if self.log.as_ref().is_some_and(|l| l.includes_rows()) {
                    records
                        .iter()
                        .map(|r| ((r.partition(), r.offset()), r))
                        .collect()
                } else {
                    HashMap::new()
                };
            for e in &processed.decode_errors {
                let record = index
                    .get(&(e.partition, e.offset))
                    .and_then(|r| bytes_of(*r));
                self.skipped(query, topic, e, record);
            }
        }
        if let Some(first) = processed.expression_errors.first() {
            let first = cut(first);
            // One line per batch: a failing function can fail every record.
            tracing::warn!(
                query,
                topic,
                failures = processed.expression_errors.len(),
                "expressions failed (their results are NULL, or the rows were left out of aggregates): {first}"
            );
            *lock(&self.last_error) = Some(first.into_owned());
        }
        self.expression_errors
            .fetch_add(processed.expression_errors.len() as u64, Ordering::Relaxed);
        if processed.late_records > 0 {
            // One line per batch, as Kafka Streams counts them in its dropped-records metric.
            tracing::warn!(
                query,
                topic,
                records = processed.late_records,
                "dropped records that came after their window closed (its size and grace period)"
            );
            self.late_records
                .fetch_add(processed.late_records as u64, Ordering::Relaxed);
        }
    }

    /// Counts and logs one skipped record (`record`: its bytes, for the processing log).
    pub(crate) fn skipped(&self, query: &str, topic: &str, e: &DecodeError, record: Option<&[u8]>) {
        tracing::warn!(
            query,
            topic,
            partition = e.partition,
            offset = e.offset,
            "skipped a record: {}",
            e.message
        );
        *lock(&self.last_error) = Some(format!(
            "{topic}/{}@{}: {}",
            e.partition, e.offset, e.message
        ));
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = &self.log {
            log.skipped(query, topic, e, record);
        }
    }

    /// Logs an error the query recovers from by itself, and keeps it as its last error.
    pub(crate) fn recovered(&self, query: &str, message: &str) {
        tracing::error!(query, "{message}");
        *lock(&self.last_error) = Some(message.to_string());
    }

    /// Why the query is failing, if it is.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// The query failed: it is in `ERROR` until an attempt gets past the failure.
    pub(crate) fn fail(&self, query: &str, reason: &str) {
        if let Some(log) = &self.log {
            log.failed(query, reason);
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(reason.to_string());
        *lock(&self.failure) = Some(reason.to_string());
    }

    /// The query made progress: it is running again.
    pub(crate) fn progressed(&self) {
        let mut failure = lock(&self.failure);
        if failure.is_some() {
            *failure = None;
        }
    }
}

/// The bytes of a record the processing log shows: its value, else its key.
pub(crate) fn bytes_of<R: RecordRef>(record: &R) -> Option<&[u8]> {
    record.value().or_else(|| record.key())
}

/// Locks a mutex holding only counters or messages (nothing a panic can leave half-changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A query running on its own thread.
#[derive(Debug)]
pub struct QueryTask {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<QueryStats>,
}

impl QueryTask {
    /// Asks the task to stop and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Runs `body` on a thread named `name` with the task's stop flag and counters; `body` returns
    /// when the flag is set. A panic in `body` ends the thread (and is its last error).
    pub(crate) fn spawn(
        name: String,
        body: impl FnOnce(Arc<AtomicBool>, Arc<QueryStats>) + Send + 'static,
    ) -> Result<QueryTask> {
        QueryTask::spawn_with(name, QueryStats::default(), body)
    }

    /// [`QueryTask::spawn`] with counters made by the caller.
    fn spawn_with(
        name: String,
        stats: QueryStats,
        body: impl FnOnce(Arc<AtomicBool>, Arc<QueryStats>) + Send + 'static,
    ) -> Result<QueryTask> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(stats);
        let (flag, counters) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(name)
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let failed = counters.clone();
                let run = std::panic::AssertUnwindSafe(move || body(flag, counters));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let message = panic_message(panic.as_ref());
                    tracing::error!("a query task panicked: {message}");
                    let name = std::thread::current()
                        .name()
                        .unwrap_or_default()
                        .to_string();
                    failed.fail(&name, &format!("the query panicked: {message}"));
                }
            })
            .map_err(|e| eddy_common::internal_err!("cannot start a query thread: {e}"))?;
        Ok(QueryTask {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// Runs a persistent query on a thread named `name`: `attempt` runs until the stop flag is set, and
    /// is started again after a backoff when it fails or panics (see [`supervise`]).
    pub(crate) fn supervised(
        name: String,
        query: String,
        config: &TaskConfig,
        mut attempt: impl FnMut(&Arc<AtomicBool>, &Arc<QueryStats>) -> std::result::Result<(), Failure>
        + Send
        + 'static,
    ) -> Result<QueryTask> {
        let backoff = config.backoff;
        let stats = QueryStats {
            log: config.processing_log.clone(),
            ..QueryStats::default()
        };
        QueryTask::spawn_with(name, stats, move |stop, stats| {
            supervise(&query, &stop, &stats, backoff, || attempt(&stop, &stats))
        })
    }

    /// Whether the task's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for QueryTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How a persistent query's task runs.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The query's consumer group.
    pub group_id: String,
    /// Where a group without committed offsets starts (`earliest` or `latest`).
    pub offset_reset: String,
    /// How long the query waits before it is tried again when it fails.
    pub backoff: Backoff,
    /// Where skipped records and failures are logged besides the server log.
    pub processing_log: Option<Arc<ProcessingLog>>,
    /// `processing.guarantee=exactly_once_v2`: nothing is written twice, even after a crash.
    pub exactly_once: bool,
    /// `max.task.idle.ms`: how long a join's input partition that ran dry holds the other sides'
    /// newer records back (see `time_order`).
    pub max_task_idle: Duration,
}

impl TaskConfig {
    /// Group `group_id`, reading from `offset_reset` on, ksqlDB's backoff, no processing log.
    pub fn new(group_id: String, offset_reset: &str) -> Self {
        TaskConfig {
            group_id,
            offset_reset: offset_reset.to_string(),
            backoff: Backoff::default(),
            processing_log: None,
            exactly_once: false,
            max_task_idle: Duration::ZERO,
        }
    }
}

/// Reads `max.task.idle.ms` (Kafka Streams' setting, also under `ksql.streams.`): how long a join
/// waits for a side that ran dry before it goes on with the other side's newer records; 0, Kafka
/// Streams' default, when the properties do not say.
pub fn max_task_idle(props: &Properties) -> Result<Duration> {
    let value = props
        .get("max.task.idle.ms")
        .or_else(|| props.get("ksql.streams.max.task.idle.ms"));
    match value.map(|v| v.trim()) {
        None => Ok(Duration::ZERO),
        Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
            eddy_common::Error::Plan(format!(
                "max.task.idle.ms must be a whole number of milliseconds (0 or more), not '{v}'"
            ))
        }),
    }
}

/// Reads `processing.guarantee` (ksqlDB's setting, also under `ksql.streams.`): whether a query's
/// output is exactly-once (`exactly_once_v2`, or the deprecated `exactly_once`) or at-least-once;
/// `default` when the properties do not say.
pub fn exactly_once_guarantee(props: &Properties, default: bool) -> Result<bool> {
    let value = props
        .get("processing.guarantee")
        .or_else(|| props.get("ksql.streams.processing.guarantee"));
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("at_least_once") => Ok(false),
        Some("exactly_once_v2" | "exactly_once") => Ok(true),
        Some(other) => Err(eddy_common::Error::Plan(format!(
            "processing.guarantee must be at_least_once or exactly_once_v2, not '{other}'"
        ))),
    }
}

/// The partition count of a query's inputs (a join's sides checked again: their topics may have
/// changed since the query was created; see `eddy_runtime::join::partitions`).
pub(crate) fn input_partitions(cluster: &KafkaCluster, pipeline: &Pipeline) -> Result<i32> {
    if let Some(join) = &pipeline.plan.join {
        return eddy_runtime::join::partitions(join, cluster);
    }
    let topic = &pipeline.inputs()[0].topic;
    cluster
        .partitions(topic)?
        .ok_or_else(|| external_err!("Kafka: the query's input topic {topic} does not exist"))
}

/// The configuration of a persistent query's consumer in group `group`, starting at `reset` where
/// the group has no offsets; it commits itself.
pub(crate) fn query_consumer(
    cluster: &KafkaCluster,
    group: &str,
    reset: &str,
) -> rdkafka::config::ClientConfig {
    base_config(cluster.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", reset)
        // A restarted server rejoins its groups; a short session lets the old member expire.
        .set("session.timeout.ms", "10000")
        .clone()
}

/// Starts a persistent query with its output to the query's sink.
pub fn start_persistent(
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    task: &TaskConfig,
) -> Result<QueryTask> {
    let name = format!("query-{}", query.id);
    let joins = query.pipeline.inputs().len() > 1;
    let partitions = if joins {
        input_partitions(&cluster, &query.pipeline)?
    } else {
        0
    };
    if joins && query.pipeline.is_stateful() {
        return Err(eddy_common::not_supported!(
            "Aggregations over joins are not supported by the server yet"
        ));
    }
    if joins && task.exactly_once {
        tracing::warn!(query = %query.id, "joins run at-least-once for now: processing.guarantee=exactly_once_v2 is not applied to this query");
    }
    // A stream-stream join keeps its buffers in a changelog, as an aggregation keeps its groups.
    if query.pipeline.persists_state() {
        let task = TaskConfig {
            exactly_once: task.exactly_once && !joins,
            ..task.clone()
        };
        return stateful::start(cluster, query, &task, name);
    }
    // A stream-table join's stream side not keyed by its join expression goes through a
    // repartition topic, which holds only this query's input: the query reads from the start.
    let shuffled = Repartitioned::join_sides(&task.group_id, &query.pipeline)?;
    let (topics, enveloped) = read_topics(&cluster, &query.pipeline, &shuffled, partitions)?;
    let consumer_config = |group: &str, reset: &str| query_consumer(&cluster, group, reset);
    let reset = if shuffled.is_empty() {
        task.offset_reset.as_str()
    } else {
        "earliest"
    };
    let config = consumer_config(&task.group_id, reset);
    let shuffle_configs: Vec<_> = shuffled
        .iter()
        .map(|r| (consumer_config(&r.group, &task.offset_reset), r.clone()))
        .collect();
    // A configuration the client refuses is the statement's error, not a query failing later.
    config.create_native_config().map_err(kafka_err)?;
    if task.exactly_once && !joins {
        return if cluster.uses_transactions()? {
            transactional::start(cluster, query, task, config, name)
        } else {
            exactly_once::start(cluster, query, task, config, name)
        };
    }
    let (offset_reset, idle) = (task.offset_reset.clone(), task.max_task_idle);
    QueryTask::supervised(name, query.id.clone(), task, move |stop, stats| {
        // Every attempt starts from the group's committed offsets, with a join's tables read back.
        let query = PersistentQuery {
            pipeline: Arc::new(query.pipeline.fresh().map_err(|e| e.to_string())?),
            ..query.clone()
        };
        let restored = restore_tables(&cluster, &query.pipeline, &config, &offset_reset)?;
        if restored > 0 {
            tracing::info!(query = %query.id, "restored the join's tables from their topics ({restored} records)");
        }
        let consumer = subscribed_to(&config, &topics)?;
        let shuffle_consumers = shuffle_configs
            .iter()
            .map(|(config, r)| Ok((subscribed(config, &r.source)?, r)))
            .collect::<std::result::Result<Vec<_>, Failure>>()?;
        let shuffles: Vec<Shuffle<'_>> = shuffle_consumers
            .iter()
            .map(|(consumer, input)| Shuffle {
                cluster: &cluster,
                consumer,
                query: &query,
                input,
                partitions,
                stop,
            })
            .collect();
        PersistentLoop {
            cluster: &cluster,
            consumer: &consumer,
            query: &query,
            topics: &topics,
            enveloped: &enveloped,
            shuffles: &shuffles,
            order: TimeOrder::of(&query.pipeline, &topics, idle).map(std::cell::RefCell::new),
            stop,
            stats,
        }
        .run()
    })
}

/// A consumer created with `config`, subscribed to `topic`.
pub(crate) fn subscribed(
    config: &rdkafka::config::ClientConfig,
    topic: &str,
) -> std::result::Result<BaseConsumer, Failure> {
    subscribed_to(config, &[topic.to_string()])
}

/// A consumer created with `config`, subscribed to `topics`.
fn subscribed_to(
    config: &rdkafka::config::ClientConfig,
    topics: &[String],
) -> std::result::Result<BaseConsumer, Failure> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| format!("cannot subscribe to {}: {e}", names.join(", ")))?;
    Ok(consumer)
}

/// The output records of a batch of input `input` (see `Pipeline::inputs`), read from `topic`. When
/// the batch fails as a whole, its records are processed one at a time, and a record that fails by
/// itself is skipped, counted and logged.
pub(crate) fn output_records<R: RecordRef>(
    query: &PersistentQuery,
    stats: &QueryStats,
    (input, topic): (usize, &str),
    batch: &[R],
) -> Vec<Record> {
    let process = |records: &[R]| {
        query.pipeline.process_input(input, records).and_then(|p| {
            stats.record_errors(&query.id, topic, &p, records);
            query.sink_spec.records(&p)
        })
    };
    match process(batch) {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(query = %query.id, "a batch failed ({e}); processing its records one by one");
            let mut out = Vec::new();
            for m in batch {
                match process(std::slice::from_ref(m)) {
                    Ok(records) => out.extend(records),
                    Err(e) => stats.skipped(
                        &query.id,
                        topic,
                        &DecodeError::processing(m.partition(), m.offset(), &e.to_string()),
                        bytes_of(m),
                    ),
                }
            }
            out
        }
    }
}

/// Batches produced but not yet acknowledged, at most: the next batch is polled and processed while
/// the sink acknowledges the previous ones.
const IN_FLIGHT: usize = 4;

/// A produced batch waiting for its acknowledgements, then for its offsets to be committed.
struct InFlight {
    records: Vec<Record>,
    /// What handing the records to the producer gave.
    sent: std::result::Result<Deliveries, DeliveryError>,
    /// Next offset to consume, per input and source partition.
    offsets: Vec<(usize, BTreeMap<i32, i64>)>,
}

/// The output of a run of input records, with the offsets to commit once it is acknowledged and how
/// many records it consumed.
struct Processed {
    records: Vec<Record>,
    offsets: Vec<(usize, BTreeMap<i32, i64>)>,
    consumed: usize,
}

/// The thread of a persistent query: what it reads and writes, and its counters.
struct PersistentLoop<'a> {
    cluster: &'a KafkaCluster,
    consumer: &'a BaseConsumer,
    query: &'a PersistentQuery,
    /// The topic of each input (a join has two).
    topics: &'a [String],
    /// Per input: whether its topic is a repartition topic, whose records are enveloped.
    enveloped: &'a [bool],
    /// The repartition stages of inputs read through a repartition topic.
    shuffles: &'a [Shuffle<'a>],
    /// For a join, its inputs' records waiting to be processed in time order.
    order: Option<std::cell::RefCell<TimeOrder>>,
    stop: &'a AtomicBool,
    stats: &'a QueryStats,
}

impl PersistentLoop<'_> {
    /// Runs until the stop flag is set (`Ok`), or until the output is refused for good: then what
    /// was acknowledged is committed and nothing after it, so the next attempt starts there.
    fn run(&self) -> std::result::Result<(), Failure> {
        let query = self.query;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        while !self.stop.load(Ordering::SeqCst) {
            for shuffle in self.shuffles {
                if let Err(halt) = shuffle.step() {
                    return halt.into_result();
                }
            }
            let batch = poll_batch(self.consumer);
            let mut work: Vec<Processed> = Vec::new();
            match &self.order {
                None if !batch.is_empty() => {
                    let records = output_records(query, self.stats, (0, &self.topics[0]), &batch);
                    work.push(Processed {
                        records,
                        offsets: vec![(0, next_offsets(&batch))],
                        consumed: batch.len(),
                    });
                }
                None => {}
                Some(order) => {
                    let mut order = order.borrow_mut();
                    for m in &batch {
                        order.push(m.0.topic(), std::slice::from_ref(m));
                    }
                    drop(batch);
                    for (input, mut records) in order.ready(self.consumer) {
                        if self.enveloped.get(input).copied().unwrap_or(false) {
                            records = records.iter().filter_map(unwrap).map(|(r, _)| r).collect();
                        }
                        let out = output_records(
                            query,
                            self.stats,
                            (input, &self.topics[input]),
                            &records,
                        );
                        work.push(Processed {
                            records: out,
                            offsets: vec![(input, next_offsets(&records))],
                            consumed: records.len(),
                        });
                    }
                }
            }
            if work.is_empty() {
                // Nothing new: settle what is in flight so its offsets get committed.
                while let Some(done) = in_flight.pop_front() {
                    self.settle(done)?;
                }
                continue;
            }
            for Processed {
                records,
                offsets,
                consumed,
            } in work
            {
                // Counted once processed and handed to the producer.
                self.stats
                    .consumed
                    .fetch_add(consumed as u64, Ordering::Relaxed);
                let sent = self.cluster.send(&query.sink_spec.topic, &records);
                in_flight.push_back(InFlight {
                    records,
                    sent,
                    offsets,
                });
                if in_flight.len() >= IN_FLIGHT
                    && let Some(oldest) = in_flight.pop_front()
                {
                    self.settle(oldest)?;
                }
            }
        }
        // Stopping: what was produced is acknowledged and committed, so a restart repeats as little
        // as possible.
        while let Some(done) = in_flight.pop_front() {
            self.settle(done)?;
        }
        Ok(())
    }

    /// At-least-once: waits for a batch's acknowledgements (producing it again while that can
    /// help), then commits the offsets it consumed. Fails when the sink refuses the batch for good.
    fn settle(&self, batch: InFlight) -> std::result::Result<(), Failure> {
        let delivered = deliver(
            self.cluster,
            &self.query.id,
            &self.query.sink_spec.topic,
            &batch.records,
            batch.sent,
            self.stop,
        );
        match delivered {
            Ok(()) => {}
            // Not committed: the batch is processed again after a restart.
            Err(Halt::Stopping) => return Ok(()),
            Err(Halt::Failed(reason)) => return Err(reason),
        }
        let query = self.query;
        self.stats
            .produced
            .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        let mut tpl = TopicPartitionList::new();
        for (input, offsets) in batch.offsets {
            for (p, o) in offsets {
                let _ = tpl.add_partition_offset(&self.topics[input], p, Offset::Offset(o));
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(query = %query.id, "offset commit failed (records may be processed again): {e}");
        }
        self.stats.progressed();
        Ok(())
    }
}

/// What a push query hands to its client.
#[derive(Debug)]
pub enum PushEvent {
    /// Output rows, with which of them are tombstones.
    Rows(RecordBatch, Vec<bool>),
    Error(String),
}

/// Starts a transient push query reading from `offset_reset` (`earliest` or `latest`).
/// The rows a push query shows for a processed batch, with their tombstone flags: on a table a
/// row without a value is a deletion (a tombstone); on a stream it is not an event and is skipped.
fn push_rows(pipeline: &Pipeline, p: ProcessedBatch) -> Result<Option<(RecordBatch, Vec<bool>)>> {
    let (batch, nulls) = if pipeline.source().kind == SourceKind::Stream {
        let keep = not(&p.null_values).map_err(|e| internal_err!("{e}"))?;
        let batch = filter_record_batch(&p.batch, &keep).map_err(|e| internal_err!("{e}"))?;
        let n = batch.num_rows();
        (batch, vec![false; n])
    } else {
        let nulls = p.null_values.iter().map(|v| v.unwrap_or(false)).collect();
        (p.batch, nulls)
    };
    Ok((batch.num_rows() > 0).then_some((batch, nulls)))
}

pub fn start_push(
    cluster: &KafkaCluster,
    pipeline: Arc<Pipeline>,
    offset_reset: &str,
    max_task_idle: Duration,
    group_id: String,
) -> Result<(mpsc::Receiver<PushEvent>, QueryTask)> {
    let config = base_config(cluster.bootstrap())
        .set("group.id", &group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", offset_reset)
        .clone();
    // A join's tables are read back first: the query's first records meet their current rows.
    restore_tables(cluster, &pipeline, &config, offset_reset).map_err(|e| external_err!("{e}"))?;
    let consumer: BaseConsumer = config.create().map_err(kafka_err)?;
    let topics: Vec<String> = pipeline.inputs().iter().map(|s| s.topic.clone()).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(kafka_err)?;
    // A join's inputs are processed in time order across its sides.
    let mut order = TimeOrder::of(&pipeline, &topics, max_task_idle);
    let (tx, rx) = mpsc::channel(PUSH_BUFFER);
    let task = QueryTask::spawn(format!("push-{group_id}"), move |stop, stats| {
        let push = Push {
            pipeline: &pipeline,
            stats: &stats,
            group_id: &group_id,
            tx: &tx,
            stop: &stop,
        };
        while !stop.load(Ordering::SeqCst) && !tx.is_closed() {
            let batch = poll_batch(&consumer);
            let going = match &mut order {
                None if batch.is_empty() => true,
                None => push.run((0, &topics[0]), &batch),
                Some(order) => {
                    for m in &batch {
                        order.push(m.0.topic(), std::slice::from_ref(m));
                    }
                    drop(batch);
                    order
                        .ready(&consumer)
                        .into_iter()
                        .all(|(input, records)| push.run((input, &topics[input]), &records))
                }
            };
            if !going {
                return;
            }
        }
    })?;
    Ok((rx, task))
}

/// A push query's thread: its pipeline, counters and client.
struct Push<'a> {
    pipeline: &'a Pipeline,
    stats: &'a QueryStats,
    group_id: &'a str,
    tx: &'a mpsc::Sender<PushEvent>,
    stop: &'a AtomicBool,
}

impl Push<'_> {
    /// Processes records of input `input` (read from `topic`) and hands the rows to the client;
    /// false when the query ends (the client left or stopped reading).
    fn run<R: RecordRef>(&self, (input, topic): (usize, &str), records: &[R]) -> bool {
        self.stats
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        // A panic ends the query with an error, not the server.
        let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.pipeline.process_input(input, records)
        }))
        .unwrap_or_else(|panic| {
            Err(eddy_common::internal_err!(
                "the query panicked: {}",
                panic_message(panic.as_ref())
            ))
        });
        let event = match processed {
            Ok(p) => {
                self.stats.record_errors(self.group_id, topic, &p, records);
                match push_rows(self.pipeline, p) {
                    Ok(Some((batch, nulls))) => PushEvent::Rows(batch, nulls),
                    Ok(None) => return true,
                    Err(e) => PushEvent::Error(e.to_string()),
                }
            }
            Err(e) => PushEvent::Error(e.to_string()),
        };
        match hand_over(self.tx, event, self.stop) {
            HandOver::Taken => true,
            HandOver::Gone => false,
            HandOver::TooSlow => {
                self.stats.fail(
                    self.group_id,
                    &format!(
                        "The client did not read the query's rows for {} s: the query was closed",
                        SLOW_CLIENT.as_secs()
                    ),
                );
                false
            }
        }
    }
}

/// Batches a push query keeps for a client that reads more slowly than rows come: past them the
/// query waits for the client.
const PUSH_BUFFER: usize = 16;

/// How long a push query waits for a client that reads nothing before it closes the query.
const SLOW_CLIENT: Duration = Duration::from_secs(60);

/// What became of a push query's event.
enum HandOver {
    Taken,
    /// The client left.
    Gone,
    /// The client's buffer stayed full for [`SLOW_CLIENT`].
    TooSlow,
}

/// Puts an event in a push query's buffer, waiting while it is full, at most [`SLOW_CLIENT`].
fn hand_over(tx: &mpsc::Sender<PushEvent>, event: PushEvent, stop: &AtomicBool) -> HandOver {
    let deadline = Instant::now() + SLOW_CLIENT;
    let mut event = event;
    loop {
        match tx.try_send(event) {
            Ok(()) => return HandOver::Taken,
            Err(mpsc::error::TrySendError::Closed(_)) => return HandOver::Gone,
            Err(mpsc::error::TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return HandOver::TooSlow;
                }
                if stop.load(Ordering::SeqCst) {
                    return HandOver::Gone;
                }
                event = back;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processing_guarantee_is_read_as_ksqldb_names_it() {
        let props = |k: &str, v: &str| Properties::from([(k.to_string(), v.to_string())]);
        assert!(!exactly_once_guarantee(&Properties::new(), false).unwrap());
        assert!(exactly_once_guarantee(&Properties::new(), true).unwrap());
        assert!(
            exactly_once_guarantee(&props("processing.guarantee", "exactly_once_v2"), false)
                .unwrap()
        );
        assert!(
            exactly_once_guarantee(
                &props("ksql.streams.processing.guarantee", "EXACTLY_ONCE"),
                false
            )
            .unwrap()
        );
        assert!(
            !exactly_once_guarantee(&props("processing.guarantee", "at_least_once"), true).unwrap()
        );
        let e = exactly_once_guarantee(&props("processing.guarantee", "twice"), false).unwrap_err();
        assert!(e.to_string().contains("exactly_once_v2"), "{e}");
    }

    #[test]
    fn max_task_idle_is_read_with_or_without_the_streams_prefix() {
        let props = |k: &str, v: &str| Properties::from([(k.to_string(), v.to_string())]);
        assert_eq!(max_task_idle(&Properties::new()).unwrap(), Duration::ZERO);
        assert_eq!(
            max_task_idle(&props("max.task.idle.ms", "250")).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            max_task_idle(&props("ksql.streams.max.task.idle.ms", " 2000 ")).unwrap(),
            Duration::from_secs(2)
        );
        for bad in ["-1", "soon", "1.5"] {
            let e = max_task_idle(&props("max.task.idle.ms", bad)).unwrap_err();
            assert!(e.to_string().contains("max.task.idle.ms"), "{e}");
        }
    }
}
