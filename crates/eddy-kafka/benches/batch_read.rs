//! Reading a consumer's messages a batch at a time — librdkafka's batch consumption, which rdkafka
//! does not wrap (Eddy's queries read so): once the consumer has its partitions, their fetched
//! messages are forwarded to a queue of the reader's and taken up to 4,096 per
//! `rd_kafka_consume_batch_queue` call; the consumer's own queue is still polled for its events and
//! the messages fetched before the forward.

use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

/// A consumer (subscribed or assigned) read in batches.
pub struct BatchReader {
    consumer: BaseConsumer,
    queue: *mut rd::rd_kafka_queue_t,
    slots: Vec<*mut rd::rd_kafka_message_t>,
    forwarded: bool,
}

impl BatchReader {
    pub fn new(consumer: BaseConsumer) -> Self {
        // SAFETY: the queue belongs to this consumer's client and is destroyed before it.
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        BatchReader {
            consumer,
            queue,
            slots: vec![std::ptr::null_mut(); 4096],
            forwarded: false,
        }
    }

    /// Reads one batch, waiting up to `wait_ms` for its first message, and calls `each` with every
    /// message's value (empty for none); returns how many messages came.
    pub fn read(&mut self, wait_ms: i32, mut each: impl FnMut(&[u8])) -> usize {
        let mut read = 0;
        // The consumer's events, and the messages fetched before the partitions were forwarded.
        while let Some(m) = self.consumer.poll(Duration::ZERO) {
            let m = m.expect("consumer");
            read += 1;
            each(m.payload().unwrap_or_default());
        }
        if !self.forwarded {
            self.forward();
        }
        // The first message waited for (a batch call waits until its slots are full), the rest as
        // they are. SAFETY: `slots` holds 4,096 pointers; each message returned is destroyed once.
        let (queue, slots) = (self.queue, &mut self.slots);
        let first =
            unsafe { rd::rd_kafka_consume_batch_queue(queue, wait_ms, slots.as_mut_ptr(), 1) };
        let rest = if first > 0 {
            unsafe { rd::rd_kafka_consume_batch_queue(queue, 0, slots[1..].as_mut_ptr(), 4095) }
        } else {
            0
        };
        let taken = usize::try_from(first.max(0) + rest.max(0)).unwrap_or(0);
        for &m in &slots[..taken] {
            // SAFETY: a message returned by the batch call, read then destroyed once.
            unsafe {
                assert_eq!(
                    (*m).err,
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                );
                let value = if (*m).payload.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts((*m).payload.cast::<u8>(), (*m).len)
                };
                each(value);
                rd::rd_kafka_message_destroy(m);
            }
        }
        read + taken
    }

    /// Forwards the partitions of the consumer's assignment to the reader's queue, once it has any.
    fn forward(&mut self) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let client = self.consumer.client().native_ptr();
        for p in assigned.elements() {
            let name = std::ffi::CString::new(p.topic()).expect("topic");
            // SAFETY: the partition's queue handle is released once forwarded.
            unsafe {
                let partition =
                    rd::rd_kafka_queue_get_partition(client, name.as_ptr(), p.partition());
                rd::rd_kafka_queue_forward(partition, self.queue);
                rd::rd_kafka_queue_destroy(partition);
            }
        }
        self.forwarded = assigned.count() > 0;
    }
}

impl Drop for BatchReader {
    fn drop(&mut self) {
        // SAFETY: no message of the queue is alive any more; the consumer is dropped after this.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}
