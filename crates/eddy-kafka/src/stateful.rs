//! Stateful persistent queries (aggregations) over Kafka. The state lives in shards, each restored
//! from its own partition of the query's changelog topic, whose checkpoint says where to resume the
//! input; every commit interval a shard emits its changed rows, waits until the sink has them, writes
//! its state changes and a checkpoint to the changelog, waits again, and only then commits. A crash at
//! any point restores to a state that replay finishes exactly (see `eddy_runtime::changelog`): nothing
//! lost, nothing counted twice. Under exactly-once on a broker with transactions, each write of all
//! the shards, what they emitted since the last one and the input offsets are one transaction.
//!
//! When the groups follow the input's partitions (the query groups by the source's key), there is a
//! shard per input partition: the query's consumer group spreads the partitions over the servers that
//! run it, a partition's shard is restored when the partition is assigned and written and dropped when
//! it is revoked, so state moves with its partition. When a stream is grouped by anything else, its
//! records go through a repartition topic first (see `repartition`), whose partitions the groups then
//! follow. Otherwise (a table grouped by other than its key) one shard holds every group and reads
//! every partition, on one server at a time: the one holding the query's lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, external_err};
use eddy_runtime::changelog::{Positions, StateChange, input_position, position_input};
use eddy_runtime::{PersistentQuery, Pipeline, Record, RecordRef, TopicAdmin};
use eddy_sql::statement::SourceKind;

use crate::cluster::{Deliveries, InternalTopic, KafkaCluster, kafka_err, now_millis};
use crate::consume::{Reader, Step, commit, run};
use crate::crash_point;
use crate::delivery::{Halt, deliver};
use crate::delivery_error::DeliveryError;
use crate::exact_output::ExactOutput;
use crate::internal_topics::{changelog_topic, join_changelog_topic, lease_topic};
use crate::ledger::settle_producer;
use crate::origin::writer_id;
use crate::query_io::{input_partitions, query_consumer, subscribed};
use crate::query_stats::{QueryStats, lock};
use crate::query_task::{QueryTask, TaskConfig};
use crate::rebalance::{Rebalance, Rebalancing};
use crate::repartition::{Mover, Repartitioned, Shuffle, read_topics, unwrap};
use crate::supervisor::Failure;
use crate::table_restore::restore_table_partitions;
use crate::time_order::TimeOrder;
use crate::transaction::{Transaction, transactional_id, uses_transactions};

/// How long a shard may make a crashed write again, with no more input coming, before it gives up.
const REPLAY_PATIENCE: Duration = Duration::from_secs(300);

/// Output records handed to the producer, not yet acknowledged.
struct Sent {
    records: Vec<Record>,
    deliveries: Result<Deliveries, DeliveryError>,
}

/// The state of one input partition, or of all of them.
struct Shard {
    pipeline: Arc<Pipeline>,
    /// Next input offset per partition that the state includes.
    positions: BTreeMap<i32, i64>,
    /// The changelog partition its state changes and checkpoints go to.
    changelog_partition: i32,
    sent: Vec<Sent>,
    /// Input was processed since the last write.
    unwritten: bool,
    /// Over repartition topics: the next offset of each original input partition folded in (by
    /// position id, see `input_position`), so that records a repartition stage wrote again are left
    /// out.
    sources: BTreeMap<i32, i64>,
    /// Under exactly-once: what its output holds.
    exact: Option<ExactOutput>,
    /// Records read past the cut a replay stops at, while other partitions have not reached it.
    held: Vec<Record>,
}

impl Shard {
    /// Has input to write, and is not making a crashed write again (that one is written at its cut
    /// only; stopped before, the next start replays it from the last checkpoint again).
    fn writable(&self) -> bool {
        self.unwritten && !self.exact.as_ref().is_some_and(ExactOutput::replaying)
    }
}

/// A stateful query's task: what both its loop and its consumer's rebalance callbacks use.
pub(crate) struct Stateful {
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    /// The topic of each input: the query's source (or its repartition topic), or a join's sides.
    topics: Vec<String>,
    changelog: String,
    stop: Arc<AtomicBool>,
    stats: Arc<QueryStats>,
    /// A shard per input partition (`true`) or one for all of them, under id 0.
    per_partition: bool,
    /// Where the query's group starts without committed offsets (`earliest` or `latest`).
    offset_reset: String,
    /// Per input: whether it is read from a repartition topic, whose records are enveloped.
    enveloped: Vec<bool>,
    /// `processing.guarantee=exactly_once_v2` through Eddy's own sink: the query's writer id (see
    /// `origin`).
    exactly_once: Option<u64>,
    /// `processing.guarantee=exactly_once_v2` through Kafka transactions: the task's producer. Each
    /// write of every shard, with what the shards emitted since the last, is one transaction.
    transaction: Option<Mutex<Transaction>>,
    shards: Mutex<BTreeMap<i32, Shard>>,
    /// Set when a rebalance callback panicked (it runs inside the consumer's poll, under librdkafka,
    /// where a panic cannot unwind): the attempt ends with it.
    broken: Mutex<Option<String>>,
}

/// Starts a stateful persistent query on its own thread.
pub(crate) fn start(
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    task: &TaskConfig,
    name: String,
) -> Result<QueryTask> {
    let (group_id, offset_reset) = (task.group_id.as_str(), task.offset_reset.as_str());
    let transactional = task.exactly_once && uses_transactions(&cluster)?;
    let exactly_once = (task.exactly_once && !transactional).then(|| writer_id(group_id));
    let transactional_id = transactional.then(|| transactional_id(&cluster, group_id));
    let source = query.pipeline.source().clone();
    let sources = query.pipeline.inputs();
    let inputs = input_partitions(&cluster, &query.pipeline)?;
    // A join's sides are keyed alike (a side that is not goes through a repartition topic): each
    // partition's records of both join each other only.
    let joins = sources.len() > 1;
    let follows = joins || query.pipeline.groups_follow_partitions();
    let shuffled = if joins {
        Repartitioned::join_sides(group_id, &query.pipeline)?
    } else if !follows && !query.pipeline.reads_joined_rows(0) && source.kind == SourceKind::Stream
    {
        vec![Repartitioned::groups(group_id, &source.topic)]
    } else {
        Vec::new()
    };
    let (topics, enveloped) = read_topics(&cluster, &query.pipeline, &shuffled, inputs)?;
    let repartitioned = enveloped.iter().any(|e| *e);
    let changelog = if joins {
        join_changelog_topic(group_id)
    } else {
        changelog_topic(group_id)
    };
    let sharded = follows || repartitioned;
    let per_partition = match cluster.partitions(&changelog)? {
        Some(existing) => sharded && existing == inputs,
        None => {
            // A compacted topic keeps the latest record of each group, row and the checkpoint.
            let shards = if sharded { inputs } else { 1 };
            cluster.create_internal_topic(
                &changelog,
                InternalTopic::Query,
                shards,
                &[("cleanup.policy", "compact")],
            )?;
            sharded
        }
    };
    let consumer_config = |group: &str, reset: &str| {
        query_consumer(&cluster, group, reset)
            // Eager rebalancing: every assignment arrives whole, with its offsets chosen here.
            .set("partition.assignment.strategy", "range")
            .clone()
    };
    // A repartition topic holds only this query's input: it is always read from its start.
    let config = consumer_config(
        group_id,
        if enveloped.iter().all(|e| *e) {
            "earliest"
        } else {
            offset_reset
        },
    );
    let shuffle_configs: Vec<_> = shuffled
        .iter()
        .map(|r| (consumer_config(&r.group, offset_reset), r.clone()))
        .collect();
    // One shard is run by one server at a time: the one its lease group gives the lease topic's
    // only partition to.
    let lease_config = if per_partition {
        None
    } else {
        let topic = lease_topic(group_id);
        if cluster.partitions(&topic)?.is_none() {
            cluster.create_internal_topic(&topic, InternalTopic::Query, 1, &[])?;
        }
        Some((
            consumer_config(&format!("{group_id}-lease"), "latest"),
            topic,
        ))
    };
    // A configuration the client refuses is the statement's error, not a query failing later.
    config.create_native_config().map_err(kafka_err)?;
    let query_id = query.id.clone();
    let (idle, reset) = (task.max_task_idle, offset_reset.to_string());
    let metrics = task.metrics;
    QueryTask::supervised(name, query_id, task, move |stop, stats| {
        // Every attempt starts from the state's last checkpoint, in fresh pipelines; under
        // exactly-once, once what an earlier attempt handed the producer is in the output.
        if exactly_once.is_some() {
            settle_producer(&cluster)?;
        }
        // Under transactions, the new producer fences the last attempt's and aborts what it left
        // open; the state restored is what committed.
        let transaction = match &transactional_id {
            Some(id) => Some(Mutex::new(Transaction::start(
                &cluster,
                id,
                query.commit_interval,
            )?)),
            None => None,
        };
        let shuffle_consumers = shuffle_configs
            .iter()
            .map(|(config, r)| Ok((subscribed(config, &r.source)?, r)))
            .collect::<Result<Vec<_>, Failure>>()?;
        let lease = match &lease_config {
            Some((config, topic)) => Some(subscribed(config, topic)?),
            None => None,
        };
        query
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let task = Arc::new(Stateful {
            cluster: cluster.clone(),
            query: query.clone(),
            topics: topics.clone(),
            changelog: changelog.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
            per_partition,
            offset_reset: reset.clone(),
            enveloped: enveloped.clone(),
            exactly_once,
            transaction,
            shards: Mutex::new(BTreeMap::new()),
            broken: Mutex::new(None),
        });
        let consumer: BaseConsumer<Rebalance<Stateful>> = config
            .create_with_context(Rebalance(task.clone()))
            .map_err(|e| format!("cannot create the consumer: {e}"))?;
        let shuffles = shuffle_consumers
            .iter()
            .map(|(consumer, input)| {
                Shuffle::new(Mover {
                    cluster: &task.cluster,
                    consumer,
                    query: &task.query,
                    input,
                    partitions: inputs,
                    stop: &task.stop,
                })
            })
            .collect();
        if task.per_partition {
            let topics: Vec<&str> = task.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| format!("cannot subscribe to {}: {e}", topics.join(", ")))?;
        }
        let mut step = StatefulStep {
            task: &task,
            consumer: &consumer,
            shuffles,
            lease: lease.as_ref(),
            inputs,
            last_write: Instant::now(),
        };
        let order = TimeOrder::of(&task.query.pipeline, &task.topics, idle);
        run(
            stop,
            &mut Reader::new(&consumer, order).counting(metrics.then_some(&stats.consumed_bytes)),
            &mut step,
        )
        .or_else(Halt::into_result)
    })
}

impl Rebalancing for Stateful {
    /// Moves the shards of the partitions the group assigns or revokes.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Rebalance<Self>>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut partitions: Vec<i32> = assigned.iter().map(|(_, p)| *p).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let task = self;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // A shard per partition number: a join's shard holds that partition of each side.
                for p in &partitions {
                    let ids: Vec<i32> = (0..task.topics.len())
                        .map(|input| input_position(input, *p))
                        .collect();
                    task.restore_until_done(*p, &ids);
                }
                for (topic, p) in &assigned {
                    let id = input_position(task.input_of(topic), *p);
                    let _ = tpl.set_partition_offset(topic, *p, task.resume_offset(*p, id));
                }
                tracing::info!(query = %task.query.id, ?partitions, "partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    task.report(&format!("taking the assigned partitions failed: {e}"));
                }
                // The group's offsets follow the checkpoints (a crash may have come between a
                // checkpoint and its commit), so that lag is measured from where the state is.
                let elements = tpl.elements();
                let at = elements.iter().filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.topic(), e.partition(), o)),
                    _ => None,
                });
                commit(consumer, &task.query.id, at);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Still ours until unassigned: write what they hold, so the next owner resumes there
                // (under transactions, with every other shard: what they emitted is in the same
                // transaction).
                let mut shards = task.lock_shards();
                if task.transaction.is_some()
                    && let Err(Halt::Failed(e)) = task.write_shards(consumer, &mut shards)
                {
                    task.report(&format!(
                        "writing the state failed (the next owner of the revoked partitions resumes from the last checkpoint): {e}"
                    ));
                }
                for p in &partitions {
                    if let Some(mut shard) = shards.remove(p)
                        && shard.writable()
                        && task.transaction.is_none()
                    {
                        match task.write(&mut shard) {
                            Ok(()) => task.commit(consumer, &shard),
                            Err(Halt::Failed(e)) => task.report(&format!(
                                "writing the state of revoked partition {p} failed (its next owner resumes from the last checkpoint): {e}"
                            )),
                            Err(Halt::Stopping) => {}
                        }
                    }
                    task.lock_published().remove(p);
                }
                drop(shards);
                tracing::info!(query = %task.query.id, ?partitions, "partitions revoked");
                if let Err(e) = consumer.unassign() {
                    task.report(&format!("giving the revoked partitions up failed: {e}"));
                }
            }
            other => task.report(&format!("rebalancing failed: {other:?}")),
        }
    }

    fn broken(&self) -> &Mutex<Option<String>> {
        &self.broken
    }
}

/// The loop's step of a stateful query: its repartition stages first, then its records folded
/// into their shards, every shard written at each commit interval.
struct StatefulStep<'a> {
    task: &'a Stateful,
    consumer: &'a BaseConsumer<Rebalance<Stateful>>,
    shuffles: Vec<Shuffle<'a>>,
    /// For a single shard: the lease this server must hold to run it.
    lease: Option<&'a BaseConsumer>,
    /// The input partition count.
    inputs: i32,
    last_write: Instant,
}

impl Step for StatefulStep<'_> {
    fn ready(&mut self) -> Result<bool, Halt> {
        if let Some(broken) = self.task.take_broken() {
            return Err(Halt::Failed(broken));
        }
        if let Some(lease) = self.lease
            && !self.task.follow_lease(self.consumer, lease, self.inputs)
        {
            return Ok(false);
        }
        for shuffle in &mut self.shuffles {
            shuffle.turn()?;
        }
        Ok(true)
    }

    // Rebalance callbacks run inside the poll, never while a run is being processed.
    fn process<R: RecordRef>(&mut self, input: usize, records: Vec<R>) -> Result<(), Halt> {
        self.task.process_input(input, records)
    }

    fn settle(&mut self, polled: usize) -> Result<(), Halt> {
        if polled == 0 {
            self.task.abandon_stalled_replays();
        }
        if self.last_write.elapsed() >= self.task.query.commit_interval {
            self.task.write_all(self.consumer)?;
            self.last_write = Instant::now();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Halt> {
        self.task.write_all(self.consumer)
    }
}

impl Stateful {
    fn lock_shards(&self) -> MutexGuard<'_, BTreeMap<i32, Shard>> {
        lock(&self.shards)
    }

    /// The topic and partition a position id names (see `input_position`).
    fn topic_partition(&self, id: i32) -> Option<(&str, i32)> {
        let (input, p) = position_input(id);
        Some((self.topics.get(input)?.as_str(), p))
    }

    /// Which input a topic is.
    fn input_of(&self, topic: &str) -> usize {
        self.topics.iter().position(|t| t == topic).unwrap_or(0)
    }

    /// The shards pull queries read.
    fn lock_published(&self) -> MutexGuard<'_, BTreeMap<i32, Arc<Pipeline>>> {
        self.query.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends, with an error, the replay of a crashed write that is still short of its end after
    /// [`REPLAY_PATIENCE`] while no input comes: it cannot finish (its input is gone, or replay
    /// emits differently than the crashed write did), and the shard would write nothing ever.
    fn abandon_stalled_replays(&self) {
        for (id, shard) in self.lock_shards().iter_mut() {
            let Some(exact) = shard.exact.as_mut() else {
                continue;
            };
            if exact.replaying_for(REPLAY_PATIENCE) {
                let left = exact.abandon_replay();
                self.report(&format!(
                    "shard {id} could not make a crashed write again within {} s (its input is gone, or it emits differently now) and goes on: {left} records that write got out may come again",
                    REPLAY_PATIENCE.as_secs()
                ));
            }
        }
    }

    /// Takes the single shard, and every input partition, when this server holds the lease; drops
    /// them (unwritten: the new holder resumes from the last checkpoint) when it lost it. Returns
    /// whether the shard is here to process.
    fn follow_lease(
        &self,
        consumer: &BaseConsumer<Rebalance<Stateful>>,
        lease: &BaseConsumer,
        inputs: i32,
    ) -> bool {
        let wait = if self.lock_shards().is_empty() {
            200
        } else {
            0
        };
        // Polling keeps the lease's group membership; the lease topic holds no records.
        let _ = lease.poll(Duration::from_millis(wait));
        let held = lease.assignment().is_ok_and(|a| a.count() > 0);
        let here = !self.lock_shards().is_empty();
        match (held, here) {
            (true, true) => true,
            (true, false) => {
                let all: Vec<i32> = (0..inputs).collect();
                self.restore_until_done(0, &all);
                let mut assignment = TopicPartitionList::new();
                for p in &all {
                    let _ = assignment.add_partition_offset(
                        &self.topics[0],
                        *p,
                        self.resume_offset(0, *p),
                    );
                }
                if let Err(e) = consumer.assign(&assignment) {
                    self.report(&format!("cannot read {}: {e}", self.topics[0]));
                }
                tracing::info!(query = %self.query.id, "took the query's lease: this server runs it");
                true
            }
            (false, true) => {
                // What the shard emitted since its last write is not committed without its state.
                if let Some(transaction) = &self.transaction
                    && let Err(e) = transaction
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .abort()
                {
                    self.report(&e.to_string());
                }
                self.lock_shards().clear();
                self.lock_published().clear();
                let _ = consumer.unassign();
                tracing::info!(query = %self.query.id, "lost the query's lease: another server runs it");
                false
            }
            (false, false) => false,
        }
    }

    /// Folds records of input `input` into the shards of their partitions; records a shard already
    /// includes (read again after a restore) are left out.
    fn process_input<R: RecordRef>(&self, input: usize, batch: Vec<R>) -> Result<(), Halt> {
        let consumed = batch.len() as u64;
        let mut by_shard: BTreeMap<i32, Vec<R>> = BTreeMap::new();
        for m in batch {
            let id = if self.per_partition { m.partition() } else { 0 };
            by_shard.entry(id).or_default().push(m);
        }
        let mut shards = self.lock_shards();
        for (id, mut msgs) in by_shard {
            // A partition revoked in the same poll.
            let Some(shard) = shards.get_mut(&id) else {
                continue;
            };
            msgs.retain(|m| {
                let at = input_position(input, m.partition());
                m.offset() >= shard.positions.get(&at).copied().unwrap_or(0)
            });
            if msgs.is_empty() {
                continue;
            }
            match shard.exact.as_ref().and_then(ExactOutput::cut).cloned() {
                None => self.take(shard, input, &msgs)?,
                Some(cut) => self.replay_to(shard, msgs, &cut)?,
            }
        }
        // Counted once processed: a host that sees the count sees the state it led to.
        self.stats.consumed.fetch_add(consumed, Ordering::Relaxed);
        Ok(())
    }

    /// Exactly-once replay after a crash in the middle of a write: the input is folded in up to
    /// exactly where that write emitted (`cut`), the write is done again (leaving out what it got
    /// out), and then the rest follows. (Joins, whose input is two topics, run at-least-once.)
    fn replay_to<R: RecordRef>(
        &self,
        shard: &mut Shard,
        msgs: Vec<R>,
        cut: &BTreeMap<i32, i64>,
    ) -> Result<(), Halt> {
        let (before, after): (Vec<_>, Vec<_>) = msgs
            .into_iter()
            .partition(|m| cut.get(&m.partition()).is_some_and(|c| m.offset() < *c));
        self.take(shard, 0, &before)?;
        // Offsets are read in order: a partition with a record at or past its cut has nothing
        // more before it.
        for m in &after {
            if let Some(c) = cut.get(&m.partition()) {
                let next = shard.positions.entry(m.partition()).or_default();
                *next = (*next).max(*c);
            }
        }
        let reached = cut
            .iter()
            .all(|(p, c)| shard.positions.get(p).is_some_and(|next| next >= c));
        if !reached {
            // Another partition is still short of its cut: these wait for it.
            shard.held.extend(after.iter().map(Record::copy_of));
            return Ok(());
        }
        self.write(shard)?;
        let held = std::mem::take(&mut shard.held);
        self.take(shard, 0, &held)?;
        self.take(shard, 0, &after)
    }

    /// Folds records of input `input` read from the shard's partitions in, and moves its positions
    /// past them.
    fn take<R: RecordRef>(&self, shard: &mut Shard, input: usize, msgs: &[R]) -> Result<(), Halt> {
        if msgs.is_empty() {
            return Ok(());
        }
        if self.enveloped.get(input).copied().unwrap_or(false) {
            let sources = &mut shard.sources;
            let fresh: Vec<Record> = msgs
                .iter()
                .filter_map(unwrap)
                .filter(|(_, (p, o))| {
                    let next = sources.entry(input_position(input, *p)).or_default();
                    let new = *o >= *next;
                    *next = (*next).max(o + 1);
                    new
                })
                .map(|(record, _)| record)
                .collect();
            self.fold(shard, input, &fresh)?;
        } else {
            self.fold(shard, input, msgs)?;
        }
        for m in msgs {
            let next = shard
                .positions
                .entry(input_position(input, m.partition()))
                .or_default();
            *next = (*next).max(m.offset() + 1);
        }
        shard.unwritten = true;
        Ok(())
    }

    /// Folds records of input `input` into a shard's pipeline and sends what it emits.
    fn fold<R: RecordRef>(
        &self,
        shard: &mut Shard,
        input: usize,
        records: &[R],
    ) -> Result<(), Halt> {
        let processed = shard.pipeline.process_input(input, records).and_then(|p| {
            self.stats
                .record_errors(&self.query.id, &self.topics[input], &p, records);
            self.query.sink_spec.records(&p)
        });
        match processed {
            Ok(records) => {
                self.send(shard, records, None);
                Ok(())
            }
            // The state cannot be trusted past a batch that failed half-way: the attempt ends, and
            // the next restores the state from its last checkpoint and replays.
            Err(e) => Err(Halt::Failed(format!(
                "processing failed; the query resumes from its last checkpoint: {e}"
            ))),
        }
    }

    /// Writes every shard with unwritten input, and commits.
    fn write_all(&self, consumer: &BaseConsumer<Rebalance<Stateful>>) -> Result<(), Halt> {
        self.write_shards(consumer, &mut self.lock_shards())
    }

    /// [`Stateful::write_all`] with the shards locked. Under transactions, the writes and what the
    /// shards emitted since the last are committed as one transaction, with the input offsets.
    fn write_shards(
        &self,
        consumer: &BaseConsumer<Rebalance<Stateful>>,
        shards: &mut BTreeMap<i32, Shard>,
    ) -> Result<(), Halt> {
        for shard in shards.values_mut().filter(|s| s.writable()) {
            self.write(shard)?;
            if self.transaction.is_none() {
                self.commit(consumer, shard);
            }
        }
        if let Some(transaction) = &self.transaction {
            let offsets: Vec<(&str, i32, i64)> = shards
                .values()
                .flat_map(|s| s.positions.iter())
                .filter_map(|(id, o)| {
                    let (topic, p) = self.topic_partition(*id)?;
                    Some((topic, p, *o))
                })
                .collect();
            // The group's generation fences a server that lost its partitions and still writes;
            // a single shard (held by lease) commits its offsets for lag only.
            let group = if self.per_partition {
                consumer.group_metadata()
            } else {
                None
            };
            let mut transaction = transaction.lock().unwrap_or_else(|p| p.into_inner());
            if transaction.is_open() {
                transaction.commit(&offsets, group.as_ref()).map_err(|e| {
                    Halt::Failed(format!("{e}; the query resumes from its last checkpoint"))
                })?;
                if !self.per_partition {
                    shards.values().for_each(|s| self.commit(consumer, s));
                }
            }
        }
        Ok(())
    }

    /// Restores shard `id` (covering input `partitions`) unless it is here, retrying until it
    /// succeeds or the task stops.
    fn restore_until_done(&self, id: i32, partitions: &[i32]) {
        if self.lock_shards().contains_key(&id) {
            return;
        }
        while !self.stop.load(Ordering::SeqCst) {
            match self.restore(id, partitions) {
                Ok(shard) => {
                    self.lock_published().insert(id, shard.pipeline.clone());
                    self.lock_shards().insert(id, shard);
                    return;
                }
                Err(e) => {
                    self.report(&format!("restoring the state failed, retrying: {e}"));
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Where shard `id` resumes reading `partition` (a position id: see `input_position`): its
    /// checkpoint, or else the group's committed offset (else `auto.offset.reset`); a repartition
    /// topic, which holds only this query's input, from its start.
    fn resume_offset(&self, id: i32, partition: i32) -> Offset {
        let checkpoint = self
            .lock_shards()
            .get(&id)
            .and_then(|s| s.positions.get(&partition))
            .copied();
        let (input, _) = position_input(partition);
        match checkpoint {
            Some(o) => Offset::Offset(o),
            None if self.enveloped.get(input).copied().unwrap_or(false) => Offset::Beginning,
            None => Offset::Stored,
        }
    }

    /// Reads a shard's changelog partition into fresh state (never into state an earlier attempt
    /// may have left half-changed).
    fn restore(&self, id: i32, partitions: &[i32]) -> Result<Shard> {
        let pipeline = Arc::new(self.query.pipeline.fresh()?);
        let mut records = Vec::new();
        self.cluster.read_to_end(
            &self.changelog,
            Some(id),
            Duration::from_secs(300),
            Some(&self.stop),
            |m| {
                records.push(StateChange {
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                })
            },
        )?;
        let restored = records.len();
        let checkpoint = pipeline.restore(records)?;
        tracing::info!(
            query = %self.query.id,
            records = restored,
            partition = id,
            "restored the state from {}",
            self.changelog
        );
        let (resume, mark) = checkpoint.map_or((Vec::new(), None), |c| (c.positions, c.sink));
        let (sources, positions): (Positions, Positions) =
            resume.into_iter().partition(|(p, _)| *p < 0);
        let first_exact = self.exactly_once.is_some() && mark.is_none();
        let exact = match self.exactly_once {
            Some(writer) => Some(ExactOutput::restore(
                &self.cluster,
                &self.query.sink_spec.topic,
                writer,
                id,
                mark,
                &self.stop,
            )?),
            None => None,
        };
        let mut shard = Shard {
            pipeline,
            positions: positions
                .into_iter()
                .filter(|(p, _)| partitions.contains(p))
                .collect(),
            changelog_partition: id,
            sent: Vec::new(),
            unwritten: false,
            sources: sources
                .into_iter()
                .map(|(p, o)| (source_of(p), o))
                .collect(),
            exact,
            held: Vec::new(),
        };
        // A join's tables are not in the changelog: they are read back from their own topics.
        let tables = restore_table_partitions(
            &self.cluster,
            &shard.pipeline,
            partitions,
            &shard.positions,
            &self.offset_reset,
            &self.stop,
        )?;
        if tables > 0 {
            tracing::info!(query = %self.query.id, records = tables, partition = id, "restored the join's tables from their topics");
        }
        if first_exact {
            // Before the shard writes anything: a checkpoint saying from where its output is to be
            // read back after a crash.
            self.write(&mut shard).map_err(|h| match h {
                Halt::Failed(e) => external_err!("{e}"),
                Halt::Stopping => external_err!("the query is stopping"),
            })?;
        }
        Ok(shard)
    }

    /// Hands records a shard emitted to the producer (under exactly-once with their origins;
    /// `cut`: emitted by a write at these input positions).
    fn send(&self, shard: &mut Shard, records: Vec<Record>, cut: Option<&Positions>) {
        let (records, origins) = match &mut shard.exact {
            Some(exact) => exact.mark(records, cut),
            None => (records, Vec::new()),
        };
        if records.is_empty() {
            return;
        }
        let deliveries = self.produce(&self.query.sink_spec.topic, &records, &origins);
        shard.sent.push(Sent {
            records,
            deliveries,
        });
    }

    /// Hands records to the producer: the task's transaction when it has one, else the shared
    /// producer (with the records' origins, under Eddy's own exactly-once sink).
    fn produce(
        &self,
        topic: &str,
        records: &[Record],
        origins: &[Vec<u8>],
    ) -> Result<Deliveries, DeliveryError> {
        match &self.transaction {
            Some(transaction) => transaction
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(topic, records)
                .map_err(|e| DeliveryError::Permanent(e.to_string())),
            None => self.cluster.send_with_origins(topic, records, origins),
        }
    }

    /// Waits until the sink has everything the shard sent. At-least-once, records are produced again
    /// while that can help; exactly-once, a failure ends the attempt once nothing is in flight (the
    /// next one reads back what got through, or, under transactions, restores what committed).
    fn settle_sent(&self, shard: &mut Shard) -> Result<(), Halt> {
        let topic = &self.query.sink_spec.topic;
        let mut sent = std::mem::take(&mut shard.sent).into_iter();
        while let Some(s) = sent.next() {
            let count = s.records.len() as u64;
            match &mut shard.exact {
                None if self.transaction.is_none() => deliver(
                    &self.cluster,
                    &self.query.id,
                    topic,
                    &s.records,
                    s.deliveries,
                    &self.stop,
                )?,
                exact => match s.deliveries.and_then(Deliveries::wait_ends) {
                    Ok(ends) => {
                        if let Some(exact) = exact {
                            exact.delivered(&ends);
                        }
                    }
                    Err(e) => {
                        for other in sent {
                            let _ = other.deliveries.and_then(Deliveries::wait_ends);
                        }
                        return Err(Halt::Failed(format!("producing to {topic} failed: {e}")));
                    }
                },
            }
            self.stats.produced.fetch_add(count, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Emits a shard's changed rows, waits until the sink has every output so far, then writes the
    /// state changes and the checkpoint. When it halts, the next start replays from the last
    /// checkpoint.
    fn write(&self, shard: &mut Shard) -> Result<(), Halt> {
        let query = &self.query;
        let positions: Positions = shard.positions.iter().map(|(p, o)| (*p, *o)).collect();
        let flushed = shard
            .pipeline
            .flush()
            .and_then(|f| f.map(|p| query.sink_spec.records(&p)).transpose());
        match flushed {
            Ok(records) => self.send(shard, records.unwrap_or_default(), Some(&positions)),
            Err(e) => return Err(Halt::Failed(format!("emitting failed: {e}"))),
        }
        let emitted = !shard.sent.is_empty();
        self.settle_sent(shard)?;
        if emitted && shard.exact.is_some() {
            crash_point::pass("output-settled");
        }
        // The repartitioned records' origins are checkpointed with the positions, under negative ids.
        let marks = shard.sources.iter().map(|(p, o)| (source_of(*p), *o));
        let checkpointed: Vec<(i32, i64)> = positions.iter().copied().chain(marks).collect();
        let sink = shard.exact.as_ref().map(ExactOutput::mark_of_write);
        let changes = shard
            .pipeline
            .changes(&checkpointed, sink.as_ref())
            .map_err(|e| Halt::Failed(format!("writing the state failed: {e}")))?;
        let now = now_millis();
        let records: Vec<Record> = changes
            .into_iter()
            .map(|c| Record {
                key: Some(c.key),
                value: c.value,
                timestamp: now,
                partition: shard.changelog_partition,
                offset: 0,
                headers: Vec::new(),
            })
            .collect();
        let sent = self.produce(&self.changelog, &records, &[]);
        if self.transaction.is_some() {
            // Part of the transaction: a failure aborts it, and the next attempt restores.
            sent.and_then(Deliveries::wait)
                .map_err(|e| Halt::Failed(format!("writing to {} failed: {e}", self.changelog)))?;
        } else {
            deliver(
                &self.cluster,
                &query.id,
                &self.changelog,
                &records,
                sent,
                &self.stop,
            )?;
        }
        shard.unwritten = false;
        if let Some(exact) = &mut shard.exact {
            exact.written();
        }
        self.stats.progressed();
        Ok(())
    }

    /// Commits a shard's positions to the consumer group. The checkpoint is what restores read;
    /// the group's offsets are for tools that watch lag.
    fn commit(&self, consumer: &BaseConsumer<Rebalance<Stateful>>, shard: &Shard) {
        let offsets = shard.positions.iter().filter_map(|(id, o)| {
            let (topic, p) = self.topic_partition(*id)?;
            Some((topic, p, *o))
        });
        commit(consumer, &self.query.id, offsets);
    }

    fn report(&self, message: &str) {
        self.stats.recovered(&self.query.id, message);
    }
}

/// The checkpoint id of an original input partition of a repartitioned input (`position`: its
/// position id; negative, apart from the repartition topics' own partitions), and back: the mapping
/// is its own inverse.
fn source_of(position: i32) -> i32 {
    -1 - position
}
