//! Named points where a test can make the server die as SIGKILL would, at an exact step of the
//! exactly-once protocol rather than wherever a signal happens to land.
//!
//! `EDDY_CRASH_POINT=<point>:<n>` (read once) aborts the process the `n`-th time `<point>` is
//! passed; without it a point costs one relaxed load. Points:
//! - `output-settled`: an aggregation's write has its output acknowledged, its state changes and
//!   checkpoint not yet written;
//! - `rows-settled`: a stateless exactly-once batch has its output acknowledged, its checkpoints
//!   not yet written.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The point armed by the environment and the pass that aborts.
struct Armed {
    point: String,
    at: u64,
    passed: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("EDDY_CRASH_POINT").ok()?;
            let (point, at) = spec.rsplit_once(':')?;
            Some(Armed {
                point: point.to_string(),
                at: at.parse().ok().filter(|n| *n > 0)?,
                passed: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Passes `point`: aborts the process if the environment armed it for this pass.
pub(crate) fn pass(point: &str) {
    if let Some(armed) = armed()
        && armed.point == point
        && armed.passed.fetch_add(1, Ordering::Relaxed) + 1 == armed.at
    {
        eprintln!("crash point {point} reached: aborting (EDDY_CRASH_POINT)");
        std::process::abort();
    }
}
