//! `RELOAD FUNCTIONS` with a changed plugin: queries planned afterwards use the new version, the
//! query that was running keeps the one it was planned with. The two versions are built from a crate
//! the test writes (into `target/plugins`, where the example plugins' dependencies are already built).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use eddy_runtime::functions::PluginDir;
use eddy_runtime::{Engine, MemoryTopics, Outcome, Record};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds a plugin whose `PLUGIN_VERSION(x)` returns `x * 10 + version`, and returns a copy of it.
fn build_version(version: i64, out: &Path) -> PathBuf {
    let krate = out.join(format!("source-{version}"));
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let udf = workspace().join("crates/eddy-udf");
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"eddy-udf-versioned\"\nversion = \"0.{version}.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\neddy-udf = {{ path = {:?} }}\n\n[workspace]\n",
            udf.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        format!(
            "use eddy_udf::prelude::*;\n\n#[udf]\nfn plugin_version(x: i64) -> i64 {{\n    x * 10 + {version}\n}}\n\neddy_udf::plugin!(plugin_version);\n"
        ),
    )
    .unwrap();
    std::fs::copy(workspace().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = workspace().join("target/plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(&target)
        .current_dir(&krate)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building version {version} failed");
    let copy = out.join(format!("v{version}.so"));
    std::fs::copy(target.join("release/libeddy_udf_versioned.so"), &copy).unwrap();
    copy
}

fn run(engine: &mut Engine, sql: &str) -> Outcome {
    let stmt = eddy_sql::parse(sql).expect("parse").remove(0);
    engine.execute(&stmt, &Default::default()).expect("execute")
}

/// The query's output column R for one input record with V = 4.
fn result(engine: &Engine, query: &str) -> i64 {
    let record = Record {
        key: Some(b"1".to_vec()),
        value: Some(br#"{"v":4}"#.to_vec()),
        timestamp: 0,
        partition: 0,
        offset: 0,
        headers: Vec::new(),
    };
    let processed = engine
        .query(query)
        .expect("query")
        .pipeline
        .process(std::slice::from_ref(&record))
        .expect("process");
    let column = processed.batch.column_by_name("R").expect("column R");
    column.as_primitive::<Int64Type>().value(0)
}

fn query_id(outcome: Outcome) -> String {
    match outcome {
        Outcome::QueryCreated { query_id, .. } => query_id,
        other => panic!("expected a query, got {other:?}"),
    }
}

#[test]
fn queries_after_a_reload_use_the_new_version_and_running_ones_keep_theirs() {
    let scratch = tempfile::tempdir().unwrap();
    let v1 = build_version(1, scratch.path());
    let v2 = build_version(2, scratch.path());
    let plugins = scratch.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let installed = plugins.join("libversioned.so");
    std::fs::copy(&v1, &installed).unwrap();
    let dir = Arc::new(PluginDir::new(&plugins).unwrap());
    assert!(dir.reload().errors.is_empty());

    let mut engine = Engine::new(Arc::new(MemoryTopics::new())).with_volatile_state();
    let report = engine.attach_plugins(dir);
    assert!(report.errors.is_empty(), "{report:?}");
    run(
        &mut engine,
        "CREATE STREAM s (id STRING KEY, v BIGINT) WITH (kafka_topic='s', format='JSON', partitions=1);",
    );
    let first = query_id(run(
        &mut engine,
        "CREATE STREAM a AS SELECT id, PLUGIN_VERSION(v) AS r FROM s;",
    ));
    assert_eq!(result(&engine, &first), 41);

    // Nothing changed: nothing is loaded.
    let Outcome::FunctionsReloaded(same) = run(&mut engine, "RELOAD FUNCTIONS;") else {
        panic!("expected a reload");
    };
    assert!(same.loaded.is_empty(), "{same:?}");

    // The file is replaced by version 2.
    std::fs::copy(&v2, &installed).unwrap();
    let Outcome::FunctionsReloaded(changed) = run(&mut engine, "RELOAD FUNCTIONS;") else {
        panic!("expected a reload");
    };
    assert_eq!(changed.loaded.len(), 1, "{changed:?}");
    assert!(
        changed.loaded[0].contains("eddy-udf-versioned 0.2.0"),
        "{changed:?}"
    );
    let second = query_id(run(
        &mut engine,
        "CREATE STREAM b AS SELECT id, PLUGIN_VERSION(v) AS r FROM s;",
    ));
    assert_eq!(
        result(&engine, &second),
        42,
        "a query planned after the reload"
    );
    assert_eq!(result(&engine, &first), 41, "the query planned before it");
}

#[test]
fn reload_without_a_plugin_directory_says_how_to_get_one() {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
    let stmt = eddy_sql::parse("RELOAD FUNCTIONS;").unwrap().remove(0);
    let e = engine
        .execute(&stmt, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--plugin-dir"), "{e}");
}
