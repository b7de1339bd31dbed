//! Keeps a persistent query running: each attempt runs on the query's thread with panics caught; an
//! attempt that fails or panics puts the query in `ERROR` (with the reason, shown by `SHOW QUERIES`
//! and `DESCRIBE`) and a new attempt starts after a backoff that doubles up to a maximum, as ksqlDB
//! retries a failed query. An attempt resumes from what was committed (offsets, or the state's last
//! checkpoint), so nothing past the failure counts as done.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_runtime::engine::Properties;

use crate::query_stats::QueryStats;

/// How long a failed query waits before it is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// ksqlDB's defaults: 15 s, doubling up to 15 min.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(15),
            max: Duration::from_secs(900),
        }
    }
}

impl Backoff {
    /// From ksqlDB's `ksql.query.retry.backoff.initial.ms` and `ksql.query.retry.backoff.max.ms`.
    pub fn from_properties(props: &Properties) -> Self {
        let ms = |key: &str, default: Duration| {
            props
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(default, Duration::from_millis)
        };
        let d = Backoff::default();
        let initial = ms("ksql.query.retry.backoff.initial.ms", d.initial);
        Backoff {
            initial,
            max: ms("ksql.query.retry.backoff.max.ms", d.max).max(initial),
        }
    }
}

/// Why an attempt ended before the query was stopped.
pub type Failure = String;

/// Runs `attempt` until `stop` is set: `attempt` returns `Ok` once `stop` is set, or the reason it
/// cannot go on; a panic counts as a failure with the panic's message.
pub(crate) fn supervise(
    query: &str,
    stop: &AtomicBool,
    stats: &QueryStats,
    backoff: Backoff,
    mut attempt: impl FnMut() -> Result<(), Failure>,
) {
    let mut wait = backoff.initial;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let failure = match catch_unwind(AssertUnwindSafe(&mut attempt)) {
            Ok(Ok(())) => break,
            Ok(Err(reason)) => reason,
            Err(panic) => format!("the query panicked: {}", panic_message(panic.as_ref())),
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // A query that ran well for longer than the longest wait starts its backoff afresh.
        if started.elapsed() > backoff.max {
            wait = backoff.initial;
        }
        tracing::error!(
            query,
            retry_in_ms = wait.as_millis() as u64,
            "the query failed and is retried: {failure}"
        );
        stats.fail(query, &failure);
        sleep_unless_stopped(stop, wait);
        wait = (wait * 2).min(backoff.max);
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Sleeps for `wait`, waking early when `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, wait: Duration) {
    let until = Instant::now() + wait;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn failures_and_panics_are_retried_with_a_growing_backoff_until_stopped() {
        let stop = AtomicBool::new(false);
        let stats = QueryStats::default();
        let attempts = AtomicUsize::new(0);
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
        };
        let started = Instant::now();
        supervise("q", &stop, &stats, backoff, || {
            match attempts.fetch_add(1, Ordering::SeqCst) {
                0 => Err("broken batch".to_string()),
                1 => panic!("decoder bug"),
                2 => Err("still broken".to_string()),
                _ => {
                    assert!(stats.failure().is_some(), "failing while retried");
                    stop.store(true, Ordering::SeqCst);
                    Ok(())
                }
            }
        });
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        // Waited 10 + 20 + 40 ms.
        assert!(started.elapsed() >= Duration::from_millis(70));
        let failure = stats.failure().unwrap();
        assert_eq!(failure, "still broken");
        assert_eq!(stats.restarts.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn backoff_reads_ksqldb_properties() {
        let props: Properties = [
            ("ksql.query.retry.backoff.initial.ms", "200"),
            ("ksql.query.retry.backoff.max.ms", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let b = Backoff::from_properties(&props);
        assert_eq!(b.initial, Duration::from_millis(200));
        assert_eq!(
            b.max,
            Duration::from_millis(200),
            "never below the first wait"
        );
        assert_eq!(
            Backoff::from_properties(&Properties::new()),
            Backoff::default()
        );
    }
}
