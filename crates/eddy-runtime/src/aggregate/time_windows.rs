//! Time windows of a stream: each record is assigned to its tumbling or hopping windows (Kafka
//! Streams' arithmetic, `eddy_sql::window`), or without a WINDOW clause to its key's one group;
//! stream time is the largest event time seen, and a record whose every window has closed (end +
//! grace <= stream time) is dropped and counted. Closed windows emit their final row (EMIT FINAL)
//! and are evicted after their retention through the state's timers.

use eddy_common::Result;

use super::{AggregateState, Aggregation, BatchRows, Fold};
use crate::format::DecodeError;
use crate::format::window::Bounds;

/// The aggregation of a stream into time windows, or into one group per key.
#[derive(Debug)]
pub(super) struct TimeWindows;

impl Aggregation for TimeWindows {
    fn fold(
        &self,
        state: &mut AggregateState,
        rows: &BatchRows<'_>,
        fold: &mut Fold,
    ) -> Result<()> {
        let window = state.spec.window.clone();
        let mut starts = Vec::new();
        for i in 0..rows.len() {
            if rows.null_values.value(i) || !rows.grouped(i) {
                continue;
            }
            let (ts, partition, offset) = rows.position(i);
            let key = rows.key(i);
            starts.clear();
            let mut size = 0;
            match &window {
                Some(w) => {
                    // A record no window fits is skipped before it moves stream time.
                    if let Err(message) = w.time_windows(ts, &mut starts) {
                        state
                            .skipped
                            .push(DecodeError::processing(partition, offset, &message));
                        continue;
                    }
                    size = w.key_window().size_ms.unwrap_or(0);
                }
                None => starts.push(0),
            }
            state.stream_time = state.stream_time.max(ts);
            let mut dropped = false;
            for start in starts.iter().copied() {
                let bounds = window.as_ref().map(|_| Bounds {
                    start,
                    end: start.saturating_add(size),
                });
                if let (Some(b), Some(w)) = (bounds, &window)
                    && b.end.saturating_add(w.grace_ms()) <= state.stream_time
                {
                    dropped = true;
                    continue;
                }
                let group = state.group(key, bounds)?;
                if state.covered(group, partition, offset) {
                    continue;
                }
                state.note(group, ts, partition);
                // Rows whose group's row is not emitted right away wait to be folded in a group
                // at a time (before any timer reads the groups).
                if state.per_commit || state.emit_final {
                    fold.pending.push((group, i));
                } else {
                    state.update(group, rows.args, i, 1);
                }
                if !state.emit_final {
                    state.changed(group, ts, &mut fold.outs)?;
                }
            }
            fold.late_records += usize::from(dropped);
            state.after_row(fold, rows.args)?;
        }
        Ok(())
    }
}
