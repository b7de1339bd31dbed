//! At-least-once stateless persistent queries (filters, projections, stream-table joins): each run
//! of input records is processed and handed to the producer while the next is read; a run's input
//! offsets are committed only once the sink acknowledged its output, so a crash repeats output and
//! never loses it. A join side not keyed by its join expression is moved through a repartition
//! topic by a stage the task runs first each turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::consumer::BaseConsumer;

use eddy_common::Result;
use eddy_runtime::{PersistentQuery, Record, RecordRef};

use crate::cluster::{Deliveries, KafkaCluster, kafka_err, now_millis};
use crate::consume::{Reader, Step, commit, run};
use crate::delivery::{Halt, deliver};
use crate::delivery_error::DeliveryError;
use crate::poll::next_offsets;
use crate::query_io::{
    input_partitions, output_records, query_consumer, subscribed, subscribed_to,
};
use crate::query_stats::QueryStats;
use crate::query_task::{QueryTask, TaskConfig};
use crate::repartition::{Mover, Repartitioned, Shuffle, read_topics, unwrap};
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
        let mut step = AtLeastOnce {
            cluster: &cluster,
            consumer: &consumer,
            query: &query,
            topics: &topics,
            enveloped: &enveloped,
            shuffles,
            stop,
            stats,
            in_flight: VecDeque::new(),
            busy: false,
            metrics,
        };
        let order = TimeOrder::of(&query.pipeline, &topics, idle);
        run(
            stop,
            &mut Reader::new(&consumer, order).counting(metrics.then_some(&stats.consumed_bytes)),
            &mut step,
        )
        .or_else(Halt::into_result)
    })
}

/// Batches produced but not yet acknowledged, at most: the next batch is polled and processed while
/// the sink acknowledges the previous ones.
const IN_FLIGHT: usize = 4;

/// The output of a run of input records, handed to the producer, waiting for its acknowledgements,
/// then for its offsets to be committed.
struct InFlight {
    records: Vec<Record>,
    /// What handing the records to the producer gave.
    sent: std::result::Result<Deliveries, DeliveryError>,
    /// The input the run was of, and the next offset to consume of each partition it read.
    input: usize,
    offsets: BTreeMap<i32, i64>,
}

/// The step of an at-least-once query: what it reads and writes, its repartition stages, and its
/// output in flight.
struct AtLeastOnce<'a> {
    cluster: &'a KafkaCluster,
    consumer: &'a BaseConsumer,
    query: &'a PersistentQuery,
    /// The topic of each input (a join has two).
    topics: &'a [String],
    /// Per input: whether its topic is a repartition topic, whose records are enveloped.
    enveloped: &'a [bool],
    /// The repartition stages of inputs read through a repartition topic.
    shuffles: Vec<Shuffle<'a>>,
    stop: &'a AtomicBool,
    stats: &'a QueryStats,
    in_flight: VecDeque<InFlight>,
    /// A run was processed this turn.
    busy: bool,
    /// Whether to observe the latency of what is delivered (`TaskConfig::metrics`).
    metrics: bool,
}

impl Step for AtLeastOnce<'_> {
    fn ready(&mut self) -> Result<bool, Halt> {
        for shuffle in &mut self.shuffles {
            shuffle.turn()?;
        }
        Ok(true)
    }

    fn process<R: RecordRef>(&mut self, input: usize, records: Vec<R>) -> Result<(), Halt> {
        let (query, stats, topic) = (self.query, self.stats, (input, &*self.topics[input]));
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
        let sent = self.cluster.send(&query.sink_spec.topic, &output);
        self.in_flight.push_back(InFlight {
            records: output,
            sent,
            input,
            offsets,
        });
        self.busy = true;
        if self.in_flight.len() >= IN_FLIGHT
            && let Some(oldest) = self.in_flight.pop_front()
        {
            self.deliver(oldest)?;
        }
        Ok(())
    }

    /// A turn that processed nothing settles what is in flight, so its offsets get committed.
    fn settle(&mut self, _: usize) -> Result<(), Halt> {
        if !std::mem::take(&mut self.busy) {
            self.finish()?;
        }
        Ok(())
    }

    /// Stopping: what was produced is acknowledged and committed, so a restart repeats as little as
    /// possible.
    fn finish(&mut self) -> Result<(), Halt> {
        while let Some(done) = self.in_flight.pop_front() {
            self.deliver(done)?;
        }
        Ok(())
    }
}

impl AtLeastOnce<'_> {
    /// Waits for a run's acknowledgements (producing it again while that can help), then commits
    /// the offsets it consumed. Halts when the sink refuses the output for good, or when the task
    /// is stopping first (then the run is not committed: it is processed again after a restart).
    fn deliver(&self, run: InFlight) -> Result<(), Halt> {
        let query = self.query;
        let topic = &query.sink_spec.topic;
        deliver(
            self.cluster,
            &query.id,
            topic,
            &run.records,
            run.sent,
            self.stop,
        )?;
        self.stats
            .produced
            .fetch_add(run.records.len() as u64, Ordering::Relaxed);
        if self.metrics {
            self.stats
                .latency
                .observe(now_millis(), run.records.iter().map(|r| r.timestamp));
        }
        let input = self.topics[run.input].as_str();
        commit(
            self.consumer,
            &query.id,
            run.offsets.into_iter().map(|(p, o)| (input, p, o)),
        );
        self.stats.progressed();
        Ok(())
    }
}
