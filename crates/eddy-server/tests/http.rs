//! The HTTP handlers in process (tower's `oneshot` on the router), over a real local broker (nisshi):
//! response shapes, status codes and error bodies of the ksqlDB-compatible API and of the Schema
//! Registry API; and the Schema Registry client against a served router.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use eddy_kafka::KafkaCluster;
use eddy_runtime::TopicAdmin;
use eddy_server::access::Access;
use eddy_server::local_broker::LocalBroker;
use eddy_server::peer_client::PeerClient;
use eddy_server::schema_registry::HttpRegistry;
use eddy_server::state::{ModelDirs, QueryDefaults};
use eddy_server::{routes, state::AppState};

/// A server (router and state) over its own local broker, which stops when the value is dropped.
struct Server {
    app: Router,
    state: Arc<AppState>,
    cluster: Arc<KafkaCluster>,
    _broker: LocalBroker,
    _dir: tempdir::Dir,
}

fn server() -> Server {
    server_with(|_| Default::default())
}

/// A server whose query defaults are made from its data directory.
fn server_with(defaults: impl FnOnce(&std::path::Path) -> QueryDefaults) -> Server {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = tempdir::Dir::new(n);
    let defaults = defaults(dir.path());
    let broker = LocalBroker::start(dir.path()).expect("start nisshi (run scripts/setup)");
    let cluster = Arc::new(KafkaCluster::connect(broker.bootstrap()).expect("connect"));
    cluster
        .wait_ready(Duration::from_secs(30))
        .expect("broker ready");
    let state = AppState::start(
        cluster.clone(),
        format!("http{n}"),
        None,
        None,
        None,
        defaults,
    )
    .expect("server state");
    Server {
        app: routes::app(state.clone()),
        state,
        cluster,
        _broker: broker,
        _dir: dir,
    }
}

async fn start() -> Server {
    tokio::task::spawn_blocking(server).await.expect("server")
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, String) {
    call_as(app, None, method, uri, body).await
}

/// A call with an `Authorization` header when one is given.
async fn call_as(
    app: &Router,
    authorization: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let request = request
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The lines of a push query on `/query-stream` read from the earliest offset (header first).
async fn push_query(app: &Router, sql: &str) -> Vec<Value> {
    let (status, body) = call(
        app,
        "POST",
        "/query-stream",
        Some(json!({"sql": sql, "properties": {"auto.offset.reset": "earliest"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn ksql(app: &Router, sql: &str) -> (StatusCode, Value) {
    let (status, body) = call(app, "POST", "/ksql", Some(json!({"ksql": sql}))).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn info_and_health_describe_the_server() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = call(app, "GET", "/info", None).await;
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["KsqlServerInfo"]["version"], eddy_common::VERSION);
    assert_eq!(info["KsqlServerInfo"]["serverStatus"], "RUNNING");
    let (status, body) = call(app, "GET", "/healthcheck", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["isHealthy"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn properties_a_request_may_set_are_told_apart() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = call(app, "GET", "/is_valid_property/auto.offset.reset", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "true"));
    let (status, body) = call(app, "GET", "/is_valid_property/ksql.service.id", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("prohibited by the KSQL server"), "{body}");
    let (status, body) = call(app, "GET", "/is_valid_property/commit.intervl.ms", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("did you mean 'commit.interval.ms'"), "{body}");
    // A request with a property it may not set is refused before it runs.
    let (status, body) = call(
        app,
        "POST",
        "/ksql",
        Some(json!({"ksql": "SHOW STREAMS;", "streamsProperties": {"ksql.streams.producer.acks": "1"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_authentication_on_callers_are_named_and_read_only_ones_cannot_change_anything() {
    use base64::Engine;
    let server = start().await;
    let dir = server._dir.path();
    let token = "0123456789abcdef0123456789abcdef";
    let jwt_secret = "a secret of at least thirty-two bytes";
    let files = [
        (
            "users",
            format!(
                "fred: {}, admin\nbarney: {}, user\n",
                eddy_server::credentials::hash_password("flintstone").unwrap(),
                eddy_server::credentials::hash_password("rubble").unwrap()
            ),
        ),
        (
            "tokens",
            format!(
                "ci: {}, user\n",
                eddy_server::api_tokens::hash_token(token).unwrap()
            ),
        ),
        ("jwt.key", jwt_secret.to_string()),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let settings: std::collections::HashMap<&str, String> = [
        ("authentication.method", "BASIC".to_string()),
        (
            "eddy.authentication.credentials.file",
            dir.join("users").display().to_string(),
        ),
        (
            "eddy.authentication.tokens.file",
            dir.join("tokens").display().to_string(),
        ),
        (
            "eddy.authentication.jwt.key.location",
            dir.join("jwt.key").display().to_string(),
        ),
        (
            "eddy.internal.secret",
            "peers-secret-of-thirty-two-characters".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let access = Access::from_settings(|k| settings.get(k).map(String::as_str)).unwrap();
    server.state.secure(access, PeerClient::default());
    let app = &server.app;
    let basic = |user: &str, password: &str| {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {pair}")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = |exp: u64, roles: &[&str]| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": "wilma", "exp": exp, "roles": roles}),
            &jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
        )
        .unwrap();
        format!("Bearer {token}")
    };

    // Every endpoint but the health checks needs credentials, and says which kind.
    let endpoints = [
        ("GET", "/info"),
        ("GET", "/is_valid_property/auto.offset.reset"),
        ("POST", "/ksql"),
        ("POST", "/query"),
        ("POST", "/query-stream"),
        ("POST", "/close-query"),
        ("POST", "/inserts-stream"),
        ("POST", "/subjects/s-value/versions"),
        ("GET", "/subjects/s-value/versions/latest"),
        ("GET", "/schemas/ids/1"),
        ("GET", "/metrics"),
        ("POST", "/internal/pull"),
        ("GET", "/no-such-path"),
    ];
    for (method, path) in endpoints {
        let (status, body) = call(app, method, path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert!(body.contains("40100"), "{body}");
        let (status, _) = call_as(
            app,
            Some(&basic("fred", "wrong")),
            method,
            path,
            Some(json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    for path in ["/healthcheck", "/chc/live", "/chc/ready"] {
        assert_eq!(
            call(app, "GET", path, None).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    let request = Request::builder().uri("/info").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"Eddy\""
    );
    // The console's own requests are refused without a challenge (a browser would open its login
    // dialog over the console's).
    let request = Request::builder()
        .uri("/info")
        .header("x-requested-with", "XMLHttpRequest")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key("www-authenticate"));
    // The console's page and scripts hold no data: served without credentials; an API client asking
    // for `/` is sent to `/info`, which needs them.
    let page = |accept: &'static str| {
        Request::builder()
            .uri("/")
            .header("accept", accept)
            .body(Body::empty())
            .unwrap()
    };
    let response = app.clone().oneshot(page("text/html,*/*")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let response = app.clone().oneshot(page("application/json")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()["location"], "/info");
    let (status, script) = call(app, "GET", "/console/console.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.contains("import"), "{script}");
    let (status, keywords) = call(app, "GET", "/console/keywords.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(keywords.contains("\"SELECT\""), "{keywords}");
    assert_eq!(
        call(app, "GET", "/console/no-such.js", None).await.0,
        StatusCode::NOT_FOUND
    );

    // Read-only callers (a user, an API token) read; changing anything is 403.
    let create = json!({"ksql": "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', partitions=1, value_format='JSON');"});
    let show = json!({"ksql": "SHOW STREAMS;"});
    let (bearer, expired) = (format!("Bearer {token}"), jwt(now - 600, &["admin"]));
    for reader in [
        basic("barney", "rubble"),
        bearer.clone(),
        jwt(now + 600, &["user"]),
    ] {
        let (status, body) = call_as(app, Some(&reader), "POST", "/ksql", Some(show.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) =
            call_as(app, Some(&reader), "POST", "/ksql", Some(create.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body.contains("40300") && body.contains("CreateStream"),
            "{body}"
        );
        let (status, _) = call_as(app, Some(&reader), "GET", "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = call_as(app, Some(&expired), "POST", "/ksql", Some(show)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let inserts = Some(json!({"target": "S"}));
    let (status, _) = call_as(app, Some(&bearer), "POST", "/inserts-stream", inserts).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Admins change things: a user with the admin role, a JWT with it.
    let (status, body) = call_as(
        app,
        Some(&basic("fred", "flintstone")),
        "POST",
        "/ksql",
        Some(create),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let drop = json!({"ksql": "DROP STREAM s;"});
    let (status, body) = call_as(
        app,
        Some(&jwt(now + 600, &["admin"])),
        "POST",
        "/ksql",
        Some(drop),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Peers' endpoints take the peers' secret, not users' credentials.
    let (status, _) = call_as(
        app,
        Some(&basic("fred", "flintstone")),
        "POST",
        "/internal/pull",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let request = Request::builder()
        .method("POST")
        .uri("/internal/pull")
        .header(
            eddy_server::access::PEER_HEADER,
            "peers-secret-of-thirty-two-characters",
        )
        .body(Body::from(r#"{"sql": "SELECT * FROM nothing;"}"#))
        .unwrap();
    let status = app.clone().oneshot(request).await.unwrap().status();
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "past authentication, to the query's error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_run_and_are_described() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = ksql(
        app,
        "CREATE STREAM cars (id STRING KEY, speed DOUBLE) WITH (kafka_topic='http_cars', value_format='JSON', partitions=2);",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["@type"], "currentStatus");
    assert_eq!(body[0]["commandStatus"]["status"], "SUCCESS");
    let (_, body) = ksql(app, "SHOW STREAMS;").await;
    let names: Vec<&str> = body[0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["CARS"]);
    let (_, body) = ksql(app, "DESCRIBE cars;").await;
    let fields: Vec<&str> = body[0]["sourceDescription"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["ID", "SPEED"]);
    // What each command did is kept: by its id (with or without ksqlDB's backquotes), and all.
    let (_, body) = ksql(
        app,
        "CREATE STREAM fast AS SELECT id, speed FROM cars WHERE speed > 100;",
    )
    .await;
    let query_id = body[0]["commandStatus"]["queryId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = call(app, "GET", "/status", None).await;
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        all["commandStatuses"]["stream/`CARS`/create"], "SUCCESS",
        "{all}"
    );
    assert_eq!(
        all["commandStatuses"]["stream/`FAST`/create"], "SUCCESS",
        "{all}"
    );
    for path in [
        "/status/stream/%60FAST%60/create",
        "/status/stream/FAST/create",
    ] {
        let (status, body) = call(app, "GET", path, None).await;
        let one: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(one["queryId"], query_id.as_str());
        assert_eq!(one["status"], "SUCCESS");
    }
    let (status, body) = call(app, "GET", "/status/stream/NOPE/create", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("40400"), "{body}");
    // Its consumer lag, per input partition.
    let (status, body) = call(app, "GET", "/lag", None).await;
    let lag: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lag["queries"][0]["queryId"], query_id.as_str(), "{lag}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_runs_whole_or_not_at_all() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = ksql(
        app,
        "CREATE STREAM a (id STRING KEY, v INT) WITH (kafka_topic='whole_a', value_format='JSON', partitions=1);
         CREATE STREAM b AS SELECT id, nope FROM a;
         CREATE STREAM c (id STRING KEY) WITH (kafka_topic='whole_c', value_format='JSON', partitions=1);",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["statementText"]
            .as_str()
            .unwrap()
            .starts_with("CREATE STREAM b"),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("NOPE"), "{body}");
    assert_eq!(body["entities"], json!([]), "{body}");
    let (_, body) = ksql(app, "SHOW STREAMS;").await;
    assert_eq!(body[0]["streams"], json!([]), "{body}");
    let cluster = server.cluster.clone();
    let topics = tokio::task::spawn_blocking(move || {
        ["whole_a", "whole_c"].map(|t| cluster.partitions(t).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(topics, [None, None]);
    // A script whose statements depend on each other validates in order, and then runs.
    let (status, body) = ksql(
        app,
        "CREATE STREAM a (id STRING KEY, v INT) WITH (kafka_topic='whole_a', value_format='JSON', partitions=1);
         CREATE STREAM b AS SELECT id, v * 2 AS w FROM a;
         INSERT INTO a (id, v) VALUES ('x', 1);
         DROP STREAM b;
         TERMINATE ALL;",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A query in a /ksql script is refused before anything runs.
    let (status, body) = ksql(
        app,
        "CREATE STREAM d (id STRING KEY) WITH (kafka_topic='whole_d', value_format='JSON', partitions=1); SELECT * FROM a;",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_code"], 40002, "{body}");
    let (_, body) = ksql(app, "DESCRIBE d;").await;
    assert!(
        body["message"].as_str().unwrap().contains("Could not find"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn variables_are_substituted_and_listed() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = call(
        app,
        "POST",
        "/ksql",
        Some(json!({
            "ksql": "DEFINE fmt = 'JSON';
                     CREATE STREAM ${name} (id STRING KEY, v INT) WITH (kafka_topic='${name}_t', value_format='${fmt}', partitions=1);
                     UNDEFINE fmt;
                     SHOW VARIABLES;",
            "sessionVariables": {"name": "cars"}
        })),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body[0]["statementText"],
        "CREATE STREAM cars (id STRING KEY, v INT) WITH (kafka_topic='cars_t', value_format='JSON', partitions=1);"
    );
    assert_eq!(body[1]["@type"], "variables");
    assert_eq!(
        body[1]["variables"],
        json!([{"name": "name", "value": "cars"}])
    );
    let (status, body) = ksql(app, "SELECT * FROM ${missing};").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Variable 'missing' is not defined"),
        "{body}"
    );
    // Queries take variables too.
    let (status, body) = call(
        app,
        "POST",
        "/query-stream",
        Some(json!({"sql": "SELECT * FROM ${s};", "sessionVariables": {"s": "CARS"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""columnNames":["ID","V"]"#), "{body}");
    // With substitution off, `${...}` is left to the parser.
    let (status, _) = call(
        app,
        "POST",
        "/ksql",
        Some(json!({
            "ksql": "DESCRIBE ${s};",
            "sessionVariables": {"s": "CARS"},
            "streamsProperties": {"ksql.variable.substitution.enable": false}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_describes_running_and_planned_queries() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = ksql(
        app,
        "CREATE STREAM cars (id STRING KEY, speed INT) WITH (kafka_topic='explain_cars', value_format='JSON', partitions=1);
         CREATE STREAM fast AS SELECT id, speed * 2 AS double_speed FROM cars WHERE speed > 100;",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body[1]["commandStatus"]["queryId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = ksql(app, &format!("EXPLAIN {id};")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = &body[0]["queryDescription"];
    assert_eq!(body[0]["@type"], "queryDescription");
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["sources"], json!(["CARS"]));
    assert_eq!(d["sinks"], json!(["FAST"]));
    assert_eq!(d["state"], "RUNNING", "{d}");
    let fields: Vec<&str> = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["ID", "DOUBLE_SPEED"]);
    let plan = d["executionPlan"].as_str().unwrap();
    assert!(plan.contains("FILTER SPEED > 100"), "{plan}");
    assert!(
        plan.contains("SOURCE STREAM CARS (topic explain_cars"),
        "{plan}"
    );
    assert!(
        d["topology"].as_str().unwrap().contains("Writes FAST"),
        "{d}"
    );
    // A statement is planned, not run.
    let (status, body) = ksql(
        app,
        "EXPLAIN CREATE TABLE per_car AS SELECT id, COUNT(*) AS n FROM cars WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY id;",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = &body[0]["queryDescription"];
    assert_eq!(d["windowType"], "TUMBLING", "{d}");
    assert_eq!(d["sinks"], json!(["PER_CAR"]));
    let plan = d["executionPlan"].as_str().unwrap();
    assert!(
        plan.contains("AGGREGATE COUNT(*) BY ID WINDOW TUMBLING 60000 ms"),
        "{plan}"
    );
    let (_, body) = ksql(app, "SHOW TABLES;").await;
    assert_eq!(body[0]["tables"], json!([]), "{body}");
    let (status, body) = ksql(
        app,
        "EXPLAIN SELECT id FROM cars WHERE speed < 5 EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["queryDescription"]["queryType"], "PUSH");
    let (status, body) = ksql(app, "EXPLAIN CSAS_NOPE_9;").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("does not exist"),
        "{body}"
    );
    let (_, body) = ksql(app, "SHOW QUERIES EXTENDED;").await;
    let d = &body[0]["queryDescriptions"][0];
    assert_eq!(d["id"], id.as_str(), "{body}");
    assert!(
        d["executionPlan"].as_str().unwrap().contains("PROJECT"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_ksqldb_error_bodies() {
    let server = start().await;
    let app = &server.app;
    let (status, body) = ksql(app, "CREATE STREM x (a INT) WITH (kafka_topic='x');").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["@type"], "statement_error");
    assert_eq!(body["error_code"], 40001);
    assert!(
        body["message"].as_str().unwrap().starts_with("line 1:8: "),
        "{body}"
    );
    let (status, body) = ksql(app, "SELECT * FROM nowhere EMIT CHANGES;").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_code"], 40002);
    for raw in ["not json", "{}", r#"{"ksql": 5}"#] {
        let request = Request::builder()
            .method("POST")
            .uri("/ksql")
            .body(Body::from(raw))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{raw}");
    }
    let (status, body) = call(
        app,
        "POST",
        "/query-stream",
        Some(json!({"sql": "SELECT * FROM nowhere EMIT CHANGES;"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("NOWHERE does not exist"), "{body}");
    let (status, body) = call(
        app,
        "POST",
        "/query",
        Some(json!({"ksql": "PRINT 'no_such_topic_here';"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("Could not find topic 'no_such_topic_here'"),
        "{body}"
    );
    let (status, _) = call(
        app,
        "POST",
        "/close-query",
        Some(json!({"queryId": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Sends raw bytes to `uri` (over HTTP/2 for `/inserts-stream`, which needs it) and returns the status.
async fn send_raw(app: &Router, uri: &str, body: Vec<u8>) -> (StatusCode, String) {
    let version = if uri == "/inserts-stream" {
        axum::http::Version::HTTP_2
    } else {
        axum::http::Version::HTTP_11
    };
    let request = Request::builder()
        .method("POST")
        .uri(uri)
        .version(version)
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// On the server's own runtime, whose threads have the stacks deep statements need.
#[test]
fn hostile_requests_get_4xx_and_the_server_keeps_working() {
    eddy_server::runtime::build()
        .unwrap()
        .block_on(hostile_requests());
}

async fn hostile_requests() {
    let server = start().await;
    let app = &server.app;
    let (status, _) = ksql(
        app,
        "CREATE STREAM h (id STRING KEY, v INT) WITH (kafka_topic='http_hostile', value_format='JSON', partitions=1);",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let nested = |depth: usize| format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
    let deep_select = format!("SELECT {} AS x FROM h EMIT CHANGES;", nested(100_000));
    let deep_struct = format!(
        "CREATE STREAM deep (a {}INT{}) WITH (kafka_topic='deep', value_format='JSON', partitions=1);",
        "STRUCT<b ".repeat(50_000),
        ">".repeat(50_000)
    );
    let many_props: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (format!("p{i}"), json!("x")))
        .collect();
    let endpoints = [
        ("/ksql", "ksql"),
        ("/query", "ksql"),
        ("/query-stream", "sql"),
        ("/close-query", "queryId"),
        ("/inserts-stream", "target"),
    ];
    for (uri, field) in endpoints {
        let mut bodies: Vec<(String, Vec<u8>)> = vec![
            ("20 MB".into(), vec![b'{'; 20 << 20]),
            ("not JSON".into(), b"\x00\xff not json".to_vec()),
            ("an array".into(), b"[1, 2]".to_vec()),
            (
                "a number".into(),
                json!({ field: 5 }).to_string().into_bytes(),
            ),
            ("nested JSON".into(), "[".repeat(200_000).into_bytes()),
        ];
        for sql in [
            deep_select.as_str(),
            deep_struct.as_str(),
            "CREATE STREAM \"a\u{0}b\" (v INT) WITH (kafka_topic='nul', value_format='JSON', partitions=1);",
            "SELECT * FROM \"h\u{0}\" EMIT CHANGES;",
        ] {
            bodies.push((
                format!("{uri} with {}...", &sql[..sql.len().min(30)]),
                json!({ field: sql }).to_string().into_bytes(),
            ));
        }
        bodies.push((
            "100,000 properties".into(),
            json!({ field: "SELECT * FROM h EMIT CHANGES LIMIT 1;", "streamsProperties": many_props, "properties": many_props })
                .to_string()
                .into_bytes(),
        ));
        for (what, body) in bodies {
            let (status, text) = send_raw(app, uri, body).await;
            assert!(
                status.is_client_error(),
                "{uri}, {what}: {status} {}",
                &text[..text.len().min(300)]
            );
        }
    }
    // Long operator chains nest one level per operator: up to the limit they plan, past it they are
    // refused.
    let chain = |n: usize| vec!["v"; n].join(" + ");
    let (status, body) = call(
        app,
        "POST",
        "/ksql",
        Some(json!({
            "ksql": format!("CREATE STREAM chained AS SELECT id, {} AS x FROM h;", chain(190)),
            "streamsProperties": {"auto.offset.reset": "earliest"}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = ksql(app, "INSERT INTO h (id, v) VALUES ('k', 2);").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = push_query(app, "SELECT * FROM chained EMIT CHANGES LIMIT 1;").await;
    assert_eq!(rows[1], json!(["k", 380]));
    for sql in [
        format!(
            "CREATE STREAM c2 AS SELECT id, {} AS x FROM h;",
            chain(20_000)
        ),
        format!(
            "CREATE STREAM c3 AS SELECT * FROM h WHERE {};",
            vec!["v = 1"; 20_000].join(" OR ")
        ),
    ] {
        let (status, body) = ksql(app, &sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("at most"),
            "{body}"
        );
    }
    // Push queries past the server's limit are refused with 429 until one ends.
    server
        .state
        .max_push_queries
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let open = |sql: &str| {
        Request::builder()
            .method("POST")
            .uri("/query-stream")
            .body(Body::from(json!({ "sql": sql }).to_string()))
            .unwrap()
    };
    let first = app
        .clone()
        .oneshot(open("SELECT * FROM h EMIT CHANGES;"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = app
        .clone()
        .oneshot(open("SELECT * FROM h EMIT CHANGES;"))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    drop((first, second));
    let rows = push_query(app, "SELECT * FROM chained EMIT CHANGES LIMIT 1;").await;
    assert_eq!(rows[1], json!(["k", 380]));
    // Still answering, and the stream still works.
    let (status, _) = ksql(app, "SHOW STREAMS;").await;
    assert_eq!(status, StatusCode::OK);
}

/// The chunks of the body of a pull query `sql` on `/query-stream`.
async fn pull_chunks(app: &Router, sql: &str) -> Vec<axum::body::Bytes> {
    let request = Request::builder()
        .method("POST")
        .uri("/query-stream")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"sql": sql, "properties": {}}).to_string(),
        ))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            chunks.push(data);
        }
    }
    chunks
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_query_streams_inserted_rows_until_its_limit() {
    let server = start().await;
    let app = &server.app;
    ksql(
        app,
        "CREATE STREAM pings (id STRING KEY, n INT) WITH (kafka_topic='http_pings', value_format='JSON', partitions=1);",
    )
    .await;
    let (status, body) = ksql(
        app,
        "INSERT INTO pings (id, n) VALUES ('a', 1); INSERT INTO pings (id, n) VALUES ('b', 2);",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A pull query over the stream: over HTTP/2 an empty chunk is an empty DATA frame, and clients
    // close a connection that sends many.
    let chunks = pull_chunks(app, "SELECT * FROM pings;").await;
    assert!(chunks.iter().all(|c| !c.is_empty()), "{chunks:?}");
    let text: String = chunks.iter().map(|c| String::from_utf8_lossy(c)).collect();
    assert!(text.ends_with("[\"a\",1]\n[\"b\",2]\n"), "{text}");
    let lines = push_query(
        app,
        "SELECT id, n * 10 AS tens FROM pings EMIT CHANGES LIMIT 2;",
    )
    .await;
    assert_eq!(lines[0]["columnNames"], json!(["ID", "TENS"]));
    assert_eq!(lines[0]["columnTypes"], json!(["STRING", "INTEGER"]));
    assert_eq!(&lines[1..], [json!(["a", 10]), json!(["b", 20])]);
    // Aggregating push queries keep their groups for as long as they run.
    let lines = push_query(
        app,
        "SELECT n > 1 AS big, COUNT(*) AS c FROM pings GROUP BY n > 1 EMIT CHANGES LIMIT 2;",
    )
    .await;
    assert_eq!(&lines[1..], [json!([false, 1]), json!([true, 1])]);
    // A persistent aggregation runs with its state in a changelog topic, and its table answers pull
    // queries once the rows are folded in.
    let (status, body) = call(
        app,
        "POST",
        "/ksql",
        Some(json!({
            "ksql": "CREATE TABLE counts AS SELECT id, COUNT(*) AS c, SUM(n) AS total FROM pings GROUP BY id;",
            "streamsProperties": {"auto.offset.reset": "earliest", "ksql.streams.commit.interval.ms": "100"},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("CTAS_COUNTS_0"), "{body}");
    let mut lines = Vec::new();
    for _ in 0..100 {
        let (status, body) = call(
            app,
            "POST",
            "/query-stream",
            Some(json!({"sql": "SELECT * FROM counts WHERE id IN ('a', 'b');"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        lines = body
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        if lines.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(lines[0]["columnNames"], json!(["ID", "C", "TOTAL"]));
    let mut rows = lines[1..].to_vec();
    rows.sort_by_key(|r| r[0].as_str().map(str::to_string));
    assert_eq!(rows, [json!(["a", 1, 1]), json!(["b", 1, 2])]);
    // The v1 format marks key columns in its schema.
    let (status, body) = call(
        app,
        "POST",
        "/query",
        Some(json!({"ksql": "SELECT id, total FROM counts WHERE id = 'b';"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("\"schema\":\"`ID` STRING KEY, `TOTAL` INTEGER\""),
        "{body}"
    );
    assert!(body.contains("{\"row\":{\"columns\":[\"b\",2]}}"), "{body}");
    let (status, body) = call(
        app,
        "POST",
        "/query-stream",
        Some(json!({"sql": "SELECT * FROM pings;"})),
    )
    .await;
    // A pull query over a stream reads its records so far.
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<Value> = body
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows, [json!(["a", 1]), json!(["b", 2])], "{body}");
}

/// Push queries of one topic from its latest records share one reader (one consumer): each gets the
/// rows its own query makes of every record written after it started, a client that leaves does not
/// disturb the others, and the reader goes with the last query.
#[tokio::test(flavor = "multi_thread")]
async fn push_queries_from_the_latest_records_share_one_reader() {
    let server = start().await;
    let app = &server.app;
    ksql(
        app,
        "CREATE STREAM fanout (id STRING KEY, n INT) WITH (kafka_topic='http_fanout', value_format='JSON', partitions=2);",
    )
    .await;
    let (status, body) = ksql(app, "INSERT INTO fanout (id, n) VALUES ('old', 9);").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = |sql: &str| {
        Request::post("/query-stream")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"sql": sql, "properties": {"auto.offset.reset": "latest"}}).to_string(),
            ))
            .unwrap()
    };
    let collect = |sql: &str| {
        let (app, request) = (app.clone(), request(sql));
        tokio::spawn(async move {
            let response = app.oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            text.lines()
                .skip(1)
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
    };
    let plain = collect("SELECT id, n FROM fanout EMIT CHANGES LIMIT 4;");
    let doubled = collect("SELECT id, n * 2 AS d FROM fanout WHERE n > 1 EMIT CHANGES LIMIT 3;");
    // A client that reads the header and leaves.
    let response = app
        .clone()
        .oneshot(request("SELECT * FROM fanout EMIT CHANGES;"))
        .await
        .unwrap();
    let mut leaving = response.into_body();
    let header = leaving.frame().await.unwrap().unwrap().into_data().unwrap();
    let header = String::from_utf8_lossy(&header);
    assert!(header.contains("queryId"), "{header}");
    let running = || server.state.push.lock().unwrap().len();
    for _ in 0..100 {
        if running() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running(), 3);
    assert_eq!(server.state.push_readers.readers(), 1);
    drop(leaving);
    let (status, body) = ksql(
        app,
        "INSERT INTO fanout (id, n) VALUES ('a', 1); INSERT INTO fanout (id, n) VALUES ('b', 2); INSERT INTO fanout (id, n) VALUES ('c', 3); INSERT INTO fanout (id, n) VALUES ('d', 4);",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sorted = |mut rows: Vec<Value>| {
        rows.sort_by_key(|r| r[0].as_str().map(str::to_string));
        rows
    };
    let plain = sorted(plain.await.unwrap());
    assert_eq!(
        plain,
        [
            json!(["a", 1]),
            json!(["b", 2]),
            json!(["c", 3]),
            json!(["d", 4])
        ]
    );
    let doubled = sorted(doubled.await.unwrap());
    assert_eq!(doubled, [json!(["b", 4]), json!(["c", 6]), json!(["d", 8])]);
    for _ in 0..100 {
        if server.state.push_readers.readers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.state.push_readers.readers(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_streamed_to_inserts_stream_are_acknowledged_and_land_in_the_stream() {
    let server = start().await;
    let app = &server.app;
    ksql(
        app,
        "CREATE STREAM cars (id STRING KEY, speed INT) WITH (kafka_topic='http_cars_in', value_format='JSON', partitions=1);",
    )
    .await;
    let body = "{\"target\": \"cars\"}\n{\"ID\": \"a\", \"speed\": 88}\n{\"id\": \"b\", \"SPEED\": \"fast\"}";
    let request = |version| {
        Request::builder()
            .method("POST")
            .uri("/inserts-stream")
            .version(version)
            .body(Body::from(body))
            .unwrap()
    };
    let response = app
        .clone()
        .oneshot(request(axum::http::Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = app
        .clone()
        .oneshot(request(axum::http::Version::HTTP_2))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let acks: Vec<Value> = String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(acks[0], json!({"status": "ok", "seq": 0}));
    assert_eq!(acks[1]["status"], "error");
    assert_eq!(acks[1]["seq"], 1);
    assert!(
        acks[1]["message"].as_str().unwrap().contains("SPEED"),
        "{acks:?}"
    );
    let lines = push_query(app, "SELECT * FROM cars EMIT CHANGES LIMIT 1;").await;
    assert_eq!(lines[1], json!(["a", 88]));
}

/// A temporary directory removed when dropped.
const AVRO: &str =
    r#"{"type":"record","name":"Reading","fields":[{"name":"TEMP","type":"double"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_api_registers_and_serves_schemas() {
    let server = start().await;
    let app = &server.app;
    let register = |body: Value| call(app, "POST", "/subjects/readings-value/versions", Some(body));
    let (status, body) = register(json!({"schema": AVRO})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].clone();
    assert!(id.as_u64().is_some(), "{body}");
    let (_, again) = register(json!({"schema": AVRO})).await;
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["id"],
        id,
        "same schema, same id"
    );

    let (status, body) = call(app, "GET", "/subjects/readings-value/versions/latest", None).await;
    assert_eq!(status, StatusCode::OK);
    let latest: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (latest["id"].clone(), latest["schema"].as_str()),
        (id.clone(), Some(AVRO))
    );
    assert_eq!(latest["subject"], "readings-value");
    assert!(latest.get("schemaType").is_none(), "AVRO has no schemaType");

    let (status, body) = call(app, "GET", &format!("/schemas/ids/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["schema"],
        AVRO
    );

    let (status, body) = call(app, "GET", "/subjects/nothing-value/versions/latest", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error_code"],
        40401
    );
    let (status, body) = call(app, "GET", "/schemas/ids/9999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error_code"],
        40403
    );
    let (status, body) = register(json!({"schema": "{\"type\":\"nope\"}"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error_code"],
        42201
    );
    let (status, _) =
        register(json!({"schema": "message M { int32 a = 1; }", "schemaType": "PROTOBUF"})).await;
    assert_eq!(status, StatusCode::OK, "PROTOBUF schemas register too");
}

#[tokio::test(flavor = "multi_thread")]
async fn registered_schemas_keep_their_ids_across_a_restart() {
    let server = start().await;
    let (status, body) = call(
        &server.app,
        "POST",
        "/subjects/kept-value/versions",
        Some(json!({"schema": AVRO})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap() as u32;
    let (cluster, service) = (server.cluster.clone(), server.state.service_id.clone());
    let restarted = tokio::task::spawn_blocking(move || {
        AppState::start(cluster, service, None, None, None, Default::default())
    })
    .await
    .unwrap()
    .expect("restart");
    let registry = restarted.engine().schema_registry().clone();
    assert_eq!(registry.by_id(id).expect("schema after restart").text, AVRO);
    restarted.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_registered_aliased_described_and_kept_across_a_restart() {
    use base64::Engine as _;
    let committed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../udfs/anomaly/models");
    let preload = committed.clone();
    let server = tokio::task::spawn_blocking(move || {
        server_with(|dir| QueryDefaults {
            models: Some(ModelDirs {
                catalog: dir.join("models"),
                preload: Some(preload),
            }),
            ..Default::default()
        })
    })
    .await
    .unwrap();
    let catalog = server._dir.path().join("models");
    // The committed models are preloaded with their versions.
    let (status, body) = call(&server.app, "GET", "/models", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "autoencoder",
            "autoencoder_30s",
            "gaussian",
            "gaussian_20s",
            "gaussian_30s"
        ]
    );
    assert_eq!(listed["models"][2]["features"], 14);
    // An upload with another threshold is version 2; the same upload again changes nothing.
    let folder = committed.join("gaussian/1");
    let mut card: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("card.json")).unwrap()).unwrap();
    card["threshold"] = json!(1000.0);
    let onnx = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(folder.join("model.onnx")).unwrap());
    let upload = json!({"card": card, "onnx": onnx});
    let (status, body) = call(
        &server.app,
        "POST",
        "/models/gaussian",
        Some(upload.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Registered version 2 of model 'gaussian'"),
        "{body}"
    );
    let (_, body) = call(&server.app, "POST", "/models/gaussian", Some(upload)).await;
    assert!(body.contains("as version 2 already"), "{body}");
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(catalog.join("gaussian/2/card.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (written["version"].clone(), written["threshold"].clone()),
        (json!(2), json!(1000.0))
    );
    // Bad uploads are the caller's mistakes.
    for (body, want) in [
        (json!({"card": card, "onnx": "%%%"}), "is not base64"),
        (
            json!({"card": {"threshold": 1}, "onnx": onnx}),
            "must list its input features",
        ),
        (json!({"card": card}), "missing field `onnx`"),
    ] {
        let (status, answer) = call(&server.app, "POST", "/models/gaussian", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer.contains(want), "{answer}");
    }
    // Aliases are written out for the plugin; what an alias points at cannot be dropped.
    let (status, body) = ksql(
        &server.app,
        "ALTER MODEL gaussian SET ALIAS Production = 2;",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        std::fs::read_to_string(catalog.join("gaussian/aliases.json")).unwrap(),
        r#"{"production":2}"#
    );
    let (status, body) = ksql(&server.app, "DROP MODEL gaussian VERSION 2;").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.to_string()
            .contains("aliases point at it (production → 2)"),
        "{body}"
    );
    let (status, body) = ksql(&server.app, "DESCRIBE MODEL gaussian;").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions: Vec<u64> = body[0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(body[0]["versions"][1]["threshold"], 1000.0);
    let (status, body) = call(&server.app, "GET", "/models/nosuch", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body.contains(
            "the models are: autoencoder, autoencoder_30s, gaussian, gaussian_20s, gaussian_30s"
        ),
        "{body}"
    );
    // Another server of the service id (a restart) gets the catalog from the command log.
    let (cluster, service) = (server.cluster.clone(), server.state.service_id.clone());
    let elsewhere = server._dir.path().join("elsewhere");
    let restarted = tokio::task::spawn_blocking({
        let elsewhere = elsewhere.clone();
        move || {
            let defaults = QueryDefaults {
                models: Some(ModelDirs {
                    catalog: elsewhere,
                    preload: None,
                }),
                ..Default::default()
            };
            AppState::start(cluster, service, None, None, None, defaults)
        }
    })
    .await
    .unwrap()
    .expect("restart");
    let gaussian = restarted
        .engine()
        .models()
        .get("gaussian")
        .cloned()
        .unwrap();
    assert_eq!(
        gaussian.versions.keys().copied().collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        gaussian.aliases.get("production"),
        Some(&eddy_sql::alias_route::AliasRoute::single(2))
    );
    assert_eq!(
        std::fs::read(elsewhere.join("gaussian/2/model.onnx")).unwrap(),
        std::fs::read(folder.join("model.onnx")).unwrap()
    );
    restarted.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_client_speaks_to_a_served_registry() {
    let server = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = server.app.clone();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let checked = tokio::task::spawn_blocking(move || {
        use eddy_runtime::registry::{RegisteredSchema, SchemaKind, SchemaRegistry};
        let client = HttpRegistry::new(&url);
        let schema = RegisteredSchema {
            kind: SchemaKind::Protobuf,
            text: "syntax = \"proto3\"; message M { int32 A = 1; }".into(),
        };
        let id = client.register("client-value", &schema).expect("register");
        assert_eq!(
            client.latest("client-value").unwrap(),
            Some((id, schema.clone()))
        );
        assert_eq!(client.by_id(id).unwrap(), schema);
        assert_eq!(client.latest("unknown-value").unwrap(), None);
        let missing = client.by_id(4242).unwrap_err().to_string();
        assert!(missing.contains("Schema 4242 not found"), "{missing}");
        let down = HttpRegistry::new("http://127.0.0.1:9")
            .by_id(1)
            .unwrap_err()
            .to_string();
        assert!(down.contains("cannot be reached"), "{down}");
    })
    .await;
    serving.abort();
    checked.expect("client checks");
}

mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(n: usize) -> Self {
            let path = std::env::temp_dir().join(format!("eddy-http-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One `DESCRIBE FUNCTION` variation as the docs' table writes it: `(name TYPE, ...) RETURN`.
fn signature_text(variation: &Value) -> String {
    let arguments: Vec<String> = variation["arguments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let variadic = if a["isVariadic"] == true { "..." } else { "" };
            format!(
                "{} {}{variadic}",
                a["name"].as_str().unwrap_or(""),
                a["type"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "({}) {}",
        arguments.join(", "),
        variation["returnType"].as_str().unwrap_or("")
    )
}

/// docs/functions.md's table is what `SHOW FUNCTIONS` and `DESCRIBE FUNCTION` say of the built-ins,
/// with the documented functions the server lacks marked "not yet"; on a difference the server's table
/// is written to `target/functions-table.md` to copy into the docs.
#[tokio::test(flavor = "multi_thread")]
async fn the_function_table_in_the_docs_is_what_the_server_lists() {
    let server = start().await;
    let app = &server.app;
    let (status, shown) = ksql(app, "SHOW FUNCTIONS;").await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let listed: Vec<(String, String, String)> = shown[0]["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["source"] == "built-in")
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["category"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(listed.len() > 100, "{listed:?}");
    let mut table = String::from(
        "| Function | Category | Type | Signatures | Status |\n|---|---|---|---|---|\n",
    );
    for doc in eddy_sql::functions::reference::reference() {
        let shown = listed.iter().find(|(name, ..)| name == doc.name);
        let (category, kind, signatures, status) = match shown {
            Some((_, category, kind)) => {
                let (status, described) =
                    ksql(app, &format!("DESCRIBE FUNCTION {};", doc.name)).await;
                assert_eq!(status, StatusCode::OK, "{described}");
                assert_eq!(described[0]["description"], doc.description);
                let signatures: Vec<String> = described[0]["functions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(signature_text)
                    .collect();
                (category.clone(), kind.clone(), signatures, "yes")
            }
            None => (
                doc.category.to_string(),
                doc.kind.to_string(),
                doc.overloads.iter().map(|o| o.signature()).collect(),
                "not yet",
            ),
        };
        let signatures: Vec<String> = signatures.iter().map(|s| format!("`{s}`")).collect();
        table.push_str(&format!(
            "| `{}` | {category} | {kind} | {} | {status} |\n",
            doc.name,
            signatures.join("<br>")
        ));
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let docs = std::fs::read_to_string(format!("{root}/docs/functions.md")).unwrap();
    let documented = docs
        .split_once("<!-- functions:begin -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- functions:end -->"))
        .map(|(table, _)| table)
        .unwrap_or("");
    if documented != table {
        let written = format!("{root}/target/functions-table.md");
        std::fs::write(&written, &table).unwrap();
        panic!(
            "docs/functions.md's table is not what the server lists; the server's is in {written}"
        );
    }
}
