//! The repartition stage of an aggregation whose groups do not follow its input's partitions (a
//! GROUP BY on anything but a stream's key), and of a join side not keyed by its join expression (or
//! keyed in another format than the other side): a consumer group reads the input and writes every
//! record, unchanged, to the partition of an internal topic (named as ksqlDB names it:
//! `…-Aggregate-GroupBy-repartition`, `…-Join-repartition`, `…-Join-left-repartition`,
//! `…-Join-right-repartition`) that its GROUP BY values, or its join value, hash to (see
//! `Pipeline::placements`), so each group, or each join value, lives in one partition of that topic
//! and the query keeps its state per partition of it. Kafka is the shuffle.
//!
//! Each repartitioned record carries, in an envelope (`envelope`), the input partition and offset it came from.
//! The stage is at-least-once (it commits input offsets once the records are acknowledged), so after a
//! crash it may write some records again; the aggregation keeps, per input partition, the next input
//! offset it has folded in (with its checkpoint) and leaves out anything older, which keeps its state
//! exact. The idempotent producer keeps each partition's records in order, which that relies on.

use std::sync::atomic::AtomicBool;

use rdkafka::consumer::{BaseConsumer, DefaultConsumerContext};

use eddy_common::Result;
use eddy_runtime::{PersistentQuery, Pipeline, Record, RecordRef, TopicAdmin};
use eddy_sql::join::JoinKind;

use crate::cluster::{InternalTopic, KafkaCluster};
use crate::consume::{Reader, Step, commit};
use crate::delivery::{Halt, deliver};
use crate::internal_topics::{join_repartition_topic, repartition_topic};
use crate::poll::next_offsets;
use eddy_runtime::envelope;

/// An input of a query read through a repartition topic.
#[derive(Debug, Clone)]
pub(crate) struct Repartitioned {
    /// Which input of the query (a join's side: 0 left, 1 right).
    pub input: usize,
    /// The topic the input is read from.
    pub source: String,
    /// The repartition topic it is written to, and the query reads.
    pub topic: String,
    /// The consumer group of the stage that moves it.
    pub group: String,
}

impl Repartitioned {
    /// An aggregation's input (`source`) repartitioned by its GROUP BY values.
    pub(crate) fn groups(group_id: &str, source: &str) -> Self {
        Repartitioned {
            input: 0,
            source: source.to_string(),
            topic: repartition_topic(group_id),
            group: format!("{group_id}-GroupBy"),
        }
    }

    /// The sides of a join repartitioned by their join expressions (of a multi-way join, the
    /// first join's sides are inputs 0 and 1, a later one's right side the next input; its left
    /// side, the earlier joins' rows, is never repartitioned). A stream cannot be placed where a
    /// table keyed in a schema registry's format has its keys (the key's bytes hold a schema id):
    /// that join is refused.
    pub(crate) fn join_sides(group_id: &str, pipeline: &Pipeline) -> Result<Vec<Self>> {
        let Some(join) = &pipeline.plan.join else {
            return Ok(Vec::new());
        };
        let mut sides = Vec::new();
        for (n, stage) in join.stages().into_iter().enumerate() {
            let table = &stage.right.source;
            if stage.kind == JoinKind::StreamTable
                && stage.left.repartition
                && table.key_format.kind.uses_registry()
            {
                let format = table.key_format.kind.name();
                return Err(eddy_common::not_supported!(
                    "Joining stream {} with table {} on other than the stream's key needs the stream repartitioned into the table's key format, {format}, which Eddy does not do yet: re-key the stream with PARTITION BY (and KEY_FORMAT='{format}') into a new stream first",
                    stage.left.source.name,
                    table.name
                ));
            }
            let names = match stage.kind {
                JoinKind::StreamStream(_) => ["Join-left", "Join-right"],
                _ => ["Join", "Join"],
            };
            for ((input, side), name) in [(0, &stage.left), (n + 1, &stage.right)]
                .into_iter()
                .zip(names)
            {
                if !side.repartition {
                    continue;
                }
                let name = match n {
                    0 => name.to_string(),
                    n => format!("{name}-{n}"),
                };
                sides.push(Repartitioned {
                    input,
                    source: side.source.topic.clone(),
                    topic: join_repartition_topic(group_id, &name),
                    group: format!("{group_id}-{name}"),
                });
            }
        }
        Ok(sides)
    }
}

/// A repartitioned message as the aggregation reads it: the original key and value with the message's
/// time and position, and the input partition and offset it came from. `None` when it is not one.
pub(crate) fn unwrap<R: RecordRef>(m: &R) -> Option<(Record, (i32, i64))> {
    let (key, value, partition, offset) = envelope::open(m.value()?)?;
    let record = Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        timestamp: m.timestamp(),
        partition: m.partition(),
        offset: m.offset(),
        headers: Vec::new(),
    };
    Some((record, (partition, offset)))
}

/// The topic each input of a query is read from (its own, or the repartition topic of a
/// `shuffled` input, created with `partitions` partitions if missing), and whether that topic's
/// records are enveloped (a repartition topic's, or the internal topic of a split query's rows).
pub(crate) fn read_topics(
    cluster: &KafkaCluster,
    pipeline: &Pipeline,
    shuffled: &[Repartitioned],
    partitions: i32,
) -> Result<(Vec<String>, Vec<bool>)> {
    for r in shuffled {
        if cluster.partitions(&r.topic)?.is_none() {
            cluster.create_internal_topic(&r.topic, InternalTopic::Query, partitions, &[])?;
        }
    }
    Ok(pipeline
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, s)| match shuffled.iter().find(|r| r.input == i) {
            Some(r) => (r.topic.clone(), true),
            None => (s.topic.clone(), pipeline.reads_joined_rows(i)),
        })
        .unzip())
}

/// Reads an input of the query and writes it to its repartition topic: a turn of the query's loop
/// moves one batch.
pub(crate) struct Shuffle<'a> {
    reader: Reader<'a, DefaultConsumerContext>,
    mover: Mover<'a>,
}

impl<'a> Shuffle<'a> {
    /// The stage doing what `mover` says.
    pub(crate) fn new(mover: Mover<'a>) -> Self {
        Shuffle {
            reader: Reader::new(mover.consumer, None),
            mover,
        }
    }

    /// Moves one batch of input to the repartition topic and commits it once acknowledged. Halts
    /// when the task is stopping and could not finish (the batch is read again after a restart), or
    /// when the batch cannot be moved.
    pub(crate) fn turn(&mut self) -> Result<(), Halt> {
        self.reader.read(&mut self.mover).map(drop)
    }
}

/// What a repartition stage does with a batch of its input: moves `input` of `query`, read by
/// `consumer` (in group `input.group`), into `partitions` partitions of `input.topic`.
pub(crate) struct Mover<'a> {
    pub cluster: &'a KafkaCluster,
    pub consumer: &'a BaseConsumer,
    pub query: &'a PersistentQuery,
    pub input: &'a Repartitioned,
    pub partitions: i32,
    pub stop: &'a AtomicBool,
}

impl Step for Mover<'_> {
    fn process<R: RecordRef>(&mut self, _: usize, batch: Vec<R>) -> Result<(), Halt> {
        let failed = |e: eddy_common::Error| Halt::Failed(format!("repartitioning failed: {e}"));
        let targets = self
            .query
            .pipeline
            .placements(self.input.input, &batch, self.partitions)
            .map_err(failed)?;
        let next = next_offsets(&batch);
        let records: Vec<Record> = batch
            .iter()
            .zip(targets)
            .map(|(m, target)| Record {
                key: None,
                value: Some(envelope::wrap(
                    m.key(),
                    m.value(),
                    m.partition(),
                    m.offset(),
                )),
                timestamp: m.timestamp(),
                partition: target,
                offset: 0,
                headers: Vec::new(),
            })
            .collect();
        drop(batch);
        let topic = &self.input.topic;
        let sent = self.cluster.send(topic, &records);
        deliver(
            self.cluster,
            &self.query.id,
            topic,
            &records,
            sent,
            self.stop,
        )?;
        let source = self.input.source.as_str();
        commit(
            self.consumer,
            &self.query.id,
            next.into_iter().map(|(p, o)| (source, p, o)),
        );
        Ok(())
    }
}
