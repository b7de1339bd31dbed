//! How often each plugin function is called, on how many rows, for how long, and how often it
//! fails — for the server's metrics (a model's inference is its scoring function's calls).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A function's counters.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: AtomicU64,
    rows: AtomicU64,
    nanos: AtomicU64,
    errors: AtomicU64,
}

/// The counters as they were read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallSnapshot {
    /// Calls into the plugin (a batch of rows each).
    pub calls: u64,
    pub rows: u64,
    /// Time spent in the calls.
    pub nanos: u64,
    /// Calls that failed.
    pub errors: u64,
}

impl CallStats {
    /// Runs `call` on `rows` rows and counts it.
    pub fn time<T, E>(&self, rows: usize, call: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let start = Instant::now();
        let result = call();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The counters now.
    pub fn snapshot(&self) -> CallSnapshot {
        CallSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            nanos: self.nanos.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_rows_and_failures_are_counted() {
        let stats = CallStats::default();
        assert_eq!(stats.time(10, || Ok::<_, ()>(1)), Ok(1));
        assert!(stats.time(5, || Err::<(), _>("bad")).is_err());
        let s = stats.snapshot();
        assert_eq!((s.calls, s.rows, s.errors), (2, 15, 1));
    }
}
