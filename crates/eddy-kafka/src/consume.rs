//! The consume/commit loop every Kafka task runs — persistent queries (at-least-once, exactly-once,
//! transactional, stateful), their repartition stages and push queries: each turn reads a
//! micro-batch from the task's consumer, hands it to the task's [`Step`] as runs of one input (for
//! a join, in time order across its inputs: see `time_order`), then lets the step settle and commit
//! what is due; stopping, the step settles what is left. What differs between tasks — what a run
//! becomes, when output counts as delivered, where positions are kept — is in their steps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use eddy_runtime::RecordRef;

use crate::delivery::Halt;
use crate::poll::Poller;
use crate::time_order::TimeOrder;

/// What a task does with what it reads, turn by turn.
pub(crate) trait Step {
    /// Before each read: whether to read this turn (a query whose state is not sharded reads only
    /// while this server holds its lease; a query's repartition stages move their batch first).
    fn ready(&mut self) -> Result<bool, Halt> {
        Ok(true)
    }

    /// Processes a run of records of input `input`.
    fn process<R: RecordRef>(&mut self, input: usize, records: Vec<R>) -> Result<(), Halt>;

    /// After each read, which fetched `polled` records: settles and commits what is due.
    fn settle(&mut self, polled: usize) -> Result<(), Halt> {
        let _ = polled;
        Ok(())
    }

    /// Stopping: settles and commits what is left.
    fn finish(&mut self) -> Result<(), Halt> {
        Ok(())
    }
}

/// A task's consumer and, for a join, its inputs' records waiting for their turn in time order.
pub(crate) struct Reader<'a, C: ConsumerContext> {
    consumer: &'a BaseConsumer<C>,
    poller: Poller<'a, C>,
    order: Option<TimeOrder>,
    /// Where the bytes read (keys and values) are counted.
    bytes: Option<&'a AtomicU64>,
}

impl<'a, C: ConsumerContext> Reader<'a, C> {
    /// Reads `consumer`, in `order` when the task has several inputs.
    pub(crate) fn new(consumer: &'a BaseConsumer<C>, order: Option<TimeOrder>) -> Self {
        Reader {
            consumer,
            poller: Poller::new(consumer),
            order,
            bytes: None,
        }
    }

    /// This reader, counting the bytes of the keys and values it reads in `bytes` (when given).
    pub(crate) fn counting(self, bytes: Option<&'a AtomicU64>) -> Self {
        Reader { bytes, ..self }
    }

    /// Polls a micro-batch and hands it to `step`: as it came for a single input, as the runs whose
    /// turn it is for several (buffered records may be due although nothing new came). Returns how
    /// many records the poll fetched.
    pub(crate) fn read<S: Step>(&mut self, step: &mut S) -> Result<usize, Halt> {
        let batch = self.poller.poll();
        let polled = batch.len();
        if let Some(counter) = self.bytes {
            let bytes: usize = batch
                .iter()
                .map(|m| m.key().map_or(0, <[u8]>::len) + m.value().map_or(0, <[u8]>::len))
                .sum();
            counter.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        match &mut self.order {
            None if batch.is_empty() => {}
            None => step.process(0, batch)?,
            Some(order) => {
                for m in &batch {
                    order.push(m.topic(), std::slice::from_ref(m));
                }
                drop(batch);
                for (input, records) in order.ready(self.consumer) {
                    step.process(input, records)?;
                }
            }
        }
        Ok(polled)
    }
}

/// Runs a task's turns until `stop` is set (then finishes its step) or the step halts.
pub(crate) fn run<C: ConsumerContext, S: Step>(
    stop: &AtomicBool,
    reader: &mut Reader<'_, C>,
    step: &mut S,
) -> Result<(), Halt> {
    while !stop.load(Ordering::SeqCst) {
        if !step.ready()? {
            continue;
        }
        let polled = reader.read(step)?;
        step.settle(polled)?;
    }
    step.finish()
}

/// Commits the next offsets to consume (topic, partition, offset) to the consumer's group,
/// without waiting: a commit that fails is logged (the records after the last one that did are
/// read again after a restart).
pub(crate) fn commit<'t, C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    query: &str,
    offsets: impl IntoIterator<Item = (&'t str, i32, i64)>,
) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    if tpl.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(%query, "offset commit failed (records may be read again): {e}");
    }
}
