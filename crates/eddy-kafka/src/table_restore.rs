//! A join's table sides rebuilt from their own topics when its task starts (as ksqlDB's source-table
//! optimization restores a table from its topic instead of a changelog): each table partition is read
//! from its beginning up to the offset the query's group committed, into the join's state, with no
//! output — what those records made was written before. Without a committed offset a query reading
//! from the end (`auto.offset.reset=latest`) takes the whole table as it is, so its first records meet
//! the table's current rows; one reading from the beginning reads the table as part of its input.
//! A join that keeps state in a changelog (a stream-stream join with a table joined after it) reads
//! its table partitions back per shard, up to where the shard's checkpoint resumes them
//! ([`restore_table_partitions`]).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use eddy_common::Result;
use eddy_runtime::Pipeline;
use eddy_runtime::changelog::position_input;
use eddy_sql::statement::SourceKind;

use crate::cluster::{KafkaCluster, record_of};
use crate::supervisor::Failure;

/// How long reading a table topic back may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long asking for metadata and committed offsets may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Records applied per batch while restoring.
const BATCH: usize = 4096;

/// Reads a join's table sides back into `pipeline` (a fresh one); returns how many records it applied.
/// `config` is the query's consumer configuration (its group's committed offsets are the ends).
pub(crate) fn restore_tables(
    cluster: &KafkaCluster,
    pipeline: &Pipeline,
    config: &ClientConfig,
    offset_reset: &str,
) -> Result<usize, Failure> {
    let inputs = pipeline.inputs();
    if inputs.len() < 2 {
        return Ok(0);
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let mut applied = 0;
    for (input, source) in inputs.iter().enumerate() {
        if source.kind != SourceKind::Table {
            continue;
        }
        let ends = restore_ends(&consumer, &source.topic, offset_reset)?;
        if ends.is_empty() {
            continue;
        }
        let mut records = cluster
            .read_records(&source.topic, RESTORE_TIMEOUT)
            .map_err(|e| format!("cannot read {} back: {e}", source.topic))?;
        records.retain(|r| {
            ends.get(&r.partition)
                .is_some_and(|end| end.is_none_or(|end| r.offset < end))
        });
        for chunk in records.chunks(BATCH) {
            // The rows these records made were written before: only the state is wanted.
            pipeline
                .process_input(input, chunk)
                .map_err(|e| format!("cannot restore {}: {e}", source.name))?;
        }
        applied += records.len();
    }
    Ok(applied)
}

/// The partitions of `topic` to read back, each up to its committed offset (`None`: to its end).
fn restore_ends(
    consumer: &BaseConsumer,
    topic: &str,
    offset_reset: &str,
) -> Result<BTreeMap<i32, Option<i64>>, Failure> {
    let metadata = consumer
        .fetch_metadata(Some(topic), ASK_TIMEOUT)
        .map_err(|e| format!("cannot read the metadata of {topic}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer
        .committed_offsets(tpl, ASK_TIMEOUT)
        .map_err(|e| format!("cannot read the committed offsets of {topic}: {e}"))?;
    let mut ends = BTreeMap::new();
    for e in committed.elements() {
        match e.offset() {
            Offset::Offset(o) if o > 0 => {
                ends.insert(e.partition(), Some(o));
            }
            Offset::Offset(_) => {}
            _ if offset_reset == "latest" => {
                ends.insert(e.partition(), None);
            }
            _ => {}
        }
    }
    Ok(ends)
}

/// Reads the table partitions among position ids `ids` (see `input_position`) back into
/// `pipeline` (a shard's, fresh), each from its beginning up to where `resume` (the shard's
/// checkpoint) resumes it; a partition the checkpoint does not name is read whole when the query
/// reads from the end (`offset_reset` `latest`), else it is read as input. Returns how many
/// records it applied.
pub(crate) fn restore_table_partitions(
    cluster: &KafkaCluster,
    pipeline: &Pipeline,
    ids: &[i32],
    resume: &BTreeMap<i32, i64>,
    offset_reset: &str,
    stop: &AtomicBool,
) -> Result<usize> {
    let inputs = pipeline.inputs();
    let mut applied = 0;
    for id in ids {
        let (input, partition) = position_input(*id);
        let Some(source) = inputs.get(input).filter(|s| s.kind == SourceKind::Table) else {
            continue;
        };
        let end = match resume.get(id) {
            Some(end) => Some(*end),
            None if offset_reset == "latest" => None,
            None => continue,
        };
        let mut records = Vec::new();
        cluster.read_to_end(
            &source.topic,
            Some(partition),
            RESTORE_TIMEOUT,
            Some(stop),
            |m| {
                if end.is_none_or(|end| m.offset() < end) {
                    records.extend(record_of(m));
                }
            },
        )?;
        for chunk in records.chunks(BATCH) {
            // The rows these records made were written before: only the state is wanted.
            pipeline.process_input(input, chunk)?;
        }
        applied += records.len();
    }
    Ok(applied)
}
