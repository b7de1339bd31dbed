//! The Schema Registry API the server serves from its registry (its own, or the one it is configured
//! with): enough of Confluent's for producers and consumers that register and fetch schemas, so a
//! deployment without a separate registry can still use AVRO, PROTOBUF and JSON_SR.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use eddy_runtime::format::avro::schema::AvroSchema;
use eddy_runtime::format::protobuf::schema::ProtoSchema;
use eddy_runtime::registry::{RegisteredSchema, SchemaKind};

use crate::state::AppState;

/// An error in the registry's shape: `{"error_code", "message"}`.
fn error(status: StatusCode, code: u32, message: String) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

/// The JSON of a registered schema (`schemaType` left out for AVRO, as the registry does).
fn schema_json(schema: &RegisteredSchema) -> Value {
    let mut v = json!({"schema": schema.text});
    if schema.kind != SchemaKind::Avro {
        v["schemaType"] = json!(schema.kind.as_str());
    }
    v
}

/// Why a schema does not parse in its language, if it does not.
fn invalid(schema: &RegisteredSchema) -> Option<String> {
    match schema.kind {
        SchemaKind::Avro => AvroSchema::parse(&schema.text).err(),
        SchemaKind::Protobuf => ProtoSchema::parse(&schema.text).err(),
        SchemaKind::Json => serde_json::from_str::<Value>(&schema.text)
            .err()
            .map(|e| e.to_string()),
    }
}

/// `POST /subjects/{subject}/versions`: registers a schema; answers its id.
pub async fn register(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    // Any content type: registry clients send their own media type, simple ones none at all.
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            400,
            "The body must be JSON with a \"schema\"".into(),
        );
    };
    let Some(text) = body.get("schema").and_then(Value::as_str) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "The body has no \"schema\" string".into(),
        );
    };
    let schema = RegisteredSchema {
        kind: SchemaKind::from_name(body.get("schemaType").and_then(Value::as_str)),
        text: text.to_string(),
    };
    if let Some(why) = invalid(&schema) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Invalid {} schema: {why}", schema.kind.as_str()),
        );
    }
    let outcome =
        tokio::task::spawn_blocking(move || state.register_schema(&subject, &schema)).await;
    match outcome {
        Ok(Ok(id)) => Json(json!({"id": id})).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
    }
}

/// `GET /subjects/{subject}/versions/latest`.
pub async fn latest(State(state): State<Arc<AppState>>, Path(subject): Path<String>) -> Response {
    let registry = state.engine().schema_registry().clone();
    let found = tokio::task::spawn_blocking({
        let subject = subject.clone();
        move || registry.latest(&subject)
    })
    .await;
    match found {
        Ok(Ok(Some((id, schema)))) => {
            let mut v = schema_json(&schema);
            v["subject"] = json!(subject);
            v["id"] = json!(id);
            Json(v).into_response()
        }
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
    }
}

/// `GET /schemas/ids/{id}`.
pub async fn by_id(State(state): State<Arc<AppState>>, Path(id): Path<u32>) -> Response {
    let registry = state.engine().schema_registry().clone();
    match tokio::task::spawn_blocking(move || registry.by_id(id)).await {
        Ok(Ok(schema)) => Json(schema_json(&schema)).into_response(),
        Ok(Err(_)) => error(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
    }
}
