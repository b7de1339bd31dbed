//! Stateless persistent queries with exactly-once output through Kafka transactions (on brokers that
//! have them; see `transaction`). The output of every batch read within [`TRANSACTION_SPAN`] (or the
//! commit interval, when shorter) and the input offsets after them are committed in one
//! transaction; when a transaction is aborted, the input is read again from the offsets the last
//! committed one left. When partitions are revoked, the open transaction is aborted before anything
//! else: committed after the rebalance, under the group's new generation, it would commit offsets of
//! partitions another member already reads again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::Result;
use eddy_runtime::{PersistentQuery, RecordRef};

use crate::cluster::KafkaCluster;
use crate::consume::{Reader, Step, run};
use crate::delivery::Halt;
use crate::poll::next_offsets;
use crate::query_io::output_records;
use crate::query_stats::QueryStats;
use crate::query_task::{QueryTask, TaskConfig};
use crate::supervisor::Failure;
use crate::transaction::{Transaction, TransactionError, transactional_id};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transaction stays open at most: Kafka Streams' commit interval under exactly-once, the
/// latency a read_committed reader of the output sees.
const TRANSACTION_SPAN: Duration = Duration::from_millis(100);

/// Starts an exactly-once stateless persistent query over transactions (consumer settings in
/// `config`).
pub(crate) fn start(
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    task: &TaskConfig,
    config: ClientConfig,
    name: String,
) -> Result<QueryTask> {
    let topic = query.pipeline.source().topic.clone();
    let id = transactional_id(&cluster, &task.group_id);
    let offset_reset = task.offset_reset.clone();
    let config = config
        .clone()
        .set("isolation.level", "read_committed")
        // Eager rebalancing: a revocation takes every partition, and each comes back at its
        // committed offset.
        .set("partition.assignment.strategy", "range")
        .clone();
    let metrics = task.metrics;
    QueryTask::supervised(name, query.id.clone(), task, move |stop, stats| {
        // Every attempt starts from the offsets the last committed transaction left; its producer
        // fences the last attempt's and aborts what that left open.
        let span = query.commit_interval.min(TRANSACTION_SPAN);
        let transaction = Transaction::start(&cluster, &id, span)?;
        let consumer: BaseConsumer<Revocations> = config
            .create_with_context(Revocations::default())
            .map_err(|e| format!("cannot create the query's consumer: {e}"))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
        let mut step = Transactional {
            consumer: &consumer,
            query: &query,
            topic: &topic,
            stats,
            transaction,
            offsets: BTreeMap::new(),
            produced: 0,
            latest: offset_reset == "latest",
            span,
            opened: Instant::now(),
        };
        run(
            stop,
            &mut Reader::new(&consumer, None).counting(metrics.then_some(&stats.consumed_bytes)),
            &mut step,
        )
        .or_else(Halt::into_result)
    })
}

/// The consumer context of a transactional query: notes that partitions were revoked.
#[derive(Default)]
struct Revocations(AtomicBool);

impl ClientContext for Revocations {}

impl ConsumerContext for Revocations {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The loop's step of a transactional query, with its open transaction.
struct Transactional<'a> {
    consumer: &'a BaseConsumer<Revocations>,
    query: &'a PersistentQuery,
    topic: &'a str,
    stats: &'a QueryStats,
    transaction: Transaction,
    /// Next input offset per partition after the records in the open transaction.
    offsets: BTreeMap<i32, i64>,
    /// Output records in the open transaction.
    produced: u64,
    /// A partition without committed offsets starts at its end (`auto.offset.reset=latest`).
    latest: bool,
    /// How long a transaction stays open.
    span: Duration,
    /// When the open transaction was opened.
    opened: Instant,
}

impl Step for Transactional<'_> {
    fn process<R: RecordRef>(&mut self, _: usize, batch: Vec<R>) -> Result<(), Halt> {
        if self.revoked()? {
            return Ok(());
        }
        let records = output_records(self.query, self.stats, (0, self.topic), &batch);
        self.stats
            .consumed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (p, o) in next_offsets(&batch) {
            self.offsets.insert(p, o);
        }
        drop(batch);
        if !self.transaction.is_open() {
            self.opened = Instant::now();
        }
        match self.transaction.send(&self.query.sink_spec.topic, &records) {
            Ok(_) => self.produced += records.len() as u64,
            Err(e) => self.aborted(e).map_err(Halt::Failed)?,
        }
        Ok(())
    }

    /// Commits the open transaction once it has been open for its span.
    fn settle(&mut self, _: usize) -> Result<(), Halt> {
        self.revoked()?;
        if self.transaction.is_open() && self.opened.elapsed() >= self.span {
            self.commit().map_err(Halt::Failed)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Halt> {
        if self.transaction.is_open() {
            self.commit().map_err(Halt::Failed)?;
        }
        Ok(())
    }
}

impl Transactional<'_> {
    /// Whether partitions were revoked since the last look: then the open transaction is aborted,
    /// and records read after the new assignment are read again from the committed offsets too.
    fn revoked(&mut self) -> Result<bool, Halt> {
        if !self.consumer.context().0.swap(false, Ordering::SeqCst) {
            return Ok(false);
        }
        self.transaction
            .abort()
            .map_err(|e| Halt::Failed(e.to_string()))?;
        tracing::info!(query = %self.query.id, "partitions were revoked: the open transaction was aborted");
        self.rewind().map_err(Halt::Failed)?;
        Ok(true)
    }

    /// Commits the open transaction with the input offsets after it.
    fn commit(&mut self) -> std::result::Result<(), Failure> {
        let offsets: Vec<(&str, i32, i64)> = self
            .offsets
            .iter()
            .map(|(p, o)| (self.topic, *p, *o))
            .collect();
        let group = self.consumer.group_metadata();
        match self.transaction.commit(&offsets, group.as_ref()) {
            Ok(()) => {
                self.stats
                    .produced
                    .fetch_add(self.produced, Ordering::Relaxed);
                self.offsets.clear();
                self.produced = 0;
                self.stats.progressed();
                Ok(())
            }
            Err(e) => self.aborted(e),
        }
    }

    /// After a transaction was aborted, the input is read again from the committed offsets; a
    /// fatal failure ends the attempt.
    fn aborted(&mut self, e: TransactionError) -> std::result::Result<(), Failure> {
        let TransactionError::Aborted(reason) = &e else {
            return Err(e.to_string());
        };
        self.transaction.abort().map_err(|e| e.to_string())?;
        self.stats.recovered(
            &self.query.id,
            &format!("a transaction was aborted ({reason}); its input is read again"),
        );
        self.rewind()
    }

    /// Moves the consumer back to the committed offsets of the partitions it has.
    fn rewind(&mut self) -> std::result::Result<(), Failure> {
        self.offsets.clear();
        self.produced = 0;
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| format!("cannot read the assignment: {e}"))?;
        if assigned.count() == 0 {
            return Ok(());
        }
        let committed = self
            .consumer
            .committed_offsets(assigned, METADATA_TIMEOUT)
            .map_err(|e| format!("cannot read the committed offsets: {e}"))?;
        let mut rewind = TopicPartitionList::new();
        for e in committed.elements() {
            let to = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                // Nothing committed yet: where the group starts.
                _ if self.latest => Offset::End,
                _ => Offset::Beginning,
            };
            let _ = rewind.add_partition_offset(e.topic(), e.partition(), to);
        }
        self.consumer
            .seek_partitions(rewind, METADATA_TIMEOUT)
            .map_err(|e| format!("cannot read the input again: {e}"))?;
        Ok(())
    }
}
