//! Push queries: a transient query whose consumer reads the query's inputs (from `earliest` or
//! `latest`, with no offsets kept) and hands the rows of each run to its client through a bounded
//! channel; a client that leaves, or reads nothing for a minute, ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_runtime::arrow::array::RecordBatch;
use eddy_runtime::arrow::compute::{filter_record_batch, not};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use eddy_common::{Result, external_err, internal_err};
use eddy_runtime::{Pipeline, ProcessedBatch, RecordRef};
use eddy_sql::statement::SourceKind;

use crate::cluster::{KafkaCluster, kafka_err};
use crate::consume::{Reader, Step, run};
use crate::delivery::Halt;
use crate::query_stats::QueryStats;
use crate::query_task::QueryTask;
use crate::supervisor::panic_message;
use crate::table_restore::restore_tables;
use crate::time_order::TimeOrder;

/// What a push query hands to its client.
#[derive(Debug)]
pub enum PushEvent {
    /// Output rows, with which of them are tombstones.
    Rows(RecordBatch, Vec<bool>),
    Error(String),
}

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

/// Starts a transient push query reading from `offset_reset` (`earliest` or `latest`).
pub fn start_push(
    cluster: &KafkaCluster,
    pipeline: Arc<Pipeline>,
    offset_reset: &str,
    max_task_idle: Duration,
    group_id: String,
) -> Result<(mpsc::Receiver<PushEvent>, QueryTask)> {
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
        self.stats
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        // A panic ends the query with an error, not the server.
        let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.pipeline.process_input(input, records)
        }))
        .unwrap_or_else(|panic| {
            Err(internal_err!(
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
