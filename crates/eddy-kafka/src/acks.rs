//! Eddy's producers and their acknowledgements: records handed over as a batch are acknowledged into
//! one count per batch by the producer's delivery callback, where rdkafka's `FutureProducer` makes a
//! channel, a future and a wake-up per record (a third of a sending thread's time).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rdkafka::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};

use crate::delivery_error::DeliveryError;

/// A producer of Eddy's: its own thread serves librdkafka's delivery reports.
pub type Producer = ThreadedProducer<Acks>;

/// The context of Eddy's producers: counts each record's delivery into its batch's [`Batch`].
pub struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Arc<Batch>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<Batch>) {
        batch.delivered(match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(DeliveryError::of(e)),
        });
    }
}

/// The records of a batch handed to a producer, counted down as the broker acknowledges them.
pub struct Batch {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Records handed over and not yet reported.
    waiting: usize,
    /// Per partition, the offset after the last record acknowledged there.
    ends: BTreeMap<i32, i64>,
    /// The first failure reported.
    failure: Option<DeliveryError>,
}

impl Batch {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Batch {
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more record is being handed over (counted before librdkafka may report it).
    pub(crate) fn handing(&self) {
        self.state().waiting += 1;
    }

    /// A record was not handed over after all (the producer refused it).
    pub(crate) fn withdrawn(&self) {
        self.delivered_count(None);
    }

    fn delivered(&self, result: Result<(i32, i64), DeliveryError>) {
        self.delivered_count(Some(result));
    }

    fn delivered_count(&self, result: Option<Result<(i32, i64), DeliveryError>>) {
        let mut state = self.state();
        match result {
            Some(Ok((partition, offset))) => {
                let end = state.ends.entry(partition).or_insert(0);
                *end = (offset + 1).max(*end);
            }
            Some(Err(e)) => {
                state.failure.get_or_insert(e);
            }
            None => {}
        }
        state.waiting = state.waiting.saturating_sub(1);
        if state.waiting == 0 {
            self.done.notify_all();
        }
    }

    /// Waits until every record handed over is reported; per partition the offset after the last
    /// record acknowledged there, or the first failure.
    pub(crate) fn wait(&self) -> Result<BTreeMap<i32, i64>, DeliveryError> {
        let mut state = self.state();
        while state.waiting > 0 {
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        match state.failure.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut state.ends)),
        }
    }
}
