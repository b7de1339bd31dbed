//! Query tasks over Kafka: a consumer feeds micro-batches through a pipeline; persistent queries produce
//! to their sink and commit offsets only after the sink acknowledged (at-least-once; exactly-once
//! ones are in `exactly_once` and `stateful`); push queries hand their rows to a channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_runtime::arrow::array::RecordBatch;
use eddy_runtime::arrow::compute::{filter_record_batch, not};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use eddy_common::{Result, external_err, internal_err};
use eddy_runtime::{PersistentQuery, Pipeline, ProcessedBatch, Record, RecordRef};
use eddy_sql::statement::SourceKind;

use crate::cluster::{Deliveries, KafkaCluster, base_config, kafka_err};
use crate::delivery::{Halt, deliver};
use crate::delivery_error::DeliveryError;
use crate::poll::{next_offsets, poll_batch};
use crate::query_io::{
    input_partitions, output_records, query_consumer, subscribed, subscribed_to,
};
use crate::query_stats::QueryStats;
use crate::query_task::{QueryTask, TaskConfig};
use crate::repartition::{Repartitioned, Shuffle, read_topics, unwrap};
use crate::split_query::split;
use crate::supervisor::{Failure, panic_message};
use crate::table_restore::restore_tables;
use crate::time_order::TimeOrder;
use crate::transaction::uses_transactions;
use crate::{exactly_once, stateful, transactional};

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
    // An aggregation over joins, or a join of earlier joins' rows on other than their key, runs
    // as two tasks joined by an internal topic.
    if let Some(split) = split(&cluster, &query, task)? {
        let rest = start_persistent(cluster.clone(), split.rest, task)?;
        let joins_config = TaskConfig {
            stats: Some(rest.stats.clone()),
            ..split.joins_config
        };
        let joins = start_persistent(cluster, split.joins, &joins_config)?;
        return Ok(rest.with_stage(joins));
    }
    // A stream-stream join keeps its buffers in a changelog, as an aggregation keeps its groups;
    // an exactly-once join keeps its checkpoints there (where its input stood with each write, and
    // its output), with its tables read back from their topics.
    // So do the joins before a split of a query, which hand their rows on: the rows are named
    // after the records they were made of, and a repartition stage (or earlier joins) may write
    // those records again after a crash, at new offsets; the stateful loop leaves them out by
    // their origins before joining them, so what the rest of the query reads is exact.
    if query.pipeline.persists_state()
        || (joins && task.exactly_once)
        || query.pipeline.hands_on_joined_rows()
    {
        return stateful::start(cluster, query, task, name);
    }
    // A stream-table join's stream side not keyed by its join expression goes through a
    // repartition topic, which holds only this query's input: the query reads from the start.
    let shuffled = Repartitioned::join_sides(&task.group_id, &query.pipeline)?;
    let (topics, enveloped) = read_topics(&cluster, &query.pipeline, &shuffled, partitions)?;
    let consumer_config = |group: &str, reset: &str| query_consumer(&cluster, group, reset);
    let reset = if enveloped.iter().any(|e| *e) {
        "earliest"
    } else {
        task.offset_reset.as_str()
    };
    let config = consumer_config(&task.group_id, reset);
    let shuffle_configs: Vec<_> = shuffled
        .iter()
        .map(|r| (consumer_config(&r.group, &task.offset_reset), r.clone()))
        .collect();
    // A configuration the client refuses is the statement's error, not a query failing later.
    config.create_native_config().map_err(kafka_err)?;
    if task.exactly_once {
        return if uses_transactions(&cluster)? {
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
