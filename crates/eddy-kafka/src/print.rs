//! `PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`: tails a topic's raw records as text lines,
//! guessing their formats as ksqlDB does (`rowtime: …, key: …, value: …, partition: …`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use eddy_common::{Result, plan_err};
use eddy_runtime::TopicAdmin;

use crate::cluster::{KafkaCluster, kafka_err};
use crate::query_task::QueryTask;

/// What to print.
#[derive(Debug, Clone)]
pub struct PrintSpec {
    pub topic: String,
    pub from_beginning: bool,
    /// Print every n-th record (1: all).
    pub interval: u64,
    pub limit: Option<u64>,
}

/// Starts printing; the receiver gets text (lines ending in `\n`) and closes after `LIMIT` records.
pub fn start_print(
    cluster: &KafkaCluster,
    spec: PrintSpec,
    group_id: String,
) -> Result<(mpsc::Receiver<String>, QueryTask)> {
    let Some(partitions) = cluster.partitions(&spec.topic)? else {
        return Err(plan_err!(
            "Could not find topic '{}', or the KSQL user does not have permissions to list the topic. Topic names are case-sensitive.",
            spec.topic
        ));
    };
    let consumer: BaseConsumer = cluster
        .reader_config()
        .set("group.id", &group_id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka_err)?;
    let start = if spec.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(&spec.topic, p, start)
            .map_err(kafka_err)?;
    }
    consumer.assign(&assignment).map_err(kafka_err)?;
    let (tx, rx) = mpsc::channel(64);
    let task = QueryTask::spawn(format!("print-{group_id}"), move |stop, _| {
        let mut seen = 0u64;
        let mut printed = 0u64;
        while !stop.load(Ordering::SeqCst) && !tx.is_closed() {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            seen += 1;
            if !(seen - 1).is_multiple_of(spec.interval.max(1)) {
                continue;
            }
            let mut text = String::new();
            if printed == 0 {
                text.push_str(&format!(
                    "Key format: {}\nValue format: {}\n",
                    formats(m.key()).join(" or "),
                    formats(m.payload()).join(" or ")
                ));
            }
            let rowtime = m.timestamp().to_millis().unwrap_or(0);
            text.push_str(&line(rowtime, m.key(), m.payload(), m.partition()));
            printed += 1;
            if tx.blocking_send(text).is_err() || spec.limit.is_some_and(|l| printed >= l) {
                break;
            }
        }
    })?;
    Ok((rx, task))
}

/// The formats a payload could be in, most specific first.
pub fn formats(bytes: Option<&[u8]>) -> Vec<&'static str> {
    let Some(b) = bytes.filter(|b| !b.is_empty()) else {
        return vec!["<null>"];
    };
    let mut out = Vec::new();
    if matches!(b.first(), Some(b'{' | b'['))
        && serde_json::from_slice::<serde_json::Value>(b).is_ok()
    {
        out.push("JSON");
    }
    match b.len() {
        4 => out.push("KAFKA_INT"),
        8 => out.extend(["KAFKA_BIGINT", "KAFKA_DOUBLE"]),
        _ => {}
    }
    if printable(b) {
        out.push("KAFKA_STRING");
    }
    if out.is_empty() {
        out.push("KAFKA_BYTES");
    }
    out
}

fn printable(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(|s| !s.chars().any(|c| c.is_control() && c != '\t'))
}

/// A payload as PRINT shows it: text as is, 4 and 8 byte binary values as integers, other bytes base64.
fn show(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "<null>".to_string(),
        Some(b) if printable(b) => String::from_utf8_lossy(b).into_owned(),
        Some(b) => match <[u8; 4]>::try_from(b) {
            Ok(four) => i32::from_be_bytes(four).to_string(),
            Err(_) => match <[u8; 8]>::try_from(b) {
                Ok(eight) => i64::from_be_bytes(eight).to_string(),
                Err(_) => base64::engine::general_purpose::STANDARD.encode(b),
            },
        },
    }
}

/// One record as a PRINT line.
pub fn line(rowtime: i64, key: Option<&[u8]>, value: Option<&[u8]>, partition: i32) -> String {
    let time = chrono::DateTime::from_timestamp_millis(rowtime)
        .map(|t| t.format("%Y/%m/%d %H:%M:%S%.3f Z").to_string())
        .unwrap_or_else(|| rowtime.to_string());
    format!(
        "rowtime: {time}, key: {}, value: {}, partition: {partition}\n",
        show(key),
        show(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_format_guesses_look_like_ksqldb() {
        assert_eq!(
            line(1_670_001_722_556, Some(b"18"), Some(br#"{"a":1}"#), 0),
            "rowtime: 2022/12/02 17:22:02.556 Z, key: 18, value: {\"a\":1}, partition: 0\n"
        );
        assert_eq!(
            line(0, None, Some(&7i32.to_be_bytes()), 3),
            "rowtime: 1970/01/01 00:00:00.000 Z, key: <null>, value: 7, partition: 3\n"
        );
        assert_eq!(formats(Some(br#"{"a":1}"#)), ["JSON", "KAFKA_STRING"]);
        assert_eq!(formats(Some(b"18")), ["KAFKA_STRING"]);
        assert_eq!(
            formats(Some(&1i64.to_be_bytes())),
            ["KAFKA_BIGINT", "KAFKA_DOUBLE"]
        );
        assert_eq!(formats(None), ["<null>"]);
    }
}
