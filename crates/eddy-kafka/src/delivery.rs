//! Getting records into a topic: the retry loop the query tasks wait in until their output is
//! acknowledged, going on while a failure is worth retrying (see `delivery_error`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eddy_runtime::Record;

use crate::cluster::{Deliveries, KafkaCluster};
use crate::delivery_error::DeliveryError;

/// Why a query task's step did not finish ([`deliver`] giving up, among others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Halt {
    /// The task is stopping: what was not finished (acknowledged, committed) is done again after a
    /// restart.
    Stopping,
    /// The query cannot go on (the cluster refuses its output for good, its state cannot be
    /// trusted): it fails, and is retried after a backoff.
    Failed(String),
}

impl Halt {
    /// What the end of an attempt is for its supervisor: stopping is a normal end.
    pub(crate) fn into_result(self) -> Result<(), String> {
        match self {
            Halt::Stopping => Ok(()),
            Halt::Failed(reason) => Err(reason),
        }
    }
}

/// Waits for the acknowledgements of records handed to the producer (`sent`), producing them again
/// while the failures are worth retrying; gives up on a permanent failure, or when the task is
/// stopping.
pub(crate) fn deliver(
    cluster: &KafkaCluster,
    query: &str,
    topic: &str,
    records: &[Record],
    sent: Result<Deliveries, DeliveryError>,
    stop: &AtomicBool,
) -> Result<(), Halt> {
    let mut result = sent.and_then(Deliveries::wait);
    let mut attempt: u64 = 0;
    loop {
        match result {
            Ok(()) => return Ok(()),
            Err(DeliveryError::Permanent(reason)) => {
                tracing::error!(query, "producing to {topic} failed for good: {reason}");
                return Err(Halt::Failed(format!(
                    "producing to {topic} failed: {reason}"
                )));
            }
            Err(DeliveryError::Retriable(reason)) => {
                attempt += 1;
                tracing::warn!(query, attempt, "producing to {topic} failed: {reason}");
                if stop.load(Ordering::SeqCst) && attempt > 3 {
                    return Err(Halt::Stopping);
                }
                std::thread::sleep(Duration::from_millis(200 * attempt.min(25)));
                result = cluster.send(topic, records).and_then(Deliveries::wait);
            }
        }
    }
}
