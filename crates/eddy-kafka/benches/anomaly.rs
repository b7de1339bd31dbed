//! The cost of scoring every event: a CSAS over telemetry-shaped JSON events that computes
//! `IS_ANOMALY('autoencoder@1', <14 features>)` per event (the anomaly plugin, tract) next to the same
//! CSAS computing a plain comparison instead, and with the features passed as one STRUCT and as one
//! ARRAY, over in-memory records in batches of 4,096. Prints events per CPU-second of each, the cost per
//! event of the model and the process's resident memory. Then the hot swap: batches scored through
//! `@production` while the alias moves to another version, the slowest batch against the median.
//!
//!   scripts/build-plugins
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench anomaly -- [--events N]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use eddy_runtime::functions::PluginDir;
use eddy_runtime::{Engine, MemoryTopics, Outcome, Record};

mod allocator;
mod cpu;
mod flags;
mod telemetry;
use cpu::{cpu_seconds, resident_mb};
use flags::flag;
use telemetry::{FEATURES, readings};

fn event(i: u64) -> Vec<u8> {
    format!(
        r#"{{"ts":{},{}}}"#,
        1_767_225_600_000u64 + i * 1000,
        readings(i as usize)
    )
    .into_bytes()
}

/// An engine over in-memory topics whose plugins read models from `models`.
fn engine(plugins: &Arc<PluginDir>, models: &Path) -> Engine {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new())).with_volatile_state();
    engine.properties.insert(
        "ksql.functions._global_.model_dir".into(),
        models.display().to_string(),
    );
    engine.attach_plugins(plugins.clone());
    engine
}

/// Runs `sql` on the engine; the id of the query it creates, if any.
fn execute(engine: &mut Engine, sql: &str) -> Option<String> {
    let mut id = None;
    for s in eddy_sql::parse(sql).expect("parse") {
        if let Outcome::QueryCreated { query_id, .. } =
            engine.execute(&s, &Default::default()).expect("execute")
        {
            id = Some(query_id);
        }
    }
    id
}

/// `CREATE STREAM telemetry (...)` over the events' columns.
fn telemetry_stream() -> String {
    let columns: Vec<String> = FEATURES.iter().map(|f| format!("{f} DOUBLE")).collect();
    format!(
        "CREATE STREAM telemetry (car_id STRING KEY, ts BIGINT, {}) WITH (kafka_topic='telemetry', value_format='JSON', partitions=4);",
        columns.join(", ")
    )
}

/// Events per CPU-second of a CSAS selecting `column` over `records`.
fn run(plugins: &Arc<PluginDir>, models: &Path, column: &str, records: &[Record]) -> f64 {
    let mut engine = engine(plugins, models);
    execute(&mut engine, &telemetry_stream());
    let csas =
        format!("CREATE STREAM scored AS SELECT car_id, ts, {column} AS alert FROM telemetry;");
    let id = execute(&mut engine, &csas).expect("a query");
    let query = engine.query(&id).expect("query").clone();
    let (cpu0, wall) = (cpu_seconds(), Instant::now());
    let mut alerts = 0usize;
    for chunk in records.chunks(4096) {
        let processed = query.pipeline.process(chunk).expect("process");
        alerts += processed.batch.num_rows();
        query.sink_spec.records(&processed).expect("encode");
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "  {column:.60}: {} events in {:.2} s wall, {cpu:.2} CPU-s: {:.0} events per CPU-second ({alerts} rows)",
        records.len(),
        wall.elapsed().as_secs_f64(),
        records.len() as f64 / cpu
    );
    records.len() as f64 / cpu
}

/// Batches scored through `autoencoder@production` while the alias moves from version 1 to 2 (the
/// same graph, registered again): the slowest batch around the move against the median batch.
fn hot_swap(plugins: &Arc<PluginDir>, committed: &Path, records: &[Record]) {
    let dir = std::env::temp_dir().join(format!("eddy-bench-swap-{}", std::process::id()));
    let mut engine = engine(plugins, &dir)
        .with_model_dir(dir.clone())
        .expect("model dir");
    let folder = committed.join("autoencoder/1");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("card.json")).expect("card"))
            .expect("card");
    let onnx = std::fs::read(folder.join("model.onnx")).expect("graph");
    for version in [1, 2] {
        engine
            .register_model("autoencoder", Some(version), card.clone(), onnx.clone())
            .expect("register");
    }
    execute(
        &mut engine,
        "ALTER MODEL autoencoder SET ALIAS production = 1;",
    );
    execute(&mut engine, &telemetry_stream());
    let features = FEATURES.join(", ");
    let id = execute(
        &mut engine,
        &format!("CREATE STREAM scored AS SELECT car_id, ANOMALY('autoencoder@production', {features}) AS a FROM telemetry;"),
    )
    .expect("a query");
    let query = engine.query(&id).expect("query").clone();
    let chunks: Vec<&[Record]> = records.chunks(4096).take(400).collect();
    let mut times = Vec::with_capacity(chunks.len());
    let mut around_move = 0f64;
    for (i, chunk) in chunks.iter().enumerate() {
        if i == chunks.len() / 2 {
            execute(
                &mut engine,
                "ALTER MODEL autoencoder SET ALIAS production = 2;",
            );
        }
        let started = Instant::now();
        query.pipeline.process(chunk).expect("process");
        let seconds = started.elapsed().as_secs_f64();
        if i >= chunks.len() / 2 && i < chunks.len() / 2 + 3 {
            around_move = around_move.max(seconds);
        }
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "hot swap: the slowest of the 3 batches after the alias moved took {:.1} ms, the median batch of 4,096 events {:.1} ms",
        around_move * 1e3,
        times[times.len() / 2] * 1e3
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let events: u64 = flag("--events").unwrap_or(10_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let plugins = Arc::new(
        PluginDir::new(&root.join("target/plugins/dir"))
            .unwrap_or_else(|e| panic!("{e}: run scripts/build-plugins first")),
    );
    let report = plugins.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let models = root.join("udfs/anomaly/models");
    let records: Vec<Record> = (0..events)
        .map(|i| Record {
            key: Some(format!("car-{:04}", i % 1000).into_bytes()),
            value: Some(event(i)),
            timestamp: i as i64,
            partition: (i % 4) as i32,
            offset: i as i64,
            headers: Vec::new(),
        })
        .collect();
    println!(
        "CSAS over {events} telemetry events (14 DOUBLEs as JSON), in memory, batches of 4,096:"
    );
    let features = FEATURES.join(", ");
    let plain = run(&plugins, &models, "rpm > 3000", &records);
    let scored = run(
        &plugins,
        &models,
        &format!("IS_ANOMALY('autoencoder@1', {features})"),
        &records,
    );
    println!(
        "scoring costs {:.3} us per event ({:.0} vs {:.0} events per CPU-second)",
        (1.0 / scored - 1.0 / plain) * 1e6,
        scored,
        plain
    );
    let fields: Vec<String> = FEATURES.iter().map(|f| format!("{f} := {f}")).collect();
    let by_struct = run(
        &plugins,
        &models,
        &format!("IS_ANOMALY('autoencoder@1', STRUCT({}))", fields.join(", ")),
        &records,
    );
    let by_array = run(
        &plugins,
        &models,
        &format!("IS_ANOMALY('autoencoder@1', ARRAY[{features}])"),
        &records,
    );
    println!(
        "features as one STRUCT: {:.0} %, as one ARRAY: {:.0} % of the spelled-out columns' rate",
        by_struct / scored * 100.0,
        by_array / scored * 100.0
    );
    hot_swap(&plugins, &models, &records);
    println!(
        "resident memory with the model loaded: {:.0} MB",
        resident_mb()
    );
}
