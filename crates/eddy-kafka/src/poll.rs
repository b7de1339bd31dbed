//! Reading a consumer in micro-batches: its messages as records, and the offsets a batch moves to.
//!
//! librdkafka hands a consumer's fetched messages and its events (rebalances, commit results,
//! errors) out of one queue, and rdkafka takes them one call at a time: each message then costs
//! clock reads, locks and an allocation — more than decoding it (a plain rdkafka consumer spends
//! 2.6 times the CPU of a batch one on the same topic). A [`Poller`] moves the fetched messages of
//! the partitions its consumer reads into a queue of its own (`rd_kafka_queue_forward`), taken a
//! batch per call (`rd_kafka_consume_batch_queue`); the consumer's own queue keeps the events, and
//! is still served through rdkafka's poll, which runs the consumer's rebalance callbacks.
//!
//! A partition's messages go to the consumer's queue until the partition is moved: the first time
//! it is fetched, its first messages come through the consumer's queue, which tells the poller to
//! move it; the consumer's queue is always emptied before the poller's own is read, so a
//! partition's records keep their order. A partition that stops being fetched (revoked, reassigned
//! by the task itself) loses its move, so every partition seen is moved again whenever the
//! consumer's queue served anything (a rebalance is an event there) and every [`REMOVE_EVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;

use eddy_runtime::RecordRef;

use crate::consumed::Consumed;
use crate::disposal::Disposal;

/// Records per micro-batch, and how long to wait for the first record of one.
const MAX_BATCH: usize = 4096;
const WAIT: Duration = Duration::from_millis(20);
/// How often the partitions seen are moved again though the consumer's queue served nothing (a task
/// that assigns partitions itself raises no event).
const REMOVE_EVERY: Duration = Duration::from_millis(100);

/// A consumer read in micro-batches.
pub(crate) struct Poller<'a, C: ConsumerContext> {
    consumer: &'a BaseConsumer<C>,
    /// None for a consumer without a group (librdkafka then has no consumer queue): it is polled
    /// one message at a time.
    queues: Option<Queues>,
}

/// The consumer's queue (events, and the messages of partitions not moved yet), and the poller's.
struct Queues {
    client: NonNull<rd::rd_kafka_t>,
    consumer: NonNull<rd::rd_kafka_queue_t>,
    fetched: NonNull<rd::rd_kafka_queue_t>,
    /// The partitions seen (topic, partition), moved to `fetched`.
    moved: BTreeSet<(CString, i32)>,
    moved_at: Instant,
    /// Where `rd_kafka_consume_batch_queue` puts what it takes.
    slots: Vec<*mut rd::rd_kafka_message_t>,
    /// Where the messages taken go when dropped.
    disposal: Disposal,
}

impl<'a, C: ConsumerContext> Poller<'a, C> {
    pub(crate) fn new(consumer: &'a BaseConsumer<C>) -> Self {
        let client = NonNull::new(consumer.client().native_ptr());
        let queues = client.and_then(|client| {
            // SAFETY: the client lives as long as `consumer`, which outlives the poller; both
            // queue handles are the poller's, destroyed in its drop.
            let own = unsafe { rd::rd_kafka_queue_get_consumer(client.as_ptr()) };
            let consumer = NonNull::new(own)?;
            let Some(fetched) = NonNull::new(unsafe { rd::rd_kafka_queue_new(client.as_ptr()) })
            else {
                unsafe { rd::rd_kafka_queue_destroy(consumer.as_ptr()) };
                return None;
            };
            Some(Queues {
                client,
                consumer,
                fetched,
                moved: BTreeSet::new(),
                moved_at: Instant::now(),
                slots: vec![std::ptr::null_mut(); MAX_BATCH],
                disposal: Disposal::new(),
            })
        });
        Poller { consumer, queues }
    }

    /// Polls up to a micro-batch of messages: waits up to [`WAIT`] for the first, then takes what
    /// the consumer already holds and returns — a record is processed as soon as it is fetched (at
    /// a high rate the consumer holds a whole batch; at a low one nothing waits for company).
    pub(crate) fn poll(&mut self) -> Vec<Consumed<'a>> {
        let consumer = self.consumer;
        let Some(queues) = &mut self.queues else {
            return poll_each(consumer);
        };
        // The previous batch was dropped by now.
        queues.disposal.flush();
        let mut batch = Vec::new();
        if queues.serve(consumer, &mut batch) || queues.moved_at.elapsed() >= REMOVE_EVERY {
            queues.move_partitions();
            // Messages may have reached the consumer's queue while their partition was moved:
            // they are taken before the poller's own queue is read.
            queues.serve(consumer, &mut batch);
        }
        if batch.len() >= MAX_BATCH {
            return batch;
        }
        let wait = if batch.is_empty() {
            WAIT
        } else {
            Duration::ZERO
        };
        // The first message waited for (taking a batch waits until it is full), the rest as they are.
        if queues.take(wait, 1, &mut batch) > 0 {
            queues.take(Duration::ZERO, MAX_BATCH - batch.len(), &mut batch);
        }
        batch
    }
}

impl Queues {
    /// Serves the consumer's queue through rdkafka while it holds anything (events run their
    /// callbacks; messages join `batch` and their partition is noted to be moved). Returns whether
    /// it held anything.
    fn serve<'a, C: ConsumerContext>(
        &mut self,
        consumer: &'a BaseConsumer<C>,
        batch: &mut Vec<Consumed<'a>>,
    ) -> bool {
        let mut served = false;
        // SAFETY: the queue handle is alive until the poller is dropped.
        while batch.len() < MAX_BATCH
            && unsafe { rd::rd_kafka_queue_length(self.consumer.as_ptr()) } > 0
        {
            served = true;
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    if let Ok(topic) = CString::new(m.topic()) {
                        self.moved.insert((topic, m.partition()));
                    }
                    batch.extend(Consumed::polled(m));
                }
                Some(Err(e)) => tracing::warn!("consumer error: {e}"),
                None => {}
            }
        }
        served
    }

    /// Moves the fetched messages of every partition seen to the poller's queue (those already
    /// fetched first, in order).
    fn move_partitions(&mut self) {
        for (topic, partition) in &self.moved {
            // SAFETY: the client and the poller's queue are alive; the partition's queue handle
            // is released once forwarded (the forward itself holds the poller's queue).
            unsafe {
                let queue = rd::rd_kafka_queue_get_partition(
                    self.client.as_ptr(),
                    topic.as_ptr(),
                    *partition,
                );
                if !queue.is_null() {
                    rd::rd_kafka_queue_forward(queue, self.fetched.as_ptr());
                    rd::rd_kafka_queue_destroy(queue);
                }
            }
        }
        self.moved_at = Instant::now();
    }

    /// Takes up to `max` messages from the poller's queue into `batch`, waiting up to `wait` for
    /// them; returns how many came. A partition librdkafka cannot fetch comes as an error, logged.
    fn take<'a>(&mut self, wait: Duration, max: usize, batch: &mut Vec<Consumed<'a>>) -> usize {
        let max = max.min(self.slots.len());
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `slots` has room for `max` pointers; each message returned is owned by one
        // `Consumed`, which puts it in the disposal's bin, bound to the consumer's lifetime by the
        // caller (the disposal destroys what it holds before the poller is gone).
        let taken = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.fetched.as_ptr(),
                wait_ms,
                self.slots.as_mut_ptr(),
                max,
            )
        };
        let taken = usize::try_from(taken).unwrap_or(0).min(max);
        for &message in &self.slots[..taken] {
            let Some(message) = NonNull::new(message) else {
                continue;
            };
            // SAFETY: see above.
            let message = unsafe { Consumed::taken(message, self.disposal.bin()) };
            match message.error() {
                None => batch.push(message),
                Some(e) => tracing::warn!("consumer error: {e}"),
            }
        }
        taken
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        self.disposal.close();
        // SAFETY: both handles are the poller's own, destroyed once. Messages forwarded to the
        // poller's queue after this are dropped by librdkafka (the consumer is closing).
        unsafe {
            rd::rd_kafka_queue_destroy(self.fetched.as_ptr());
            rd::rd_kafka_queue_destroy(self.consumer.as_ptr());
        }
    }
}

/// [`Poller::poll`] for a consumer without a group: one message per call.
fn poll_each<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Vec<Consumed<'_>> {
    let mut batch = Vec::new();
    while batch.len() < MAX_BATCH {
        let wait = if batch.is_empty() {
            WAIT
        } else {
            Duration::ZERO
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => batch.extend(Consumed::polled(m)),
            Some(Err(e)) => {
                tracing::warn!("consumer error: {e}");
                break;
            }
            None => break,
        }
    }
    batch
}

/// The next offset to consume of each partition a batch read from.
pub(crate) fn next_offsets<R: RecordRef>(batch: &[R]) -> BTreeMap<i32, i64> {
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for m in batch {
        let e = offsets.entry(m.partition()).or_default();
        *e = (*e).max(m.offset() + 1);
    }
    offsets
}
