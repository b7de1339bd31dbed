//! Producer failures classified as worth retrying (the broker is unreachable, a leader moved, a
//! timeout) or permanent (the topic is gone, a record is too large, not authorized).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

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
