//! A running query's counters and last error, and how it counts and logs the records it skips.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eddy_runtime::format::DecodeError;
use eddy_runtime::format::limits::cut;
use eddy_runtime::{ProcessedBatch, RecordRef};

use crate::latency::Latency;
use crate::processing_log::ProcessingLog;

/// Counters of a running query, shown by `SHOW QUERIES EXTENDED` and `DESCRIBE EXTENDED`.
#[derive(Debug, Default)]
pub struct QueryStats {
    pub consumed: AtomicU64,
    /// The bytes of the keys and values of the records read from the query's input topics.
    pub consumed_bytes: AtomicU64,
    pub produced: AtomicU64,
    /// Records skipped because they could not be processed (decoded, placed in a window, ...).
    pub decode_errors: AtomicU64,
    /// Expression failures (the expression yielded NULL).
    pub expression_errors: AtomicU64,
    /// Records dropped because they came after their window closed (window and grace period).
    pub late_records: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// How many times the query failed and was started again.
    pub restarts: AtomicU64,
    /// From its records' timestamps to the sink's acknowledgement (stateless queries).
    pub latency: Latency,
    /// Why the query is failing, while it is (it waits to be tried again, or is being retried and
    /// has not yet got past the failure).
    failure: Mutex<Option<String>>,
    /// Where skipped records and failures are logged besides the server log.
    log: Option<Arc<ProcessingLog>>,
}

impl QueryStats {
    /// Counters of a query that logs what it skips and its failures to `log` too.
    pub(crate) fn logged_to(log: Option<Arc<ProcessingLog>>) -> Self {
        QueryStats {
            log,
            ..QueryStats::default()
        }
    }

    /// Counts and logs what went wrong processing `records`.
    pub(crate) fn record_errors<R: RecordRef>(
        &self,
        query: &str,
        topic: &str,
        processed: &ProcessedBatch,
        records: &[R],
    ) {
        if !processed.decode_errors.is_empty() {
            // The skipped records' bytes, when the processing log holds them.
            let index: HashMap<(i32, i64), &R> =
                if self.log.as_ref().is_some_and(|l| l.includes_rows()) {
                    records
                        .iter()
                        .map(|r| ((r.partition(), r.offset()), r))
                        .collect()
                } else {
                    HashMap::new()
                };
            for e in &processed.decode_errors {
                let record = index
                    .get(&(e.partition, e.offset))
                    .and_then(|r| bytes_of(*r));
                self.skipped(query, topic, e, record);
            }
        }
        if let Some(first) = processed.expression_errors.first() {
            let first = cut(first);
            // One line per batch: a failing function can fail every record.
            tracing::warn!(
                query,
                topic,
                failures = processed.expression_errors.len(),
                "expressions failed (their results are NULL, or the rows were left out of aggregates): {first}"
            );
            *lock(&self.last_error) = Some(first.into_owned());
        }
        self.expression_errors
            .fetch_add(processed.expression_errors.len() as u64, Ordering::Relaxed);
        if processed.late_records > 0 {
            // One line per batch, as Kafka Streams counts them in its dropped-records metric.
            tracing::warn!(
                query,
                topic,
                records = processed.late_records,
                "dropped records that came after their window closed (its size and grace period)"
            );
            self.late_records
                .fetch_add(processed.late_records as u64, Ordering::Relaxed);
        }
    }

    /// Counts and logs one skipped record (`record`: its bytes, for the processing log).
    pub(crate) fn skipped(&self, query: &str, topic: &str, e: &DecodeError, record: Option<&[u8]>) {
        tracing::warn!(
            query,
            topic,
            partition = e.partition,
            offset = e.offset,
            "skipped a record: {}",
            e.message
        );
        *lock(&self.last_error) = Some(format!(
            "{topic}/{}@{}: {}",
            e.partition, e.offset, e.message
        ));
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = &self.log {
            log.skipped(query, topic, e, record);
        }
    }

    /// Logs an error the query recovers from by itself, and keeps it as its last error.
    pub(crate) fn recovered(&self, query: &str, message: &str) {
        tracing::error!(query, "{message}");
        *lock(&self.last_error) = Some(message.to_string());
    }

    /// Why the query is failing, if it is.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// The query failed: it is in `ERROR` until an attempt gets past the failure.
    pub(crate) fn fail(&self, query: &str, reason: &str) {
        if let Some(log) = &self.log {
            log.failed(query, reason);
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(reason.to_string());
        *lock(&self.failure) = Some(reason.to_string());
    }

    /// The query made progress: it is running again.
    pub(crate) fn progressed(&self) {
        let mut failure = lock(&self.failure);
        if failure.is_some() {
            *failure = None;
        }
    }
}

/// The bytes of a record the processing log shows: its value, else its key.
pub(crate) fn bytes_of<R: RecordRef>(record: &R) -> Option<&[u8]> {
    record.value().or_else(|| record.key())
}

/// Locks a mutex holding only counters or messages (nothing a panic can leave half-changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
