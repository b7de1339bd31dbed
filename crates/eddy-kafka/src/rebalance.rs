//! A consumer context that hands a task the partitions its group assigns and revokes. The callback
//! runs inside the consumer's poll, under librdkafka, where a panic cannot unwind: a panic there is
//! caught and kept, and the task's next step ends the attempt with it.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::supervisor::panic_message;

/// A task whose partitions move with its consumer group.
pub(crate) trait Rebalancing: Send + Sync + Sized + 'static {
    /// Takes or gives up the partitions in `tpl` (`err` says which), and assigns or unassigns them.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    );

    /// Where a panic in [`Rebalancing::rebalance`] is kept.
    fn broken(&self) -> &Mutex<Option<String>>;

    /// The panic kept by the last rebalance, if one panicked (taken: it is reported once).
    fn take_broken(&self) -> Option<String> {
        self.broken()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The consumer context of a [`Rebalancing`] task.
pub(crate) struct Rebalance<T>(pub(crate) Arc<T>);

impl<T: Rebalancing> ClientContext for Rebalance<T> {}

impl<T: Rebalancing> ConsumerContext for Rebalance<T> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let task = &self.0;
        let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            task.rebalance(consumer, err, tpl)
        }));
        if let Err(panic) = moved {
            let message = format!(
                "the query panicked while its partitions moved: {}",
                panic_message(panic.as_ref())
            );
            *task.broken().lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        }
    }
}
