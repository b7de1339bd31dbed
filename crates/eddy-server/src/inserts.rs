//! `POST /inserts-stream` (HTTP/2): rows streamed into a stream, one JSON object per line after a
//! `{"target": "NAME"}` line, each acknowledged as soon as the broker has it (`{"status":"ok","seq":n}`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::http::{Version, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use eddy_common::rest::ErrorMessage;
use eddy_runtime::TopicAdmin;
use eddy_sql::normalize::ident_name;
use eddy_sql::statement::SourceKind;

use crate::request::{ApiError, MAX_BODY_BYTES};
use crate::state::AppState;

/// Reads lines from a request body as they arrive; the last line may lack its `\n`. A line longer
/// than [`MAX_BODY_BYTES`] ends the body with an error instead of being buffered.
struct Lines {
    body: BodyDataStream,
    buffer: Vec<u8>,
    done: bool,
}

/// A line that is not one.
#[derive(Debug)]
struct TooLong;

impl Lines {
    async fn next(&mut self) -> Option<Result<Vec<u8>, TooLong>> {
        loop {
            if let Some(i) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=i).collect();
                return Some(Ok(line[..i].to_vec()));
            }
            if self.buffer.len() > MAX_BODY_BYTES {
                self.done = true;
                self.buffer.clear();
                return Some(Err(TooLong));
            }
            if self.done {
                return (!self.buffer.is_empty()).then(|| Ok(std::mem::take(&mut self.buffer)));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => self.done = true,
            }
        }
    }
}

fn too_long() -> String {
    format!("A line of the body is longer than {MAX_BODY_BYTES} bytes")
}

/// The name a `target` gives: case-insensitive unless quoted, as in SQL.
fn target_name(target: &str) -> String {
    let t = target.trim();
    for q in ['`', '"'] {
        if let Some(inner) = t.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    ident_name(t, None)
}

pub async fn inserts_stream(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    if request.version() != Version::HTTP_2 {
        return Err(ApiError(ErrorMessage::generic(
            40004,
            "This endpoint is only available when using HTTP2",
        )));
    }
    let mut lines = Lines {
        body: request.into_body().into_data_stream(),
        buffer: Vec::new(),
        done: false,
    };
    let bad = |m: String| ApiError(ErrorMessage::generic(40000, m));
    let first = lines
        .next()
        .await
        .ok_or_else(|| bad("The body is empty: send {\"target\": \"STREAM\"} first".into()))?
        .map_err(|_| bad(too_long()))?;
    let header: Value = serde_json::from_slice(&first).map_err(|e| {
        bad(format!(
            "The first line must be {{\"target\": \"STREAM\"}}: {e}"
        ))
    })?;
    let target = header["target"]
        .as_str()
        .map(target_name)
        .ok_or_else(|| bad("The first line must name the \"target\" stream".into()))?;
    match state.engine().catalog().get(&target).map(|s| s.kind) {
        Some(SourceKind::Stream) => {}
        Some(SourceKind::Table) => {
            return Err(bad(format!(
                "{target} is a table: /inserts-stream inserts into streams"
            )));
        }
        None => {
            return Err(bad(format!(
                "Cannot insert values into an unknown stream: {target}"
            )));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut seq = 0u64;
        while let Some(line) = lines.next().await {
            let line = match line {
                Ok(line) => line,
                Err(TooLong) => {
                    let ack = json!({"@type": "InsertError", "error_code": 40000,
                        "message": too_long(), "status": "error", "seq": seq});
                    let _ = tx.send(Bytes::from(format!("{ack}\n"))).await;
                    break;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let st = state.clone();
            let target = target.clone();
            let inserted = tokio::task::spawn_blocking(move || -> Result<(), String> {
                let row: serde_json::Map<String, Value> = serde_json::from_slice(&line)
                    .map_err(|e| format!("A row must be a JSON object: {e}"))?;
                let (topic, record) = st
                    .engine()
                    .insert_json_row(&target, &row)
                    .map_err(|e| e.to_string())?;
                st.cluster
                    .produce(&topic, vec![record])
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("internal error: {e}")));
            let ack = match inserted {
                Ok(()) => json!({"status": "ok", "seq": seq}),
                Err(message) => json!({"@type": "InsertError", "error_code": 40000,
                    "message": message, "status": "error", "seq": seq}),
            };
            seq += 1;
            if tx.send(Bytes::from(format!("{ack}\n"))).await.is_err() {
                break;
            }
        }
    });
    let acks = futures::stream::unfold(rx, |mut rx| async move {
        let ack = rx.recv().await?;
        Some((Ok::<_, Infallible>(ack), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.ksqlapi.delimited.v1")],
        Body::from_stream(acks),
    )
        .into_response())
}
