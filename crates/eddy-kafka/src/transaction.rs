//! Kafka transactions, for exactly-once output on brokers that have them: a task's own
//! transactional producer puts its output records, its changelog writes and (through the consumer
//! group) its input offsets in one transaction, which the broker commits or aborts as a whole;
//! readers with `isolation.level=read_committed` (every Eddy reader, librdkafka's default) never see
//! an aborted record. A zombie — a server cut off from the group that still writes — is fenced: its
//! offsets carry its group generation, which the broker refuses once the group moved on.

use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::Result;
use eddy_runtime::Record;

use crate::acks::{Acks, Producer};
use crate::client_settings::Role;
use crate::cluster::{Deliveries, KafkaCluster, kafka_err, send_on};
use crate::delivery_error::DeliveryError;

/// How long a transaction may stay open before the broker aborts it, beyond twice the time a task
/// keeps one open: what an open transaction of a crashed server holds up read_committed readers at
/// most (Kafka Streams' setting under exactly-once).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transactional call may wait for the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a transaction did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransactionError {
    /// It was aborted (or must be): nothing of it is visible; its input is to be processed again.
    #[error("the transaction was aborted: {0}")]
    Aborted(String),
    /// The producer cannot go on (fenced by a newer instance, or refused by the broker): the
    /// attempt ends.
    #[error("the transactional producer failed: {0}")]
    Fatal(String),
}

/// A task's transactional producer, with its open transaction, if any.
pub(crate) struct Transaction {
    producer: Producer,
    open: bool,
}

/// The transactional id of a query's task on this server: the same for every attempt in this
/// process, so that a new attempt's producer fences the last one and aborts what it left open.
pub(crate) fn transactional_id(cluster: &KafkaCluster, group_id: &str) -> String {
    format!("{group_id}-{:016x}", cluster.instance())
}

/// Whether exactly-once output goes through Kafka transactions on `cluster` (see
/// [`KafkaCluster::uses_transactions`]).
pub(crate) fn uses_transactions(cluster: &KafkaCluster) -> Result<bool> {
    cluster.uses_transactions(|| supported(cluster))
}

/// Asks the broker whether it has transactions, by starting a transactional producer. A broker that
/// answers with an error has none (nisshi: "Transactional Id authorization failed"); one that does
/// not answer is an error.
fn supported(cluster: &KafkaCluster) -> Result<bool> {
    let id = format!("eddy-probe-{:016x}", cluster.instance());
    let producer = match producer(cluster, &id, Duration::ZERO) {
        Ok(p) => p,
        Err(e) => return Err(kafka_err(e)),
    };
    match producer.init_transactions(CALL_TIMEOUT) {
        Ok(()) => {
            tracing::info!("the broker has transactions: exactly-once output uses them");
            Ok(true)
        }
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut) => {
            Err(kafka_err(e))
        }
        Err(e) => {
            tracing::warn!(
                "the broker refuses transactions ({e}): exactly-once output uses Eddy's own sink (readers see records before their input is checkpointed, zombies are not fenced)"
            );
            Ok(false)
        }
    }
}

/// A transactional producer whose transactions stay open for about `open_for`.
fn producer(
    cluster: &KafkaCluster,
    id: &str,
    open_for: Duration,
) -> std::result::Result<Producer, KafkaError> {
    let timeout = TRANSACTION_TIMEOUT.saturating_add(open_for.saturating_mul(2));
    cluster
        .client_config(Role::Producer)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout.as_millis().to_string())
        .create_with_context(Acks)
}

impl Transaction {
    /// A transactional producer with id `id`, whose transactions stay open for about `open_for`;
    /// earlier producers with that id are fenced and their open transaction aborted.
    pub(crate) fn start(
        cluster: &KafkaCluster,
        id: &str,
        open_for: Duration,
    ) -> std::result::Result<Self, String> {
        let producer = producer(cluster, id, open_for)
            .map_err(|e| format!("cannot create the producer: {e}"))?;
        producer
            .init_transactions(CALL_TIMEOUT)
            .map_err(|e| format!("the broker refused transactions: {e}"))?;
        Ok(Transaction {
            producer,
            open: false,
        })
    }

    /// Hands records to the producer inside the open transaction (beginning one if none is open).
    /// A failure to deliver them surfaces when the transaction commits.
    pub(crate) fn send(
        &mut self,
        topic: &str,
        records: &[Record],
    ) -> std::result::Result<Deliveries, TransactionError> {
        if !self.open {
            self.producer.begin_transaction().map_err(classify)?;
            self.open = true;
        }
        send_on(&self.producer, topic, records, &[]).map_err(|e| match e {
            DeliveryError::Retriable(m) | DeliveryError::Permanent(m) => {
                TransactionError::Aborted(m)
            }
        })
    }

    /// Whether a transaction is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Commits the open transaction with `offsets` (topic, partition, next offset) as the consumer
    /// group's committed input offsets. A transaction that must be aborted is aborted here.
    pub(crate) fn commit(
        &mut self,
        offsets: &[(&str, i32, i64)],
        group: Option<&ConsumerGroupMetadata>,
    ) -> std::result::Result<(), TransactionError> {
        if !self.open {
            return Ok(());
        }
        let committed = self.try_commit(offsets, group);
        if let Err(TransactionError::Aborted(_)) = &committed {
            self.abort()?;
        }
        self.open = false;
        committed
    }

    fn try_commit(
        &mut self,
        offsets: &[(&str, i32, i64)],
        group: Option<&ConsumerGroupMetadata>,
    ) -> std::result::Result<(), TransactionError> {
        if let Some(group) = group
            && !offsets.is_empty()
        {
            let mut tpl = TopicPartitionList::new();
            for (topic, p, o) in offsets {
                tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                    .map_err(|e| TransactionError::Aborted(e.to_string()))?;
            }
            self.producer
                .send_offsets_to_transaction(&tpl, group, CALL_TIMEOUT)
                .map_err(classify)?;
        }
        // A commit that timed out may be retried; it commits at most once.
        let mut tries = 3;
        loop {
            match self.producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e)) if e.is_retriable() && tries > 1 => tries -= 1,
                Err(e) => return Err(classify(e)),
            }
        }
    }

    /// Aborts the open transaction: nothing sent in it becomes visible.
    pub(crate) fn abort(&mut self) -> std::result::Result<(), TransactionError> {
        if self.open {
            self.open = false;
            self.producer
                .abort_transaction(CALL_TIMEOUT)
                .map_err(|e| TransactionError::Fatal(format!("aborting failed: {e}")))?;
        }
        Ok(())
    }
}

/// Abortable or fatal, as librdkafka classifies a transactional error.
fn classify(e: KafkaError) -> TransactionError {
    match &e {
        KafkaError::Transaction(t) if t.is_fatal() => TransactionError::Fatal(e.to_string()),
        KafkaError::Transaction(t) if !t.txn_requires_abort() && !t.is_retriable() => {
            TransactionError::Fatal(e.to_string())
        }
        _ => TransactionError::Aborted(e.to_string()),
    }
}
