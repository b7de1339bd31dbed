//! The REST variant of ksqlDB's query-validation tests (RQTT), run as ksqlDB's REST runner runs
//! them: each case gets a fresh private broker (nisshi, topics in memory) and an Eddy server in
//! process, spoken to over real HTTP. The statements before the first `SELECT` go to `/ksql` as one
//! request, the inputs are produced, and once the persistent queries have processed them each
//! `SELECT` goes to `/query`; answers are compared with the case's `responses` or `expectedError`.

pub mod expect;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use eddy_common::{Error, Result, external_err};
use eddy_golden::Status;
use eddy_golden::qtt::{RestExpectations, TestCase};
use eddy_golden::runner::{encode_input, prepare_topics, source_for_topic, verify_outputs};
use eddy_kafka::KafkaCluster;
use eddy_runtime::partitioner::partition_for;
use eddy_runtime::{Record, TopicAdmin};
use eddy_server::local_broker::LocalBroker;
use eddy_server::routes;
use eddy_server::state::AppState;

/// How long one `/query` answer may take: push queries end at their LIMIT, and one that never gets
/// there is cut off and reported with the rows it had.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long persistent queries may take to process the inputs.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs REST cases; holds the runtime the servers run on.
pub struct RestRunner {
    runtime: tokio::runtime::Runtime,
    client: reqwest::blocking::Client,
    scratch: PathBuf,
}

impl RestRunner {
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| external_err!("cannot start the runtime: {e}"))?;
        let client = reqwest::blocking::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .build()
            .map_err(|e| external_err!("cannot create an HTTP client: {e}"))?;
        let scratch = std::env::temp_dir().join(format!("eddy-rqtt-{}", std::process::id()));
        Ok(RestRunner {
            runtime,
            client,
            scratch,
        })
    }

    /// Runs one REST case against a fresh server and broker.
    pub fn run(&self, case: &TestCase) -> Status {
        let Some(rest) = &case.rest else {
            return Status::Error("not a REST case".into());
        };
        let server = match Server::start(&self.runtime, &self.scratch) {
            Ok(s) => s,
            Err(e) => return Status::Error(format!("cannot start a server: {e}")),
        };
        Case {
            case,
            rest,
            server: &server,
            client: &self.client,
        }
        .run()
    }
}

impl Drop for RestRunner {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A broker, and a server over it listening on a loopback port.
struct Server {
    state: Arc<AppState>,
    url: String,
    serving: tokio::task::JoinHandle<()>,
    // Dropped last: the broker outlives the server's clients.
    _broker: LocalBroker,
}

impl Server {
    fn start(runtime: &tokio::runtime::Runtime, scratch: &std::path::Path) -> Result<Self> {
        let broker = LocalBroker::start_in_memory(scratch)?;
        let cluster = Arc::new(KafkaCluster::connect(broker.bootstrap())?);
        cluster.wait_ready(Duration::from_secs(10))?;
        let state = AppState::start(
            cluster,
            "rqtt".to_string(),
            Some(broker.bootstrap().to_string()),
            None,
            None,
            Default::default(),
        )?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| external_err!("cannot listen: {e}"))?;
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| external_err!("cannot listen: {e}"))?
        );
        let app = routes::app(state.clone());
        let serving = runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Server {
            state,
            url,
            serving,
            _broker: broker,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
        self.state.shutdown();
    }
}

/// An answer: HTTP status and the parsed body (or the text, when the body is not JSON).
struct Answer {
    status: u16,
    body: Value,
    /// Why the body ended early (a timeout), if it did.
    cut: Option<String>,
}

struct Case<'a> {
    case: &'a TestCase,
    rest: &'a RestExpectations,
    server: &'a Server,
    client: &'a reqwest::blocking::Client,
}

impl Case<'_> {
    fn run(&self) -> Status {
        let cluster = self.server.state.cluster.clone();
        let registry = self.server.state.engine().schema_registry().clone();
        if let Err(e) = prepare_topics(self.case, cluster.as_ref(), registry.as_ref()) {
            return Status::Error(e.to_string());
        }
        let first_select = self
            .case
            .statements
            .iter()
            .position(|s| s.trim_start().to_uppercase().starts_with("SELECT "))
            .unwrap_or(self.case.statements.len());
        let (admin, selects) = self.case.statements.split_at(first_select);
        let mut responses = self.rest.responses.iter();
        if !admin.is_empty() {
            let answer = match self.post("/ksql", &admin.join("\n")) {
                Ok(a) => a,
                Err(e) => return Status::Error(e.to_string()),
            };
            if answer.status != 200 {
                return self.failed(&answer);
            }
            let entities = answer.body.as_array().cloned().unwrap_or_default();
            for (i, entity) in entities.iter().enumerate() {
                let Some(expected) = responses.next() else {
                    break;
                };
                let Some(want) = expected.get("admin") else {
                    return Status::Fail(format!(
                        "response {i}: the statement gave an entity, but {expected} was expected"
                    ));
                };
                if let Some(d) = expect::partial(want, entity, &format!("response {i}")) {
                    return Status::Fail(d);
                }
            }
        }
        if let Err(e) = self.produce_inputs() {
            return Status::Error(e.to_string());
        }
        if let Err(e) = self.wait_for_queries() {
            return Status::Error(e.to_string());
        }
        for select in selects {
            let answer = match self.post("/query", select) {
                Ok(a) => a,
                Err(e) => return Status::Error(e.to_string()),
            };
            if answer.status != 200 {
                return self.failed(&answer);
            }
            let Some(expected) = responses.next() else {
                continue;
            };
            let Some(want) = expected.get("query").and_then(Value::as_array) else {
                return Status::Fail(format!(
                    "{select}: a query response came, but {expected} was expected"
                ));
            };
            let have = answer.body.as_array().cloned().unwrap_or_default();
            if let Some(d) = expect::query_response(want, &have) {
                let cut = answer.cut.map(|c| format!(" ({c})")).unwrap_or_default();
                return Status::Fail(format!("{select}: {d}{cut}"));
            }
        }
        if let Some(e) = &self.rest.expected_error {
            return Status::Fail(format!(
                "expected an error ({e}) but every request succeeded"
            ));
        }
        let state = &self.server.state;
        let sink = |topic: &str| source_for_topic(&state.engine(), topic);
        let mut read = |topic: &str| cluster.read_records(topic, PROCESS_TIMEOUT);
        match verify_outputs(self.case, &sink, &mut read, &registry) {
            Some(d) => Status::Fail(d),
            None => Status::Pass,
        }
    }

    /// A request that the server refused: a pass when that is the expected error.
    fn failed(&self, answer: &Answer) -> Status {
        match &self.rest.expected_error {
            Some(e) => match expect::error(e, answer.status, &answer.body) {
                None => Status::Pass,
                Some(d) => Status::Fail(d),
            },
            None => Status::Error(format!(
                "HTTP {}: {}",
                answer.status,
                answer
                    .body
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| answer.body.to_string(), str::to_string)
            )),
        }
    }

    /// The case's properties, with the REST runner's defaults: queries read from the start of their
    /// topics and emit every change.
    fn properties(&self) -> Map<String, Value> {
        let mut props = Map::new();
        props.insert("ksql.streams.auto.offset.reset".into(), "earliest".into());
        props.insert(
            "ksql.streams.cache.max.bytes.buffering".into(),
            Value::from(0),
        );
        props.extend(self.case.properties.clone());
        props
    }

    fn post(&self, path: &str, sql: &str) -> Result<Answer> {
        let body = json!({"ksql": sql, "streamsProperties": self.properties()});
        let mut response = self
            .client
            .post(format!("{}{path}", self.server.url))
            .json(&body)
            .send()
            .map_err(|e| external_err!("POST {path}: {e}"))?;
        let status = response.status().as_u16();
        let mut text = Vec::new();
        let mut chunk = [0u8; 8192];
        let mut cut = None;
        loop {
            match response.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    cut = Some(format!("the response was cut off: {e}"));
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let body = parse_body(&text);
        Ok(Answer { status, body, cut })
    }

    /// Produces the inputs in the formats of the source over each topic, to the partition Kafka's
    /// default partitioner picks for the key.
    fn produce_inputs(&self) -> Result<()> {
        let state = &self.server.state;
        let mut partitions: HashMap<String, i32> = HashMap::new();
        let registry = state.engine().schema_registry().clone();
        for input in &self.case.inputs {
            let source = source_for_topic(&state.engine(), &input.topic);
            let mut record = match &source {
                Some(s) => encode_input(s, input, &registry)?,
                None => Record {
                    key: json_bytes(&input.key),
                    value: json_bytes(&input.value),
                    timestamp: input.timestamp.unwrap_or(0),
                    partition: 0,
                    offset: 0,
                    headers: Vec::new(),
                },
            };
            let partitions = match partitions.get(&input.topic) {
                Some(n) => *n,
                None => {
                    let n = state.cluster.partitions(&input.topic)?.unwrap_or(1);
                    partitions.insert(input.topic.clone(), n);
                    n
                }
            };
            record.partition = record
                .key
                .as_deref()
                .map_or(0, |k| partition_for(k, partitions));
            state.cluster.produce_and_wait(&input.topic, &[record])?;
        }
        Ok(())
    }

    /// Waits until every persistent query has processed everything in its source topics, and that
    /// stays so for a moment (so outputs feeding other queries are in too).
    fn wait_for_queries(&self) -> Result<()> {
        let state = &self.server.state;
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let mut settled = 0;
        while settled < 3 {
            let views = state.query_views();
            let mut behind = None;
            for v in &views {
                let topics: Vec<String> = {
                    let engine = state.engine();
                    v.sources
                        .iter()
                        .filter_map(|s| engine.catalog().get(s).map(|s| s.topic.clone()))
                        .collect()
                };
                let mut end = 0;
                for t in &topics {
                    end += state.cluster.end_offsets(t)?.iter().sum::<i64>();
                }
                if (v.consumed as i64) < end && v.state == "RUNNING" {
                    behind = Some(format!(
                        "{} processed {} of {end} records",
                        v.id, v.consumed
                    ));
                }
            }
            settled = if behind.is_some() { 0 } else { settled + 1 };
            if let Some(b) = behind
                && Instant::now() > deadline
            {
                return Err(Error::Execution(format!(
                    "the persistent queries did not process their inputs in time: {b}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Parses a response body: one JSON document, or (for streamed answers) JSON values one per line.
fn parse_body(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return v;
    }
    // A streamed array cut short: close it and read what arrived.
    let trimmed = text.trim_end().trim_end_matches(',');
    if let Ok(v) = serde_json::from_str::<Value>(&format!("{trimmed}]")) {
        return v;
    }
    Value::String(text.to_string())
}

fn json_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}
