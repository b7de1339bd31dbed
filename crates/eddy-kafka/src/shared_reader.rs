//! One reader per topic shared by the push queries that read it from its latest records: a thread
//! and a consumer assigned every partition of the topic from its end (it joins no consumer group
//! and commits nothing) hand each micro-batch to every push query on the topic, each with its own pipeline,
//! counters and client. The broker sees one consumer per topic and server however many push
//! queries read it. The reader never waits for a client: a client's rows wait in its backlog, and a
//! client more than [`MAX_BACKLOG`] batches behind is closed with an error. The reader ends with its
//! last push query. Partitions added to the topic after the reader started are not read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::BaseConsumer;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use eddy_common::Result;
use eddy_runtime::{Pipeline, RecordRef};

use crate::poll::poll_batch;
use crate::push_event::{PushEvent, push_event};
use crate::query_stats::QueryStats;
use crate::query_task::QueryTask;

/// Batches a client may fall behind (beyond its channel) before its query is closed.
const MAX_BACKLOG: usize = 1024;

/// The push queries on each topic's reader.
type Subscribers = Arc<Mutex<Vec<Subscriber>>>;

/// A server's shared readers, by topic.
#[derive(Debug, Default)]
pub struct SharedReaders {
    readers: Arc<Mutex<HashMap<String, Subscribers>>>,
}

/// A push query on a shared reader.
struct Subscriber {
    pipeline: Arc<Pipeline>,
    group_id: String,
    tx: mpsc::Sender<PushEvent>,
    stats: Arc<QueryStats>,
    /// Set when the query is closed (by its client or the server), and by the reader when it
    /// drops the query.
    stop: Arc<AtomicBool>,
    /// Rows the client's channel had no room for, oldest first.
    backlog: VecDeque<PushEvent>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("group_id", &self.group_id)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedReaders {
    /// Adds a push query to the reader of `topic`, started with the consumer `open` makes when there
    /// is none. Its rows go to `tx`; the task it returns stops it.
    pub fn subscribe(
        &self,
        topic: &str,
        pipeline: Arc<Pipeline>,
        group_id: String,
        tx: mpsc::Sender<PushEvent>,
        open: impl FnOnce() -> Result<BaseConsumer>,
    ) -> Result<QueryTask> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(QueryStats::default());
        let subscriber = Subscriber {
            pipeline,
            group_id,
            tx,
            stats: stats.clone(),
            stop: stop.clone(),
            backlog: VecDeque::new(),
        };
        let mut readers = lock(&self.readers);
        match readers.get(topic) {
            Some(subscribers) => lock(subscribers).push(subscriber),
            None => {
                let consumer = open()?;
                let subscribers = Arc::new(Mutex::new(vec![subscriber]));
                readers.insert(topic.to_string(), subscribers.clone());
                let (registry, name) = (self.readers.clone(), topic.to_string());
                std::thread::Builder::new()
                    .name(format!("push-reader-{topic}"))
                    .spawn(move || serve(&name, &consumer, &subscribers, &registry))
                    .map_err(|e| {
                        readers.remove(topic);
                        eddy_common::internal_err!("cannot start a reader thread: {e}")
                    })?;
            }
        }
        Ok(QueryTask::attached(stop, stats))
    }

    /// How many topics are read for push queries (one consumer each).
    pub fn readers(&self) -> usize {
        lock(&self.readers).len()
    }
}

/// A reader's thread: reads `topic` and hands every batch to its push queries until none is left.
fn serve(
    topic: &str,
    consumer: &BaseConsumer,
    subscribers: &Subscribers,
    registry: &Mutex<HashMap<String, Subscribers>>,
) {
    loop {
        {
            // Under the registry's lock, so that no query joins a reader that is leaving.
            let mut readers = lock(registry);
            let mut list = lock(subscribers);
            list.retain(|s| {
                let live = !s.stop.load(Ordering::SeqCst) && !s.tx.is_closed();
                if !live {
                    s.stop.store(true, Ordering::SeqCst);
                }
                live
            });
            if list.is_empty() {
                readers.remove(topic);
                return;
            }
        }
        let batch = poll_batch(consumer);
        // Queries that join while this batch is handed on wait for the next (this one was read
        // before they joined); the list is not locked meanwhile.
        let mut working = std::mem::take(&mut *lock(subscribers));
        working.retain_mut(|s| {
            let keep = s.offer(topic, &batch);
            if !keep {
                s.stop.store(true, Ordering::SeqCst);
            }
            keep
        });
        let mut list = lock(subscribers);
        let joined = std::mem::replace(&mut *list, working);
        list.extend(joined);
    }
}

impl Subscriber {
    /// Hands what is waiting and the rows of `records` to the client; false when the query ends
    /// (the client left or fell too far behind).
    fn offer<R: RecordRef>(&mut self, topic: &str, records: &[R]) -> bool {
        while let Some(event) = self.backlog.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    break;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        if records.is_empty() {
            return true;
        }
        let Some(event) = push_event(
            &self.pipeline,
            &self.stats,
            &self.group_id,
            topic,
            0,
            records,
        ) else {
            return true;
        };
        if self.backlog.is_empty() {
            match self.tx.try_send(event) {
                Ok(()) => return true,
                Err(TrySendError::Full(event)) => self.backlog.push_back(event),
                Err(TrySendError::Closed(_)) => return false,
            }
        } else {
            self.backlog.push_back(event);
        }
        if self.backlog.len() > MAX_BACKLOG {
            self.stats.fail(
                &self.group_id,
                &format!(
                    "The client fell more than {MAX_BACKLOG} batches of rows behind the query: the query was closed"
                ),
            );
            return false;
        }
        true
    }
}
