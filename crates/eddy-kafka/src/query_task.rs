//! A query's thread and its stop flag and counters, and how a persistent query's task is
//! configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_common::Result;
use eddy_runtime::engine::Properties;

use crate::processing_log::ProcessingLog;
use crate::query_stats::QueryStats;
use crate::supervisor::{Backoff, Failure, panic_message, supervise};

/// Stack of a query's thread: evaluating an expression recurses once per level of its nesting
/// (at most `eddy_sql::limits`). Reserved address space; only what is used is memory.
const STACK_BYTES: usize = 16 << 20;

/// A query running on its own thread.
#[derive(Debug)]
pub struct QueryTask {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<QueryStats>,
    /// Other tasks of the same query (the joins of a query split at them), stopped with it.
    stages: Vec<QueryTask>,
}

impl QueryTask {
    /// Asks the task to stop and waits for it.
    pub fn stop(mut self) {
        for stage in std::mem::take(&mut self.stages) {
            stage.stop();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// This task with `stage`, another task of the same query, which stops with it.
    pub(crate) fn with_stage(mut self, stage: QueryTask) -> QueryTask {
        self.stages.push(stage);
        self
    }

    /// A task whose work runs on another thread (a push query on a shared reader), which obeys
    /// its stop flag and sets it when the work ends.
    pub(crate) fn attached(stop: Arc<AtomicBool>, stats: Arc<QueryStats>) -> QueryTask {
        QueryTask {
            stop,
            thread: None,
            stats,
            stages: Vec::new(),
        }
    }

    /// Runs `body` on a thread named `name` with the task's stop flag and counters; `body` returns
    /// when the flag is set. A panic in `body` ends the thread (and is its last error).
    pub(crate) fn spawn(
        name: String,
        body: impl FnOnce(Arc<AtomicBool>, Arc<QueryStats>) + Send + 'static,
    ) -> Result<QueryTask> {
        let span = tracing::info_span!("task", task = %name);
        QueryTask::spawn_with(name, span, Arc::new(QueryStats::default()), body)
    }

    /// [`QueryTask::spawn`] with counters made by the caller; everything the thread logs is in
    /// `span` (a field names the query, in text and JSON logs alike).
    fn spawn_with(
        name: String,
        span: tracing::Span,
        stats: Arc<QueryStats>,
        body: impl FnOnce(Arc<AtomicBool>, Arc<QueryStats>) + Send + 'static,
    ) -> Result<QueryTask> {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, counters) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(name)
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let _in_span = span.enter();
                let failed = counters.clone();
                let run = std::panic::AssertUnwindSafe(move || body(flag, counters));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let message = panic_message(panic.as_ref());
                    tracing::error!("a query task panicked: {message}");
                    let name = std::thread::current()
                        .name()
                        .unwrap_or_default()
                        .to_string();
                    failed.fail(&name, &format!("the query panicked: {message}"));
                }
            })
            .map_err(|e| eddy_common::internal_err!("cannot start a query thread: {e}"))?;
        Ok(QueryTask {
            stop,
            thread: Some(thread),
            stats,
            stages: Vec::new(),
        })
    }

    /// Runs a persistent query on a thread named `name`: `attempt` runs until the stop flag is set, and
    /// is started again after a backoff when it fails or panics (see [`supervise`]).
    pub(crate) fn supervised(
        name: String,
        query: String,
        config: &TaskConfig,
        mut attempt: impl FnMut(&Arc<AtomicBool>, &Arc<QueryStats>) -> std::result::Result<(), Failure>
        + Send
        + 'static,
    ) -> Result<QueryTask> {
        let backoff = config.backoff;
        let stats = config
            .stats
            .clone()
            .unwrap_or_else(|| Arc::new(QueryStats::logged_to(config.processing_log.clone())));
        let span = tracing::info_span!("query", query = %query);
        QueryTask::spawn_with(name, span, stats, move |stop, stats| {
            supervise(&query, &stop, &stats, backoff, || attempt(&stop, &stats))
        })
    }

    /// Whether the task's thread, or one of its stages', has ended.
    pub fn is_finished(&self) -> bool {
        let finished = match &self.thread {
            Some(t) => t.is_finished(),
            None => self.stop.load(Ordering::SeqCst),
        };
        finished || self.stages.iter().any(QueryTask::is_finished)
    }
}

impl Drop for QueryTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How a persistent query's task runs.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The query's consumer group.
    pub group_id: String,
    /// Where a group without committed offsets starts (`earliest` or `latest`).
    pub offset_reset: String,
    /// How long the query waits before it is tried again when it fails.
    pub backoff: Backoff,
    /// Where skipped records and failures are logged besides the server log.
    pub processing_log: Option<Arc<ProcessingLog>>,
    /// `processing.guarantee=exactly_once_v2`: nothing is written twice, even after a crash.
    pub exactly_once: bool,
    /// `max.task.idle.ms`: how long a join's input partition that ran dry holds the other sides'
    /// newer records back (see `time_order`).
    pub max_task_idle: Duration,
    /// Counters shared with another task of the same query (the joins of a query split at them
    /// count into the aggregation's); fresh ones when `None`.
    pub stats: Option<Arc<QueryStats>>,
    /// Per-record figures for `/metrics`: the bytes read and the end-to-end latency (`eddy.metrics`;
    /// the record counters are kept either way).
    pub metrics: bool,
}

impl TaskConfig {
    /// Group `group_id`, reading from `offset_reset` on, ksqlDB's backoff, no processing log.
    pub fn new(group_id: String, offset_reset: &str) -> Self {
        TaskConfig {
            group_id,
            offset_reset: offset_reset.to_string(),
            backoff: Backoff::default(),
            processing_log: None,
            exactly_once: false,
            max_task_idle: Duration::ZERO,
            stats: None,
            metrics: true,
        }
    }
}

/// Reads `max.task.idle.ms` (Kafka Streams' setting, also under `ksql.streams.`): how long a join
/// waits for a side that ran dry before it goes on with the other side's newer records; 0, Kafka
/// Streams' default, when the properties do not say.
pub fn max_task_idle(props: &Properties) -> Result<Duration> {
    let value = props
        .get("max.task.idle.ms")
        .or_else(|| props.get("ksql.streams.max.task.idle.ms"));
    match value.map(|v| v.trim()) {
        None => Ok(Duration::ZERO),
        Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
            eddy_common::Error::Plan(format!(
                "max.task.idle.ms must be a whole number of milliseconds (0 or more), not '{v}'"
            ))
        }),
    }
}

/// Reads `processing.guarantee` (ksqlDB's setting, also under `ksql.streams.`): whether a query's
/// output is exactly-once (`exactly_once_v2`, or the deprecated `exactly_once`) or at-least-once;
/// `default` when the properties do not say.
pub fn exactly_once_guarantee(props: &Properties, default: bool) -> Result<bool> {
    let value = props
        .get("processing.guarantee")
        .or_else(|| props.get("ksql.streams.processing.guarantee"));
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("at_least_once") => Ok(false),
        Some("exactly_once_v2" | "exactly_once") => Ok(true),
        Some(other) => Err(eddy_common::Error::Plan(format!(
            "processing.guarantee must be at_least_once or exactly_once_v2, not '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processing_guarantee_is_read_as_ksqldb_names_it() {
        let props = |k: &str, v: &str| Properties::from([(k.to_string(), v.to_string())]);
        assert!(!exactly_once_guarantee(&Properties::new(), false).unwrap());
        assert!(exactly_once_guarantee(&Properties::new(), true).unwrap());
        assert!(
            exactly_once_guarantee(&props("processing.guarantee", "exactly_once_v2"), false)
                .unwrap()
        );
        assert!(
            exactly_once_guarantee(
                &props("ksql.streams.processing.guarantee", "EXACTLY_ONCE"),
                false
            )
            .unwrap()
        );
        assert!(
            !exactly_once_guarantee(&props("processing.guarantee", "at_least_once"), true).unwrap()
        );
        let e = exactly_once_guarantee(&props("processing.guarantee", "twice"), false).unwrap_err();
        assert!(e.to_string().contains("exactly_once_v2"), "{e}");
    }

    #[test]
    fn max_task_idle_is_read_with_or_without_the_streams_prefix() {
        let props = |k: &str, v: &str| Properties::from([(k.to_string(), v.to_string())]);
        assert_eq!(max_task_idle(&Properties::new()).unwrap(), Duration::ZERO);
        assert_eq!(
            max_task_idle(&props("max.task.idle.ms", "250")).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            max_task_idle(&props("ksql.streams.max.task.idle.ms", " 2000 ")).unwrap(),
            Duration::from_secs(2)
        );
        for bad in ["-1", "soon", "1.5"] {
            let e = max_task_idle(&props("max.task.idle.ms", bad)).unwrap_err();
            assert!(e.to_string().contains("max.task.idle.ms"), "{e}");
        }
    }
}
