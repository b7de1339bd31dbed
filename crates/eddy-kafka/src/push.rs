//! Push queries: a transient query whose consumer reads the query's inputs (from `earliest` or
//! `latest`, with no offsets kept) and hands the rows of each run to its client through a bounded
//! channel; a client that leaves, or reads nothing for a minute, ends it. Push queries of one
//! input from its latest records share their server's reader of that topic (`shared_reader`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use eddy_common::{Result, external_err};
use eddy_runtime::{Pipeline, RecordRef};

use crate::cluster::{KafkaCluster, kafka_err};
use crate::consume::{Reader, Step, run};
use crate::delivery::Halt;
use crate::push_event::{PushEvent, SLOW_CLIENT, push_event, too_slow};
use crate::query_stats::QueryStats;
use crate::query_task::QueryTask;
use crate::shared_reader::SharedReaders;
use crate::table_restore::restore_tables;
use crate::time_order::TimeOrder;

/// Starts a transient push query reading from `offset_reset` (`earliest` or `latest`). A query of
/// one input from its latest records joins the reader its server shares among the push queries on
/// that topic (see `shared_reader`); any other reads with a consumer of its own.
pub fn start_push(
    cluster: &KafkaCluster,
    readers: &SharedReaders,
    pipeline: Arc<Pipeline>,
    offset_reset: &str,
    max_task_idle: Duration,
    group_id: String,
) -> Result<(mpsc::Receiver<PushEvent>, QueryTask)> {
    if let ([input], "latest") = (pipeline.inputs().as_slice(), offset_reset) {
        let topic = input.topic.clone();
        let (tx, rx) = mpsc::channel(PUSH_BUFFER);
        let task = readers.subscribe(&topic, pipeline, group_id, tx, || {
            shared_consumer(cluster, &topic)
        })?;
        return Ok((rx, task));
    }
    let config = cluster
        .reader_config()
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
    let order = TimeOrder::of(&pipeline, &topics, max_task_idle);
    let (tx, rx) = mpsc::channel(PUSH_BUFFER);
    let task = QueryTask::spawn(format!("push-{group_id}"), move |stop, stats| {
        let mut push = Push {
            pipeline: &pipeline,
            topics: &topics,
            stats: &stats,
            group_id: &group_id,
            tx: &tx,
            stop: &stop,
        };
        // It ends when the client leaves (a failure was handed to the client).
        let _ = run(&stop, &mut Reader::new(&consumer, order), &mut push);
    })?;
    Ok((rx, task))
}

/// A consumer of every partition of `topic` from its end: a shared reader's. It is assigned its
/// partitions (librdkafka wants a group id even so, but it joins no group and commits nothing).
fn shared_consumer(cluster: &KafkaCluster, topic: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = cluster
        .reader_config()
        .set("group.id", format!("_eddy-push-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(kafka_err)?;
    let mut partitions = TopicPartitionList::new();
    for (partition, end) in cluster.end_offsets(topic)?.into_iter().enumerate() {
        partitions
            .add_partition_offset(topic, partition as i32, Offset::Offset(end))
            .map_err(kafka_err)?;
    }
    consumer.assign(&partitions).map_err(kafka_err)?;
    Ok(consumer)
}

/// A push query's thread: its pipeline, counters and client.
struct Push<'a> {
    pipeline: &'a Pipeline,
    /// The topic of each input.
    topics: &'a [String],
    stats: &'a QueryStats,
    group_id: &'a str,
    tx: &'a mpsc::Sender<PushEvent>,
    stop: &'a AtomicBool,
}

impl Push<'_> {
    /// Processes records of input `input` and hands the rows to the client; false when the query
    /// ends (the client left or stopped reading).
    fn hand_on<R: RecordRef>(&self, input: usize, records: &[R]) -> bool {
        let topic = &self.topics[input];
        let Some(event) = push_event(
            self.pipeline,
            self.stats,
            self.group_id,
            topic,
            input,
            records,
        ) else {
            return true;
        };
        match hand_over(self.tx, event, self.stop) {
            HandOver::Taken => true,
            HandOver::Gone => false,
            HandOver::TooSlow => {
                self.stats.fail(self.group_id, &too_slow());
                false
            }
        }
    }
}

impl Step for Push<'_> {
    fn ready(&mut self) -> Result<bool, Halt> {
        if self.tx.is_closed() {
            return Err(Halt::Stopping);
        }
        Ok(true)
    }

    fn process<R: RecordRef>(&mut self, input: usize, records: Vec<R>) -> Result<(), Halt> {
        if self.hand_on(input, &records) {
            Ok(())
        } else {
            Err(Halt::Stopping)
        }
    }
}

/// Batches a push query keeps for a client that reads more slowly than rows come: past them the
/// query waits for the client.
const PUSH_BUFFER: usize = 16;

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
