//! Reading a consumer in micro-batches: its messages as records, and the offsets a batch moves to.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use eddy_runtime::RecordRef;

/// Records per micro-batch, and how long to wait for the first record of one.
const MAX_BATCH: usize = 4096;
const WAIT: Duration = Duration::from_millis(20);

/// A consumed message, read as a record.
pub(crate) struct Msg<'a>(pub(crate) BorrowedMessage<'a>);

impl RecordRef for Msg<'_> {
    fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }
    fn value(&self) -> Option<&[u8]> {
        self.0.payload()
    }
    fn timestamp(&self) -> i64 {
        self.0.timestamp().to_millis().unwrap_or(0)
    }
    fn partition(&self) -> i32 {
        self.0.partition()
    }
    fn offset(&self) -> i64 {
        self.0.offset()
    }
    fn header_count(&self) -> usize {
        self.0.headers().map_or(0, |h| h.count())
    }
    fn header(&self, i: usize) -> Option<(&str, Option<&[u8]>)> {
        let header = self.0.headers()?.try_get(i)?;
        Some((header.key, header.value))
    }
}

/// Polls up to a micro-batch of messages: waits up to [`WAIT`] for the first, then takes what the
/// consumer already holds and returns — a record is processed as soon as it is fetched (at a high
/// rate the consumer holds a whole batch; at a low one nothing waits for company).
pub(crate) fn poll_batch<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Vec<Msg<'_>> {
    let mut batch = Vec::new();
    while batch.len() < MAX_BATCH {
        let wait = if batch.is_empty() {
            WAIT
        } else {
            Duration::ZERO
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => batch.push(Msg(m)),
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
