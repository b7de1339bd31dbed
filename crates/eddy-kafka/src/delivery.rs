//! Getting records into a topic: producer failures classified as worth retrying (the broker is
//! unreachable, a leader moved, a timeout) or permanent (the topic is gone, a record is too large,
//! not authorized), and the retry loop the query tasks wait in until their output is acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use eddy_runtime::Record;

use crate::cluster::{Deliveries, KafkaCluster};

/// Why records were not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The cluster may take them later: trying again can help.
    #[error("Kafka: {0}")]
    Retriable(String),
    /// The cluster refuses them for a reason that trying again does not change.
    #[error("Kafka refused the records for good: {0}")]
    Permanent(String),
}

impl DeliveryError {
    /// Classifies a producer error by its code.
    pub fn of(e: &KafkaError) -> Self {
        use RDKafkaErrorCode::*;
        let permanent = matches!(
            e.rdkafka_error_code(),
            Some(
                MessageSizeTooLarge
                    | InvalidMessageSize
                    | MessageBatchTooLarge
                    | InvalidMessage
                    | InvalidRecord
                    | InvalidTimestamp
                    | InvalidTopic
                    | UnknownTopic
                    | UnknownTopicOrPartition
                    | UnknownPartition
                    | TopicAuthorizationFailed
                    | ClusterAuthorizationFailed
                    | PolicyViolation
                    | Authentication
            )
        );
        if permanent {
            DeliveryError::Permanent(e.to_string())
        } else {
            DeliveryError::Retriable(e.to_string())
        }
    }
}

impl From<DeliveryError> for eddy_common::Error {
    fn from(e: DeliveryError) -> Self {
        eddy_common::Error::External(e.to_string())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_good_are_told_from_passing_trouble() {
        let produce = |code| KafkaError::MessageProduction(code);
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(matches!(
                DeliveryError::of(&produce(code)),
                DeliveryError::Permanent(_)
            ));
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert!(matches!(
                DeliveryError::of(&produce(code)),
                DeliveryError::Retriable(_)
            ));
        }
    }
}
