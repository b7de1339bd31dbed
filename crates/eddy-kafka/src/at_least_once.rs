//! At-least-once stateless persistent queries (filters, projections, stream-table joins): each run
//! of input records is processed and handed to the producer while the next is read; a run's input
//! offsets are committed (each commit interval) only once the sink acknowledged its output, so a
//! crash repeats output and never loses it. A join side not keyed by its join expression is moved through a repartition
//! topic by a stage the task runs first each turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::consumer::BaseConsumer;

use eddy_common::Result;
use eddy_runtime::{PersistentQuery, Record, RecordRef};

use crate::cluster::{KafkaCluster, kafka_err, now_millis};
use crate::consume::{Reader, Step, commit, run};
use crate::delivery::Halt;
use crate::poll::next_offsets;
use crate::query_io::{
    input_partitions, output_records, query_consumer, subscribed, subscribed_to,
};
use crate::query_stats::QueryStats;
use crate::query_task::{QueryTask, TaskConfig};
use crate::repartition::{Mover, Repartitioned, Shuffle, read_topics, unwrap};
use crate::sender::{Outgoing, Sender, Sink};
use crate::supervisor::Failure;
use crate::table_restore::restore_tables;
use crate::time_order::TimeOrder;

/// Starts an at-least-once stateless persistent query.
pub(crate) fn start(
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    task: &TaskConfig,
    name: String,
) -> Result<QueryTask> {
    let partitions = if query.pipeline.inputs().len() > 1 {
        input_partitions(&cluster, &query.pipeline)?
    } else {
        0
    };
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
    let (offset_reset, idle) = (task.offset_reset.clone(), task.max_task_idle);
    let metrics = task.metrics;
    let thread_name = name.clone();
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
        let shuffles = shuffle_consumers
            .iter()
            .map(|(consumer, input)| {
                Shuffle::new(Mover {
                    cluster: &cluster,
                    consumer,
                    query: &query,
                    input,
                    partitions,
                    stop,
                })
            })
            .collect();
        let commits = Commits {
            consumer: &consumer,
            query: &query,
            topics: &topics,
            stats,
            metrics,
            due: BTreeMap::new(),
            last: Instant::now(),
        };
        let order = TimeOrder::of(&query.pipeline, &topics, idle);
        let mut reader =
            Reader::new(&consumer, order).counting(metrics.then_some(&stats.consumed_bytes));
        std::thread::scope(|scope| {
            let sink = Sink {
                cluster: &cluster,
                query: &query.id,
                topic: &query.sink_spec.topic,
                stop,
            };
            let sender = match Sender::spawn(scope, &thread_name, sink) {
                Ok(sender) => sender,
                Err(halt) => return halt.into_result(),
            };
            let mut step = AtLeastOnce {
                commits,
                enveloped: &enveloped,
                shuffles,
                sender,
            };
            run(stop, &mut reader, &mut step).or_else(Halt::into_result)
        })
    })
}

/// What an acknowledged batch commits: the input it was read from, and the next offset to consume
/// of each partition it read.
struct Consumed {
    input: usize,
    offsets: BTreeMap<i32, i64>,
}

/// The step of an at-least-once query: its repartition stages, its output handed to the sending
/// thread, and how acknowledged batches are committed.
struct AtLeastOnce<'a, 's> {
    commits: Commits<'a>,
    /// Per input: whether its topic is a repartition topic, whose records are enveloped.
    enveloped: &'a [bool],
    /// The repartition stages of inputs read through a repartition topic.
    shuffles: Vec<Shuffle<'a>>,
    sender: Sender<'s, Consumed>,
}

/// Counts what acknowledged batches delivered and commits their input offsets, once per commit
/// interval (`ksql.streams.commit.interval.ms`, as Kafka Streams does) and when stopping: a crash
/// repeats at most an interval's output.
struct Commits<'a> {
    consumer: &'a BaseConsumer,
    query: &'a PersistentQuery,
    /// The topic of each input (a join has two).
    topics: &'a [String],
    stats: &'a QueryStats,
    /// Whether to observe the latency of what is delivered (`TaskConfig::metrics`).
    metrics: bool,
    /// Per input and partition, the next offset to consume that was acknowledged, not committed.
    due: BTreeMap<(usize, i32), i64>,
    /// When the last commit was made.
    last: Instant,
}

impl Step for AtLeastOnce<'_, '_> {
    fn ready(&mut self) -> Result<bool, Halt> {
        for shuffle in &mut self.shuffles {
            shuffle.turn()?;
        }
        Ok(true)
    }

    fn process<R: RecordRef>(&mut self, input: usize, records: Vec<R>) -> Result<(), Halt> {
        let Commits {
            query,
            stats,
            topics,
            ..
        } = self.commits;
        let topic = (input, &*topics[input]);
        let output = if self.enveloped.get(input).copied().unwrap_or(false) {
            let opened: Vec<Record> = records.iter().filter_map(unwrap).map(|(r, _)| r).collect();
            output_records(query, stats, topic, &opened)
        } else {
            output_records(query, stats, topic, &records)
        };
        // Counted once processed and handed to the producer.
        stats
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let offsets = next_offsets(&records);
        drop(records);
        self.sender.send(Outgoing {
            records: output,
            then: Consumed { input, offsets },
        })?;
        self.settle(0)
    }

    /// Takes what was acknowledged since the last turn; commits once a commit interval passed.
    fn settle(&mut self, _: usize) -> Result<(), Halt> {
        while let Some(batch) = self.sender.acknowledged()? {
            self.commits.acknowledged(batch);
        }
        if self.commits.last.elapsed() >= self.commits.query.commit_interval {
            self.commits.commit();
        }
        Ok(())
    }

    /// Stopping: what was produced is acknowledged and committed, so a restart repeats as little as
    /// possible.
    fn finish(&mut self) -> Result<(), Halt> {
        let Self {
            commits, sender, ..
        } = self;
        let finished = sender.finish(|batch| commits.acknowledged(batch));
        commits.commit();
        finished
    }
}

impl Commits<'_> {
    /// Counts a batch whose output the sink acknowledged, its input offsets due to be committed. A
    /// batch the sink refused for good, or not acknowledged when the task stopped, never comes
    /// here: it is not committed, and is processed again after a restart.
    fn acknowledged(&mut self, batch: Outgoing<Consumed>) {
        self.stats
            .produced
            .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        if self.metrics {
            self.stats
                .latency
                .observe(now_millis(), batch.records.iter().map(|r| r.timestamp));
        }
        let input = batch.then.input;
        for (partition, offset) in batch.then.offsets {
            let due = self.due.entry((input, partition)).or_default();
            *due = offset.max(*due);
        }
        self.stats.progressed();
    }

    /// Commits the input offsets acknowledged since the last commit.
    fn commit(&mut self) {
        self.last = Instant::now();
        let topics = self.topics;
        let due = std::mem::take(&mut self.due);
        commit(
            self.consumer,
            &self.query.id,
            due.into_iter()
                .map(|((input, partition), offset)| (topics[input].as_str(), partition, offset)),
        );
    }
}
