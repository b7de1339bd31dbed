//! One reader per topic shared by the push queries that read it from its latest records: a thread
//! and a consumer assigned every partition of the topic from its end (it joins no consumer group
//! and commits nothing) hand each micro-batch to every push query on the topic, each with its own pipeline,
//! counters and client. The broker sees one consumer per topic and server however many push
//! queries read it. The reader never waits for a client: a client's rows wait in its backlog, and a
//! client that reads nothing for a minute, or falls more than [`MAX_BACKLOG`] rows behind, is
//! closed with an error. The reader ends with its
//! last push query. Partitions added to the topic after the reader started are not read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::consumer::BaseConsumer;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use eddy_common::Result;
use eddy_runtime::{Pipeline, RecordRef};

use crate::poll::Poller;
use crate::push_event::{PushEvent, SLOW_CLIENT, push_event, too_slow};
use crate::query_stats::QueryStats;
use crate::query_task::QueryTask;

/// Rows a client may fall behind (beyond its channel) before its query is closed.
const MAX_BACKLOG: usize = 100_000;

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
    /// Rows in the backlog.
    backlog_rows: usize,
    /// Since when the client's channel has had no room.
    full_since: Option<Instant>,
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
            backlog_rows: 0,
            full_since: None,
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
                    .name("push-reader".to_string())
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
    let mut poller = Poller::new(consumer);
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
        let batch = poller.poll();
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
    /// (the client left, read nothing for [`SLOW_CLIENT`] or fell too far behind).
    fn offer<R: RecordRef>(&mut self, topic: &str, records: &[R]) -> bool {
        if !records.is_empty()
            && let Some(event) = push_event(
                &self.pipeline,
                &self.stats,
                &self.group_id,
                topic,
                0,
                records,
            )
        {
            self.backlog_rows += rows(&event);
            self.backlog.push_back(event);
        }
        while let Some(event) = self.backlog.pop_front() {
            let count = rows(&event);
            match self.tx.try_send(event) {
                Ok(()) => {
                    self.backlog_rows -= count;
                    self.full_since = None;
                }
                Err(TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    break;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        if self.backlog.is_empty() {
            return true;
        }
        let since = *self.full_since.get_or_insert_with(Instant::now);
        let failure = if since.elapsed() >= SLOW_CLIENT {
            too_slow()
        } else if self.backlog_rows > MAX_BACKLOG {
            format!(
                "The client fell more than {MAX_BACKLOG} rows behind the query: the query was closed"
            )
        } else {
            return true;
        };
        self.stats.fail(&self.group_id, &failure);
        false
    }
}

/// The rows of an event (an error counts as one).
fn rows(event: &PushEvent) -> usize {
    match event {
        PushEvent::Rows(batch, _) => batch.num_rows(),
        PushEvent::Error(_) => 1,
    }
}
