//! The ksqlDB-compatible REST API: `/ksql`, `/query`, `/query-stream`, `/close-query`, `/info`,
//! `/healthcheck`; and the Schema Registry API (`/subjects`, `/schemas`, see `registry_api`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use eddy_common::Error;
use eddy_common::rest::{CloseQueryArgs, ErrorMessage, KsqlRequest, QueryStreamArgs};
use eddy_kafka::{PrintSpec, PushEvent, max_task_idle, start_print, start_push};
use eddy_runtime::engine::Properties;
use eddy_runtime::format::encode::json_rows;
use eddy_sql::SqlType;
use eddy_sql::catalog::{WINDOWEND, WINDOWSTART};
use eddy_sql::statement::{ColumnRole, Emit, QueryStatement, SourceKind, Statement};

use crate::access::{Denied, Principal, Rights};
use crate::peer_client::PeerClient;
use crate::request::ApiError;
pub use crate::request::MAX_BODY_BYTES;
use crate::settings::check_request;
use crate::state::{AppState, offset_reset, session, to_properties};

/// The application's routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(crate::console::index))
        .route("/console/{file}", get(crate::console::asset))
        .route("/info", get(info))
        .route("/healthcheck", get(healthcheck))
        .route("/is_valid_property/{name}", get(is_valid_property))
        .route("/chc/live", get(|| async { axum::Json(json!({})) }))
        .route("/chc/ready", get(|| async { axum::Json(json!({})) }))
        .route("/ksql", post(ksql))
        .route("/query", post(query))
        .route("/query-stream", post(query_stream))
        .route("/close-query", post(close_query))
        .route("/inserts-stream", post(crate::inserts::inserts_stream))
        .route(
            "/subjects/{subject}/versions",
            post(crate::registry_api::register),
        )
        .route(
            "/subjects/{subject}/versions/latest",
            get(crate::registry_api::latest),
        )
        .route("/schemas/ids/{id}", get(crate::registry_api::by_id))
        .route("/status", get(crate::operations_api::statuses))
        .route(
            "/status/{kind}/{entity}/{action}",
            get(crate::operations_api::status),
        )
        .route("/clusterStatus", get(crate::operations_api::cluster_status))
        .route("/lag", get(crate::operations_api::lag))
        .route("/models", get(crate::model_api::list))
        .route(
            "/models/{name}",
            get(crate::model_api::describe).post(crate::model_api::upload),
        )
        .route("/internal/pull", post(internal_pull))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Names the caller of each request (`Access::admit`) for the handlers, or answers 401 or 403.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let access = state.access();
    // A script's request (the console's) gets no challenge: a browser would answer one with its own
    // login dialog instead of letting the page ask.
    let scripted = request.headers().contains_key("x-requested-with");
    match access.admit(request.method(), request.uri().path(), request.headers()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(Denied::Unauthenticated(why)) => {
            let mut response =
                ApiError(ErrorMessage::generic(40100, format!("Unauthorized: {why}")))
                    .into_response();
            if !scripted && let Ok(challenge) = access.challenge().parse() {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            response
        }
        Err(Denied::Forbidden(why)) => forbidden(why).into_response(),
    }
}

fn forbidden(why: String) -> ApiError {
    ApiError(ErrorMessage::generic(40300, format!("Forbidden: {why}")))
}

/// Counts each answer by its status, for `/metrics`.
async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Ok(mut counts) = state.requests.lock() {
        *counts.entry(response.status().as_u16()).or_default() += 1;
    }
    response
}

/// `GET /metrics`: Prometheus' text format.
async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&state))
        .await
        .map_err(|e| ApiError(ErrorMessage::generic(50000, format!("internal error: {e}"))))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(ErrorMessage::generic(40000, message))
}

/// Parses a JSON body whatever its Content-Type says, as ksqlDB does.
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("Invalid JSON in request: {e}")))
}

async fn info(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(json!({"KsqlServerInfo": {
        "version": eddy_common::VERSION,
        "kafkaClusterId": "eddy",
        "ksqlServiceId": state.service_id,
        "serverStatus": "RUNNING",
        "localBroker": state.local_broker,
        "bootstrapServers": state.cluster.bootstrap(),
    }}))
}

/// `GET /is_valid_property/{name}`: `true` when a request may set the property; otherwise 400 with
/// why (ksqlDB's message for the server's own settings, the closest name for an unknown one).
async fn is_valid_property(Path(name): Path<String>) -> Result<axum::Json<bool>, ApiError> {
    let props = Properties::from([(name, String::new())]);
    check_request(&props).map_err(|e| bad_request(e.to_string()))?;
    Ok(axum::Json(true))
}

async fn healthcheck(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let cluster = state.cluster.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        cluster
            .wait_ready(std::time::Duration::from_secs(2))
            .is_ok()
    })
    .await
    .unwrap_or(false);
    axum::Json(json!({
        "isHealthy": kafka,
        "details": {"metastore": {"isHealthy": true}, "kafka": {"isHealthy": kafka}, "commandRunner": {"isHealthy": true}},
        "serverState": "READY"
    }))
}

async fn ksql(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: KsqlRequest = parse_body(&body)?;
    if req.ksql.trim().is_empty() {
        return Err(bad_request("\"ksql\" field must be populated"));
    }
    let props = to_properties(&req.streams_properties);
    let script = state
        .parse_script(&req.ksql, &props, &req.session_variables)
        .map_err(ApiError)?;
    if caller.rights != Rights::Admin {
        for statement in script.statements() {
            if !statement.statement.is_read_only() {
                caller
                    .may_change(statement.statement.type_name())
                    .map_err(forbidden)?;
            }
        }
    }
    let result = tokio::task::spawn_blocking(move || state.execute_script(script))
        .await
        .map_err(|e| ApiError(ErrorMessage::generic(50000, format!("internal error: {e}"))))?;
    match result {
        Ok(entities) => Ok(axum::Json(Value::Array(entities)).into_response()),
        Err(e) => Err(ApiError(e)),
    }
}

async fn close_query(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let args: CloseQueryArgs = parse_body(&body)?;
    let task = state
        .push
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&args.query_id);
    match task {
        Some(t) => {
            tokio::task::spawn_blocking(move || t.stop()).await.ok();
            Ok(StatusCode::OK.into_response())
        }
        None => Err(bad_request(format!("No query with id {}", args.query_id))),
    }
}

/// Response shapes of the query endpoints.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// `/query-stream` default: a metadata line, then one JSON array per row.
    Delimited,
    /// `/query-stream` with `Accept: application/json`: one JSON array.
    JsonArray,
    /// `/query`: ksqlDB's v1 `StreamedRow` array, one object per line.
    V1,
}

async fn query(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let req: KsqlRequest = parse_body(&body)?;
    if req.ksql.trim().is_empty() {
        return Err(bad_request("\"ksql\" field must be populated"));
    }
    run_query(
        state,
        req.ksql,
        to_properties(&req.streams_properties),
        &req.session_variables,
        Shape::V1,
    )
    .await
}

async fn query_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let args: QueryStreamArgs = parse_body(&body)?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let shape = if accept.contains("application/vnd.ksql.v1+json") {
        Shape::V1
    } else if accept.contains("application/json") && !accept.contains("delimited") {
        Shape::JsonArray
    } else {
        Shape::Delimited
    };
    run_query(
        state,
        args.sql,
        to_properties(&args.properties),
        &args.session_variables,
        shape,
    )
    .await
}

async fn run_query(
    state: Arc<AppState>,
    sql: String,
    props: Properties,
    variables: &Map<String, Value>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let props = state
        .properties(&props)
        .map_err(|e| ApiError(ErrorMessage::statement(&e, &sql)))?;
    let types = state.engine().types().clone();
    let mut statements = eddy_sql::parse_with(&sql, &mut session(variables, &props), &types)
        .map_err(|e| ApiError(ErrorMessage::statement(&e, &sql)))?;
    if statements.len() != 1 {
        return Err(bad_request("Expected exactly one SELECT statement"));
    }
    let stmt = statements.remove(0);
    if let Statement::Print {
        topic,
        from_beginning,
        interval,
        limit,
    } = &stmt.statement
    {
        let spec = PrintSpec {
            topic: topic.clone(),
            from_beginning: *from_beginning,
            interval: interval.unwrap_or(1),
            limit: *limit,
        };
        return print(state, spec, &stmt.text, shape).await;
    }
    let Statement::Select(q) = &stmt.statement else {
        return Err(bad_request(format!(
            "Statement type `{}' not supported for this resource",
            stmt.statement.type_name()
        )));
    };
    if q.emit.is_none() {
        let started = eddy_kafka::now_millis();
        let answer = pull(state.clone(), q, &stmt.text, &props, shape).await;
        state
            .pull_latency
            .observe(eddy_kafka::now_millis(), [started]);
        if answer.is_err() {
            state.pull_failed.fetch_add(1, Ordering::Relaxed);
        }
        return answer;
    }
    if q.emit == Some(Emit::Final) {
        return Err(ApiError(ErrorMessage::statement(
            &Error::NotSupported("EMIT FINAL is not supported yet".into()),
            &stmt.text,
        )));
    }
    let pipeline = state
        .engine()
        .plan_transient(q)
        .map_err(|e| ApiError(ErrorMessage::statement(&e, &stmt.text)))?;
    admit_push(&state)?;
    let limit = pipeline.plan.limit;
    let id = state.transient_id(&pipeline.source().name);
    let names: Vec<String> = pipeline
        .plan
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let types: Vec<SqlType> = pipeline
        .plan
        .columns
        .iter()
        .map(|c| c.sql_type.clone())
        .collect();
    let pipeline = Arc::new(pipeline);
    let group = format!("_eddy-{}_{}", state.service_id, id);
    let st = state.clone();
    let reset = offset_reset(&props);
    let idle =
        max_task_idle(&props).map_err(|e| ApiError(ErrorMessage::statement(&e, &stmt.text)))?;
    let (rx, task) = tokio::task::spawn_blocking(move || {
        start_push(&st.cluster, &st.push_readers, pipeline, &reset, idle, group)
    })
    .await
    .map_err(|e| ApiError(ErrorMessage::generic(50000, e.to_string())))?
    .map_err(|e| ApiError(ErrorMessage::statement(&e, &stmt.text)))?;
    state.add_push(id.clone(), task);

    let columns: Vec<(String, SqlType, bool)> = names
        .into_iter()
        .zip(types)
        .map(|(n, t)| (n, t, false))
        .collect();
    let header = header(&id, &columns, shape);
    let guard = PushGuard {
        state: state.clone(),
        id,
    };
    Ok(rows_response(header, rx, limit, shape, Some(guard), None))
}

/// Refuses a push query when the server runs as many as it allows.
fn admit_push(state: &AppState) -> Result<(), ApiError> {
    let max = state
        .max_push_queries
        .load(std::sync::atomic::Ordering::Relaxed);
    let running = state.push.lock().unwrap_or_else(|p| p.into_inner()).len();
    if running >= max {
        return Err(ApiError(ErrorMessage::generic(
            42900,
            format!(
                "This server runs {running} push queries, its limit (ksql.max.push.queries = {max}): close one or try later"
            ),
        )));
    }
    Ok(())
}

/// How long a pull query may take to read a source's topic.
const SCAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A pull query: the table's current rows (or the stream's records), then the end of the response.
async fn pull(
    state: Arc<AppState>,
    q: &QueryStatement,
    text: &str,
    props: &Properties,
    shape: Shape,
) -> Result<Response, ApiError> {
    let query = state
        .engine()
        .plan_pull(q, props)
        .map_err(|e| ApiError(ErrorMessage::statement(&e, text)))?;
    let source = query.pipeline.source().clone();
    let columns: Vec<(String, SqlType, bool)> = query
        .pipeline
        .plan
        .columns
        .iter()
        .map(|c| {
            let bound =
                source.window.is_some() && [WINDOWSTART, WINDOWEND].contains(&c.name.as_str());
            // ksqlDB marks the keys of a table's rows; a stream's records have no key to mark.
            let table = source.kind == SourceKind::Table;
            (
                c.name.clone(),
                c.sql_type.clone(),
                table && (c.role == ColumnRole::Key || bound),
            )
        })
        .collect();
    let limit = query.pipeline.plan.limit;
    let cluster = state.cluster.clone();
    let blocking =
        |e: tokio::task::JoinError| ApiError(ErrorMessage::generic(50000, e.to_string()));
    let statement_error = |e: Error| ApiError(ErrorMessage::statement(&e, text));
    // Which servers hold the rest of the table (the broker is asked once per table, off the
    // runtime's threads), and the rows of the state held here, are read in memory: key lookups right
    // here (a lookup must not wait for another thread: handing the worker over cost more than the
    // lookup), a whole table's rows beside the runtime's threads; a table over a topic is read from
    // its store, once the store has caught up with the topic, and a stream from its topic.
    let holders = || state.remote_holders(&source.name, &query.held_shards);
    let remote = if state.holders_known(&source.name) {
        holders()
    } else {
        tokio::task::block_in_place(holders)
    }
    .map_err(statement_error)?;
    let local = match query.scan_topic() {
        None if query.lookup_keys().is_some() => query.execute(),
        None => tokio::task::block_in_place(|| query.execute()),
        Some(topic) => {
            let (state, source, topic) = (state.clone(), source.clone(), topic.to_string());
            tokio::task::spawn_blocking(move || {
                let records = match state.table_store(&source)? {
                    Some(feed) => {
                        let store = feed.caught_up(SCAN_TIMEOUT)?;
                        match query.lookup_keys() {
                            Some(keys) => store.lookup(keys)?,
                            None => store.records(),
                        }
                    }
                    None => cluster.read_records(&topic, SCAN_TIMEOUT)?,
                };
                query.execute_over(&records)
            })
            .await
            .map_err(blocking)?
        }
    }
    .map_err(statement_error)?;
    let mut batches = vec![local];
    for url in remote {
        batches.extend(
            remote_pull(state.peer_client(), &url, text, props)
                .await
                .map_err(statement_error)?,
        );
    }
    let batch = eddy_runtime::arrow::compute::concat_batches(&batches[0].schema(), &batches)
        .map_err(|e| statement_error(Error::Execution(e.to_string())))?;
    let id = state.transient_id(&source.name);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let tombstones = vec![false; batch.num_rows()];
    // The channel has room for the one event; the receiver ends the response after it.
    let _ = tx.try_send(PushEvent::Rows(batch, tombstones));
    drop(tx);
    // A pull query over a stream ends as ksqlDB's do: with a final message once its rows are out.
    let completed = (source.kind == SourceKind::Stream).then_some("Query Completed");
    Ok(rows_response(
        header(&id, &columns, shape),
        rx,
        limit,
        shape,
        None,
        completed,
    ))
}

/// The rows of a pull query that the server at `url` holds the state of (`/internal/pull`).
async fn remote_pull(
    peers: &PeerClient,
    url: &str,
    sql: &str,
    props: &Properties,
) -> Result<Vec<eddy_runtime::arrow::array::RecordBatch>, Error> {
    let unreachable = |e: String| {
        Error::External(format!(
            "The server at {url}, which holds part of the table, cannot be asked: {e}"
        ))
    };
    let body = json!({"sql": sql, "properties": props});
    let response = peers
        .post(&format!("{url}/internal/pull"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| unreachable(with_sources(&e)))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !status.is_success() {
        return Err(unreachable(String::from_utf8_lossy(&bytes).into_owned()));
    }
    let reader =
        eddy_runtime::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| unreachable(e.to_string()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreachable(e.to_string()))
}

/// An error and its causes, for a message (reqwest's own says little: "error sending request").
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// `POST /internal/pull` (servers asking each other): a pull query's rows from the state this server
/// holds, as an Arrow IPC stream.
async fn internal_pull(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: Value = serde_json::from_slice(&body).map_err(|e| bad_request(e.to_string()))?;
    let sql = request["sql"].as_str().unwrap_or_default().to_string();
    let props: Properties = request["properties"]
        .as_object()
        .map(to_properties)
        .unwrap_or_default();
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Error> {
        let types = state.engine().types().clone();
        let parsed = eddy_sql::parse_with(&sql, &mut Default::default(), &types)?;
        let Some(Statement::Select(q)) = parsed.first().map(|p| &p.statement) else {
            return Err(Error::BadRequest("expected a pull query".into()));
        };
        let batch = state.engine().plan_pull(q, &props)?.execute()?;
        let mut out = Vec::new();
        let mut writer =
            eddy_runtime::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
                .map_err(|e| Error::Internal(e.to_string()))?;
        writer
            .write(&batch)
            .map_err(|e| Error::Internal(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| Error::Internal(e.to_string()))?;
        drop(writer);
        Ok(out)
    })
    .await
    .map_err(|e| ApiError(ErrorMessage::generic(50000, e.to_string())))?
    .map_err(|e| ApiError(ErrorMessage::generic(40000, e.to_string())))?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
        bytes,
    )
        .into_response())
}

/// The first element of a query's response: its id and columns (name, type, whether a key; keys are
/// marked in the v1 schema of pull queries).
fn header(id: &str, columns: &[(String, SqlType, bool)], shape: Shape) -> String {
    match shape {
        Shape::V1 => {
            let schema: Vec<String> = columns
                .iter()
                .map(|(n, t, key)| {
                    let marker = if *key { " KEY" } else { "" };
                    format!("`{n}` {t}{marker}")
                })
                .collect();
            format!(
                "[{}",
                json!({"header": {"queryId": id, "schema": schema.join(", ")}})
            )
        }
        _ => {
            let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
            let types: Vec<String> = columns.iter().map(|c| c.1.plain_name()).collect();
            let meta = json!({"queryId": id, "columnNames": names, "columnTypes": types});
            if shape == Shape::JsonArray {
                format!("[{meta}")
            } else {
                format!("{meta}\n")
            }
        }
    }
}

/// A query's response: the header, then its rows as they arrive, then (v1, when the rows end before
/// the LIMIT) the `completed` final message.
fn rows_response(
    header: String,
    rx: tokio::sync::mpsc::Receiver<PushEvent>,
    limit: Option<u64>,
    shape: Shape,
    guard: Option<PushGuard>,
    completed: Option<&'static str>,
) -> Response {
    let rows = rows_stream(rx, limit, shape, guard, completed);
    // No empty chunks: over HTTP/2 each would be an empty DATA frame, and a client that sees many
    // on one connection (h2's flood guard) closes it.
    let body = futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(header)) })
        .chain(rows)
        .filter(|chunk| std::future::ready(chunk.as_ref().is_ok_and(|b| !b.is_empty())));
    let content_type = match shape {
        Shape::Delimited => "application/vnd.ksqlapi.delimited.v1",
        Shape::JsonArray => "application/json",
        Shape::V1 => "application/vnd.ksql.v1+json",
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

/// `PRINT`: the topic's records as text lines, until LIMIT or the client leaves.
async fn print(
    state: Arc<AppState>,
    spec: PrintSpec,
    text: &str,
    shape: Shape,
) -> Result<Response, ApiError> {
    if shape == Shape::JsonArray {
        return Err(ApiError(ErrorMessage::generic(
            40600,
            "PRINT streams text: ask for application/vnd.ksqlapi.delimited.v1",
        )));
    }
    admit_push(&state)?;
    let id = state.transient_id(&format!("PRINT_{}", spec.topic));
    let group = format!("_eddy-{}_{}", state.service_id, id);
    let st = state.clone();
    let (rx, task) = tokio::task::spawn_blocking(move || start_print(&st.cluster, spec, group))
        .await
        .map_err(|e| ApiError(ErrorMessage::generic(50000, e.to_string())))?
        .map_err(|e| ApiError(ErrorMessage::statement(&e, text)))?;
    state.add_push(id.clone(), task);
    let guard = PushGuard { state, id };
    let lines = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Bytes::from(line)), (rx, guard)))
    });
    let content_type = match shape {
        Shape::V1 => "application/json",
        _ => "application/vnd.ksqlapi.delimited.v1",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(lines),
    )
        .into_response())
}

/// Removes a push query from the registry (and so stops it) when its response ends.
struct PushGuard {
    state: Arc<AppState>,
    id: String,
}

impl PushGuard {
    /// Why the push query ended early, if it failed (a client too slow to read its rows).
    fn failure(&self) -> Option<String> {
        self.state
            .push
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.id)
            .and_then(|t| t.stats.failure())
    }
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        if let Some(task) = self
            .state
            .push
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id)
        {
            std::thread::spawn(move || task.stop());
        }
    }
}

/// An error in a push query's response, in the response's shape.
fn error_line(shape: Shape, message: &str) -> String {
    let err = json!({"@type": "generic_error", "error_code": 50000, "message": message});
    match shape {
        Shape::Delimited => format!("{err}\n"),
        Shape::JsonArray => format!(",{err}"),
        Shape::V1 => format!(",\n{}", json!({"errorMessage": err})),
    }
}

/// Streams rows until LIMIT, `/close-query` or the client leaves.
fn rows_stream(
    rx: tokio::sync::mpsc::Receiver<PushEvent>,
    limit: Option<u64>,
    shape: Shape,
    guard: Option<PushGuard>,
    completed: Option<&'static str>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    struct S {
        rx: tokio::sync::mpsc::Receiver<PushEvent>,
        sent: u64,
        done: bool,
        guard: Option<PushGuard>,
    }
    futures::stream::unfold(
        S {
            rx,
            sent: 0,
            done: false,
            guard,
        },
        move |mut s| async move {
            if s.done {
                return None;
            }
            let Some(event) = s.rx.recv().await else {
                s.done = true;
                let failure = s.guard.as_ref().and_then(PushGuard::failure);
                let end = match (shape, completed) {
                    (Shape::Delimited, _) => String::new(),
                    (Shape::JsonArray, _) => "]".to_string(),
                    (Shape::V1, Some(m)) => format!(",\n{}]\n", json!({"finalMessage": m})),
                    (Shape::V1, None) => "]\n".to_string(),
                };
                let end = match failure {
                    Some(message) => format!("{}{end}", error_line(shape, &message)),
                    None => end,
                };
                return Some((Ok(Bytes::from(end)), s));
            };
            let mut out = String::new();
            match event {
                PushEvent::Error(message) => out.push_str(&error_line(shape, &message)),
                PushEvent::Rows(batch, tombstones) => {
                    let rows = json_rows(&batch).unwrap_or_default();
                    for (row, tomb) in rows.into_iter().zip(tombstones) {
                        if limit.is_some_and(|l| s.sent >= l) {
                            break;
                        }
                        if tomb && shape != Shape::V1 {
                            continue;
                        }
                        s.sent += 1;
                        match shape {
                            Shape::Delimited => {
                                out.push_str(&row);
                                out.push('\n');
                            }
                            Shape::JsonArray => {
                                out.push(',');
                                out.push_str(&row);
                            }
                            Shape::V1 => {
                                out.push_str(",\n");
                                if tomb {
                                    out.push_str(&format!(
                                        "{{\"row\":{{\"columns\":{row},\"tombstone\":true}}}}"
                                    ));
                                } else {
                                    out.push_str(&format!("{{\"row\":{{\"columns\":{row}}}}}"));
                                }
                            }
                        }
                    }
                }
            }
            if limit.is_some_and(|l| s.sent >= l) {
                s.done = true;
                match shape {
                    Shape::Delimited => {}
                    Shape::JsonArray => out.push(']'),
                    Shape::V1 => out.push_str(",\n{\"finalMessage\":\"Limit Reached\"}]\n"),
                }
            }
            Some((Ok(Bytes::from(out)), s))
        },
    )
}

#[cfg(test)]
mod tests {
    /// Every route `app` serves is in the REST reference.
    #[test]
    fn every_route_is_in_the_rest_reference() {
        let reference = include_str!("../../../docs/rest-api.md");
        // The code above the tests.
        let source = include_str!("routes.rs")
            .split("#[cfg(test)]")
            .next()
            .unwrap();
        let routes: Vec<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        assert!(routes.len() >= 20, "{routes:?}");
        let missing: Vec<&&str> = routes
            .iter()
            .filter(|r| !reference.contains(&format!(" {r}`")))
            .collect();
        assert!(missing.is_empty(), "not in docs/rest-api.md: {missing:?}");
    }
}
