//! A consumed message held until its micro-batch is done: taken a batch at a time
//! (`rd_kafka_consume_batch_queue`, which rdkafka does not wrap) and given back to librdkafka when
//! dropped (into its reader's `disposal` bin), or polled one at a time through rdkafka. Both are
//! read through a `MessageView`.

use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

use eddy_runtime::RecordRef;

use crate::disposal::Bin;
use crate::message_view::MessageView;

/// A consumed message; it cannot outlive the consumer it came from (`'a`).
pub(crate) struct Consumed<'a> {
    /// The message's fields (private: a view must not outlive a message taken from a batch).
    view: MessageView<'a>,
    owner: Owner<'a>,
}

/// Who gives a message back to librdkafka.
enum Owner<'a> {
    /// Taken from a batch: put in its reader's bin when dropped.
    Batch(Bin),
    /// Polled through rdkafka, which destroys it with its event (kept alive here).
    Polled { _message: BorrowedMessage<'a> },
}

impl<'a> Consumed<'a> {
    /// Takes ownership of a message returned by `rd_kafka_consume_batch_queue`, put in `bin` when
    /// dropped.
    ///
    /// # Safety
    /// `message` must be such a message, not destroyed yet, of a consumer that outlives `'a` and
    /// the reader `bin` belongs to.
    pub(crate) unsafe fn taken(message: NonNull<rd::rd_kafka_message_t>, bin: Bin) -> Self {
        Consumed {
            // SAFETY: the message lives until this is dropped (see above).
            view: unsafe { MessageView::new(message) },
            owner: Owner::Batch(bin),
        }
    }

    /// A message polled through rdkafka (none for a null pointer, which rdkafka never makes).
    pub(crate) fn polled(message: BorrowedMessage<'a>) -> Option<Self> {
        let message_ptr = NonNull::new(message.ptr())?;
        Some(Consumed {
            // SAFETY: the polled message is kept alive with its event in `owner`.
            view: unsafe { MessageView::new(message_ptr) },
            owner: Owner::Polled { _message: message },
        })
    }

    /// The error librdkafka reports in place of a message, if any (see `MessageView::error`).
    pub(crate) fn error(&self) -> Option<String> {
        self.view.error()
    }

    /// The topic the message was read from.
    pub(crate) fn topic(&self) -> &str {
        self.view.topic()
    }
}

impl RecordRef for Consumed<'_> {
    fn key(&self) -> Option<&[u8]> {
        self.view.key()
    }
    fn value(&self) -> Option<&[u8]> {
        self.view.value()
    }
    fn timestamp(&self) -> i64 {
        self.view.timestamp()
    }
    fn partition(&self) -> i32 {
        self.view.partition()
    }
    fn offset(&self) -> i64 {
        self.view.offset()
    }
    fn header_count(&self) -> usize {
        self.view.header_count()
    }
    fn header(&self, i: usize) -> Option<(&str, Option<&[u8]>)> {
        self.view.header(i)
    }
}

impl Drop for Consumed<'_> {
    fn drop(&mut self) {
        if let Owner::Batch(bin) = &self.owner {
            let message = NonNull::from(self.view.raw());
            // SAFETY: a message taken from a batch is ours (see `taken`), put in the bin once and
            // not read after.
            unsafe { bin.put(message) }
        }
    }
}
