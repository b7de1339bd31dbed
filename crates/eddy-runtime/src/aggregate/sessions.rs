//! Session windows: a record falls into its key's session that reaches within the gap of its time,
//! merging the sessions it bridges (each replaced session gets a tombstone, the merged row carries
//! the session's end as its time); expired sessions are not merged, and a record too late for any
//! session is dropped and counted.

use eddy_common::Result;
use eddy_sql::statement::WindowKind;

use super::{AggregateState, Aggregation, BatchRows, DfResult, Fold, Out, df, one_row};
use crate::format::window::Bounds;

/// The aggregation of a stream into session windows.
#[derive(Debug)]
pub(super) struct Sessions;

impl Aggregation for Sessions {
    fn fold(
        &self,
        state: &mut AggregateState,
        rows: &BatchRows<'_>,
        fold: &mut Fold,
    ) -> Result<()> {
        let Some(w) = state.spec.window.clone() else {
            return Ok(());
        };
        let WindowKind::Session { gap_ms } = w.kind else {
            return Ok(());
        };
        for i in 0..rows.len() {
            if rows.null_values.value(i) || !rows.grouped(i) {
                continue;
            }
            let (ts, partition, offset) = rows.position(i);
            let key = rows.key(i);
            state.stream_time = state.stream_time.max(ts);
            if state.session_covered(key, ts, partition, offset) {
                continue;
            }
            let close = state
                .stream_time
                .saturating_sub(w.grace_ms())
                .saturating_sub(gap_ms);
            match state.session(key, ts, gap_ms, close, &mut fold.outs, &mut fold.to_free)? {
                Some(group) => {
                    state.note(group, ts, partition);
                    state.update(group, rows.args, i, 1);
                    if !state.emit_final {
                        // A session's row carries its latest event time, its end.
                        let end = state.get(group).window.map_or(ts, |w| w.end);
                        state.changed(group, end, &mut fold.outs)?;
                    }
                }
                None => fold.late_records += 1,
            }
            state.after_row(fold, rows.args)?;
        }
        Ok(())
    }
}

impl AggregateState {
    /// The session of `key` that a record at `ts` falls into, merging the sessions it bridges (each
    /// replaced session gets a tombstone); `None` when the record is too late.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        key: &[u8],
        ts: i64,
        gap: i64,
        close: i64,
        outs: &mut Vec<Out>,
        to_free: &mut Vec<usize>,
    ) -> Result<Option<usize>> {
        let mut sessions = self.windows.remove(key).unwrap_or_default();
        // Sessions that ended before the close time have expired.
        sessions.retain(|g| {
            self.groups[*g]
                .as_ref()
                .is_some_and(|g| g.window.is_some_and(|w| w.end >= close))
        });
        let (mut overlapping, rest): (Vec<usize>, Vec<usize>) =
            sessions.into_iter().partition(|g| {
                let w = self.groups[*g]
                    .as_ref()
                    .and_then(|g| g.window)
                    .expect("session window");
                w.end >= ts.saturating_sub(gap) && w.start <= ts.saturating_add(gap)
            });
        let mut merged = Bounds { start: ts, end: ts };
        for g in &overlapping {
            let w = self.groups[*g]
                .as_ref()
                .and_then(|g| g.window)
                .expect("session window");
            merged.start = merged.start.min(w.start);
            merged.end = merged.end.max(w.end);
        }
        let mut sessions = rest;
        if merged.end < close {
            if !overlapping.is_empty() || !sessions.is_empty() {
                sessions.append(&mut overlapping);
                self.windows.insert(key.into(), sessions);
            }
            return Ok(None);
        }
        overlapping.sort_by_key(|g| {
            self.groups[*g]
                .as_ref()
                .and_then(|g| g.window)
                .map(|w| w.start)
        });
        let same = overlapping
            .iter()
            .position(|g| self.groups[*g].as_ref().and_then(|g| g.window) == Some(merged));
        let target = match same {
            Some(p) => overlapping.remove(p),
            None => self.create(key, Some(merged))?,
        };
        for g in overlapping {
            let old = self.groups[g]
                .as_ref()
                .and_then(|g| g.window)
                .expect("session window");
            if !self.emit_final {
                outs.push(self.out(g, true, old.end)?);
            }
            let states = {
                let group = self.get(g);
                group
                    .accumulators
                    .iter_mut()
                    .map(|a| a.state())
                    .collect::<DfResult<Vec<_>>>()
                    .map_err(df)?
            };
            for (acc, state) in self.get(target).accumulators.iter_mut().zip(states) {
                acc.merge_batch(&one_row(&state)?).map_err(df)?;
            }
            self.log_end(g);
            self.get(g).window = None;
            to_free.push(g);
        }
        sessions.push(target);
        self.windows.insert(key.into(), sessions);
        if same.is_none() {
            let spec = self.spec.window.clone().expect("windowed");
            self.set_timers(target, merged, spec.grace_ms(), spec.retention_ms());
        }
        Ok(Some(target))
    }
}
