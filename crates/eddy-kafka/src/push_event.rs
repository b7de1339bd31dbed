//! What a push query's client gets for a run of records: the rows they make (with which are
//! tombstones) or the failure, and how long a client may read nothing, whether the query reads with a consumer of its own or a shared one.

use std::sync::atomic::Ordering;
use std::time::Duration;

use eddy_runtime::arrow::array::RecordBatch;
use eddy_runtime::arrow::compute::{filter_record_batch, not};

use eddy_common::{Result, internal_err};
use eddy_runtime::{Pipeline, ProcessedBatch, RecordRef};
use eddy_sql::statement::SourceKind;

use crate::query_stats::QueryStats;
use crate::supervisor::panic_message;

/// How long a push query waits for a client that reads nothing before it closes the query.
pub(crate) const SLOW_CLIENT: Duration = Duration::from_secs(60);

/// Why a push query whose client read nothing for [`SLOW_CLIENT`] was closed.
pub(crate) fn too_slow() -> String {
    format!(
        "The client did not read the query's rows for {} s: the query was closed",
        SLOW_CLIENT.as_secs()
    )
}

/// What a push query hands to its client.
#[derive(Debug)]
pub enum PushEvent {
    /// Output rows, with which of them are tombstones.
    Rows(RecordBatch, Vec<bool>),
    Error(String),
}

/// The rows a push query shows for a processed batch, with their tombstone flags: on a table a
/// row without a value is a deletion (a tombstone); on a stream it is not an event and is skipped.
fn push_rows(pipeline: &Pipeline, p: ProcessedBatch) -> Result<Option<(RecordBatch, Vec<bool>)>> {
    let (batch, nulls) = if pipeline.source().kind == SourceKind::Stream {
        let keep = not(&p.null_values).map_err(|e| internal_err!("{e}"))?;
        let batch = filter_record_batch(&p.batch, &keep).map_err(|e| internal_err!("{e}"))?;
        let n = batch.num_rows();
        (batch, vec![false; n])
    } else {
        let nulls = p.null_values.iter().map(|v| v.unwrap_or(false)).collect();
        (p.batch, nulls)
    };
    Ok((batch.num_rows() > 0).then_some((batch, nulls)))
}

/// What a push query's client gets for records of its input `input` (read from `topic`): the
/// rows they make, or the failure; `None` when they make no row. Counts what was read and what
/// was left out.
pub(crate) fn push_event<R: RecordRef>(
    pipeline: &Pipeline,
    stats: &QueryStats,
    group_id: &str,
    topic: &str,
    input: usize,
    records: &[R],
) -> Option<PushEvent> {
    stats
        .consumed
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    // A panic ends the query with an error, not the server.
    let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pipeline.process_input(input, records)
    }))
    .unwrap_or_else(|panic| {
        Err(internal_err!(
            "the query panicked: {}",
            panic_message(panic.as_ref())
        ))
    });
    Some(match processed {
        Ok(p) => {
            stats.record_errors(group_id, topic, &p, records);
            match push_rows(pipeline, p) {
                Ok(Some((batch, nulls))) => PushEvent::Rows(batch, nulls),
                Ok(None) => return None,
                Err(e) => PushEvent::Error(e.to_string()),
            }
        }
        Err(e) => PushEvent::Error(e.to_string()),
    })
}
