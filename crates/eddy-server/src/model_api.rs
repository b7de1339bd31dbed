//! Eddy's model endpoints: `POST /models/{name}` registers an uploaded ONNX graph and its card as a
//! version (what `CREATE MODEL` does with a folder the server reads); `GET /models` and
//! `GET /models/{name}` answer what `SHOW MODELS` and `DESCRIBE MODEL` do.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use eddy_common::rest::ErrorMessage;

use crate::access::{Principal, Rights};
use crate::model_entities::{model_description, model_list};
use crate::request::ApiError;
use crate::state::AppState;

/// The body of `POST /models/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelUpload {
    /// The version to register it as (the next one when absent).
    #[serde(default)]
    version: Option<u32>,
    /// The model's card: at least `features` and `threshold`.
    card: Value,
    /// The ONNX graph, in base64.
    onnx: String,
}

fn bad_request(message: String) -> ApiError {
    ApiError(ErrorMessage::generic(40000, message))
}

pub async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if caller.rights != Rights::Admin {
        caller
            .may_change("CreateModel")
            .map_err(|why| ApiError(ErrorMessage::generic(40300, format!("Forbidden: {why}"))))?;
    }
    let upload: ModelUpload = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Invalid model upload: {e}")))?;
    let onnx = base64::engine::general_purpose::STANDARD
        .decode(upload.onnx.trim())
        .map_err(|e| bad_request(format!("Invalid model upload: \"onnx\" is not base64: {e}")))?;
    let entity = tokio::task::spawn_blocking(move || {
        state.upload_model(&name, upload.version, upload.card, onnx)
    })
    .await
    .map_err(|e| ApiError(ErrorMessage::generic(50000, format!("internal error: {e}"))))?
    .map_err(refused)?;
    Ok(Json(entity))
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(model_list("GET /models", &state.engine()))
}

pub async fn describe(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    model_description(&format!("GET /models/{name}"), &state.engine(), &name)
        .map(Json)
        .map_err(|e| match e {
            eddy_common::Error::Plan(m) => ApiError(ErrorMessage::generic(40400, m)),
            e => refused(e),
        })
}

/// A refused request: 400 for the caller's mistakes, 500 for the server's.
fn refused(e: eddy_common::Error) -> ApiError {
    let code = if e.is_user_error() { 40000 } else { 50000 };
    ApiError(ErrorMessage::generic(code, e.to_string()))
}
