//! ksqlDB's processing log: one JSON entry per skipped record and per query failure, written to the
//! topic `<service id>ksql_processing_log` in ksqlDB's layout (`LOGGER`, `LEVEL`, `TIME`, `MESSAGE`
//! with a typed error struct), so users read it with SQL after
//! `CREATE STREAM KSQL_PROCESSING_LOG (...) WITH (KAFKA_TOPIC='<topic>', VALUE_FORMAT='JSON')`.
//! Eddy adds the record's partition and offset to deserialization and record-processing errors.
//! The record's bytes (base64, at most [`MAX_RECORD_BYTES`] of them) are written only when asked for
//! (ksqlDB's `ksql.logging.processing.rows.include`, off by default: rows may hold personal data).

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;

use eddy_common::Result;
use eddy_runtime::TopicAdmin;
use eddy_runtime::format::{DecodeError, SkipKind};

use crate::cluster::{InternalTopic, KafkaCluster, now_millis};

/// ksqlDB's message types.
const DESERIALIZATION_ERROR: i32 = 0;
const RECORD_PROCESSING_ERROR: i32 = 1;
const KAFKA_STREAMS_THREAD_ERROR: i32 = 4;

/// Most bytes of a skipped record an entry holds: an entry stays far below the broker's record size
/// limit whatever the record.
pub const MAX_RECORD_BYTES: usize = 16 << 10;

/// Where a service's processing log goes.
pub struct ProcessingLog {
    cluster: Arc<KafkaCluster>,
    topic: String,
    /// Entries of skipped records hold the record's bytes.
    rows: bool,
}

impl std::fmt::Debug for ProcessingLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessingLog")
            .field("topic", &self.topic)
            .finish()
    }
}

/// The topic of a service's processing log (ksqlDB's default name).
pub fn processing_log_topic(service_id: &str) -> String {
    format!("{service_id}ksql_processing_log")
}

/// One entry, as ksqlDB writes it.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    level: &'static str,
    logger: String,
    time: i64,
    message: Message<'a>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: i32,
    deserialization_error: Option<Skipped<'a>>,
    record_processing_error: Option<Skipped<'a>>,
    production_error: Option<Reason<'a>>,
    serialization_error: Option<Reason<'a>>,
    kafka_streams_thread_error: Option<ThreadError<'a>>,
}

/// A skipped record: ksqlDB's fields, then where the record is.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Skipped<'a> {
    error_message: &'a str,
    #[serde(rename = "recordB64")]
    record_b64: Option<&'a str>,
    cause: [&'a str; 0],
    topic: &'a str,
    partition: i32,
    offset: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reason<'a> {
    error_message: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThreadError<'a> {
    error_message: &'a str,
    thread_name: &'a str,
    cause: [&'a str; 0],
}

impl ProcessingLog {
    /// The processing log of `service_id`, creating its topic (one partition) when missing.
    pub fn open(cluster: Arc<KafkaCluster>, service_id: &str) -> Result<Self> {
        let topic = processing_log_topic(service_id);
        if cluster.partitions(&topic)?.is_none() {
            cluster.create_internal_topic(&topic, InternalTopic::Server, 1, &[])?;
        }
        Ok(ProcessingLog {
            cluster,
            topic,
            rows: false,
        })
    }

    /// Whether entries of skipped records hold the record's bytes
    /// (`ksql.logging.processing.rows.include`).
    pub fn with_rows(mut self, rows: bool) -> Self {
        self.rows = rows;
        self
    }

    pub(crate) fn includes_rows(&self) -> bool {
        self.rows
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Logs a record query `query` skipped while reading `topic` (`record`: its bytes, when the
    /// log holds them).
    pub(crate) fn skipped(&self, query: &str, topic: &str, e: &DecodeError, record: Option<&[u8]>) {
        let record_b64 = record.filter(|_| self.rows).map(record_b64);
        let skipped = Skipped {
            error_message: &e.message,
            record_b64: record_b64.as_deref(),
            cause: [],
            topic,
            partition: e.partition,
            offset: e.offset,
        };
        let (step, message) = match e.kind {
            SkipKind::Deserialization => (
                "KsqlTopic.Source.deserializer",
                Message {
                    kind: DESERIALIZATION_ERROR,
                    deserialization_error: Some(skipped),
                    ..Message::default()
                },
            ),
            SkipKind::Processing => (
                "Process",
                Message {
                    kind: RECORD_PROCESSING_ERROR,
                    record_processing_error: Some(skipped),
                    ..Message::default()
                },
            ),
        };
        self.write(query, step, message);
    }

    /// Logs that query `query` failed (it is retried after a backoff).
    pub(crate) fn failed(&self, query: &str, reason: &str) {
        let message = Message {
            kind: KAFKA_STREAMS_THREAD_ERROR,
            kafka_streams_thread_error: Some(ThreadError {
                error_message: reason,
                thread_name: query,
                cause: [],
            }),
            ..Message::default()
        };
        self.write(query, "Thread", message);
    }

    fn write(&self, query: &str, step: &str, message: Message<'_>) {
        let entry = Entry {
            level: "ERROR",
            logger: format!("processing.{query}.{step}"),
            time: now_millis(),
            message,
        };
        let Ok(value) = serde_json::to_vec(&entry) else {
            return;
        };
        let record = eddy_runtime::Record {
            key: None,
            value: Some(value),
            timestamp: entry.time,
            partition: -1,
            offset: 0,
            headers: Vec::new(),
        };
        // Not waited for: a log entry never holds a query up; a lost one leaves the counters.
        if let Err(e) = self.cluster.send(&self.topic, &[record]) {
            tracing::debug!("writing to the processing log failed: {e}");
        }
    }
}

/// A skipped record's bytes as an entry holds them: base64, at most [`MAX_RECORD_BYTES`] of them.
fn record_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len().min(MAX_RECORD_BYTES)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_bytes_are_base64_and_cut() {
        assert_eq!(record_b64(b"{\"a\":"), "eyJhIjo=");
        let long = record_b64(&vec![b'x'; 900 << 10]);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(long)
            .unwrap();
        assert_eq!(decoded.len(), MAX_RECORD_BYTES);
    }

    #[test]
    fn entries_have_ksqldbs_layout() {
        let entry = Entry {
            level: "ERROR",
            logger: "processing.CSAS_S_1.KsqlTopic.Source.deserializer".into(),
            time: 7,
            message: Message {
                kind: DESERIALIZATION_ERROR,
                deserialization_error: Some(Skipped {
                    error_message: "bad",
                    record_b64: None,
                    cause: [],
                    topic: "t",
                    partition: 2,
                    offset: 9,
                }),
                ..Message::default()
            },
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"level":"ERROR","logger":"processing.CSAS_S_1.KsqlTopic.Source.deserializer","time":7,"message":{"type":0,"deserializationError":{"errorMessage":"bad","recordB64":null,"cause":[],"topic":"t","partition":2,"offset":9},"recordProcessingError":null,"productionError":null,"serializationError":null,"kafkaStreamsThreadError":null}}"#
        );
    }
}
