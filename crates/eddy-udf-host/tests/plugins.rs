//! The plugin boundary with real shared libraries: the test plugins are built with cargo (into
//! `target/plugins`, a target directory of their own so the build does not wait for this test's), loaded
//! from a plugin directory, and called through the DataFusion adapters.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array,
    Int32Array, Int64Array, Int64Builder, ListArray, MapBuilder, StringArray, StringBuilder,
    StructArray, Time32MillisecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use eddy_udf_host::{Plugin, PluginDir};
use serde_json::json;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds a plugin crate (release) and returns its library.
fn build(package: &str) -> PathBuf {
    let target = workspace().join("target/plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {package} failed");
    target
        .join("release")
        .join(format!("lib{}.so", package.replace('-', "_")))
}

/// A fresh plugin directory holding copies of the given libraries.
fn plugin_dir(libraries: &[&Path]) -> (tempfile::TempDir, PluginDir) {
    let dir = tempfile::tempdir().unwrap();
    for lib in libraries {
        std::fs::copy(lib, dir.path().join(lib.file_name().unwrap())).unwrap();
    }
    let plugins = PluginDir::new(dir.path()).unwrap();
    (dir, plugins)
}

/// The testing plugin, loaded once.
fn testing() -> &'static Arc<Plugin> {
    static PLUGIN: OnceLock<(tempfile::TempDir, Arc<Plugin>)> = OnceLock::new();
    &PLUGIN
        .get_or_init(|| {
            let (dir, plugins) = plugin_dir(&[&build("eddy-udf-testing")]);
            let report = plugins.reload();
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            (dir, report.loaded[0].clone())
        })
        .1
}

fn udf(name: &str, config: serde_json::Value) -> ScalarUDF {
    let plugin = testing();
    let f = plugin
        .functions()
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no function {name}"));
    plugin.scalar_udf(f, config)
}

fn call(udf: &ScalarUDF, args: Vec<ArrayRef>) -> datafusion::common::Result<ArrayRef> {
    let rows = args[0].len();
    let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
    let return_type = udf.return_type(&types)?;
    let result = udf.invoke_with_args(ScalarFunctionArgs {
        arg_fields: types
            .iter()
            .map(|t| Arc::new(Field::new("a", t.clone(), true)))
            .collect(),
        args: args.into_iter().map(ColumnarValue::Array).collect(),
        number_rows: rows,
        return_field: Arc::new(Field::new("r", return_type, true)),
        config_options: Arc::new(ConfigOptions::default()),
    })?;
    result.into_array(rows)
}

/// ARRAY<STRING> values.
struct StringArrayList;

impl StringArrayList {
    fn strings() -> datafusion::arrow::array::ArrayData {
        let mut b = datafusion::arrow::array::ListBuilder::new(StringBuilder::new());
        b.values().append_value("a");
        b.values().append_null();
        b.append(true);
        b.append(false);
        b.append(true);
        b.finish().to_data()
    }
}

/// An array of every SQL type's Arrow type, with NULLs.
fn every_type() -> Vec<ArrayRef> {
    let list = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
        Some(vec![Some(1.5), None]),
        None,
        Some(vec![]),
    ]);
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    map.keys().append_value("a");
    map.values().append_value(1);
    map.append(true).unwrap();
    map.append(false).unwrap();
    map.keys().append_value("b");
    map.values().append_null();
    map.append(true).unwrap();
    let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("")]));
    let structs = StructArray::from(vec![
        (
            Arc::new(Field::new("A", DataType::Int32, true)),
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("B", list.data_type().clone(), true)),
            Arc::new(list) as ArrayRef,
        ),
    ]);
    vec![
        Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(7)])),
        Arc::new(Int64Array::from(vec![Some(i64::MAX), None, Some(-1)])),
        Arc::new(Float64Array::from(vec![Some(f64::NAN), None, Some(0.25)])),
        Arc::new(
            Decimal128Array::from(vec![Some(12345), None, Some(-1)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
        strings,
        Arc::new(BinaryArray::from(vec![
            Some(&b"\x00\xff"[..]),
            None,
            Some(b""),
        ])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_700_000_000_000),
            None,
            Some(0),
        ])),
        Arc::new(Date32Array::from(vec![Some(19_000), None, Some(-1)])),
        Arc::new(Time32MillisecondArray::from(vec![
            Some(86_399_999),
            None,
            Some(0),
        ])),
        Arc::new(ListArray::from(StringArrayList::strings())),
        Arc::new(map.finish()),
        Arc::new(structs),
    ]
}

#[test]
fn every_type_round_trips_through_the_boundary() {
    let echo = udf("ECHO", json!({}));
    for array in every_type() {
        let back = call(&echo, vec![array.clone()])
            .unwrap_or_else(|e| panic!("{}: {e}", array.data_type()));
        assert_eq!(back.to_data(), array.to_data(), "{}", array.data_type());
        // A slice (an offset into the buffers) crosses too.
        let slice = array.slice(1, 2);
        let back = call(&echo, vec![slice.clone()]).unwrap();
        assert_eq!(
            back.to_data(),
            slice.to_data(),
            "{} sliced",
            array.data_type()
        );
    }
}

#[test]
fn arguments_are_converted_to_the_overload() {
    let echo = udf("ECHO", json!({}));
    let ints: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
    // INT has its own overload; a NULL picks the first that takes it.
    assert_eq!(
        call(&echo, vec![ints.clone()]).unwrap().data_type(),
        &DataType::Int32
    );
    let e = call(
        &echo,
        vec![Arc::new(ListArray::new_null(
            Arc::new(Field::new("item", DataType::Int32, true)),
            1,
        ))],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Function 'ECHO' does not accept parameters (ARRAY<INTEGER>)"),
        "{e}"
    );
    assert!(e.contains("ECHO(BIGINT arg0)"), "{e}");
}

#[test]
fn a_panic_fails_the_call_and_the_next_call_works() {
    let fragile = udf("FRAGILE", json!({}));
    let e = call(&fragile, vec![Arc::new(Int64Array::from(vec![1, 13, 2]))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("FRAGILE: the function panicked: unlucky thirteen"),
        "{e}"
    );
    let ok = call(
        &fragile,
        vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(2)]))],
    )
    .unwrap();
    assert_eq!(
        ok.as_any().downcast_ref::<Int64Array>().unwrap(),
        &Int64Array::from(vec![Some(1), None, Some(2)])
    );
}

#[test]
fn errors_and_malformed_results_are_errors() {
    let one: ArrayRef = Arc::new(Int64Array::from(vec![1, -2, 3]));
    let e = call(&udf("POSITIVE", json!({})), vec![one.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("POSITIVE: -2 is negative"), "{e}");
    let e = call(&udf("TOOLONG", json!({})), vec![one.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("returned 4 rows for 3"), "{e}");
    let e = call(&udf("WRONGTYPE", json!({})), vec![one.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("values of type Utf8 where its manifest promises Int64"),
        "{e}"
    );
    let e = call(&udf("BADUTF8", json!({})), vec![one])
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid array"), "{e}");
}

#[test]
fn instances_get_their_configuration() {
    let names: ArrayRef = Arc::new(StringArray::from(vec!["ada"]));
    let default = call(&udf("GREETING", json!({})), vec![names.clone()]).unwrap();
    let configured = call(&udf("GREETING", json!({"word": "hi"})), vec![names]).unwrap();
    let text = |a: &ArrayRef| {
        a.as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string()
    };
    assert_eq!(text(&default), "hello ada");
    assert_eq!(text(&configured), "hi ada");
}

#[test]
fn a_plugin_of_another_abi_version_is_refused_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("v2.c");
    std::fs::write(
        &source,
        "unsigned int eddy_udf_abi_version(void) { return 2; }\n",
    )
    .unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(plugins.join("libv2.so"))
        .arg(&source)
        .status()
        .expect("a C compiler");
    assert!(status.success());
    std::fs::copy(build("eddy-udf-testing"), plugins.join("libtesting.so")).unwrap();
    std::os::unix::fs::symlink(&source, plugins.join("outside.so")).unwrap();
    let report = PluginDir::new(&plugins).unwrap().reload();
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    let v2 = &report
        .errors
        .iter()
        .find(|(p, _)| p.ends_with("libv2.so"))
        .unwrap()
        .1;
    assert!(
        v2.contains("UDF ABI version 2, this server speaks version 1"),
        "{v2}"
    );
    let outside = &report
        .errors
        .iter()
        .find(|(p, _)| p.ends_with("outside.so"))
        .unwrap()
        .1;
    assert!(
        outside.contains("outside the plugin directory"),
        "{outside}"
    );
}

#[test]
fn a_changed_file_loads_as_a_new_version_and_an_unchanged_one_is_skipped() {
    let testing = build("eddy-udf-testing");
    let examples = build("eddy-udf-ksql-test");
    let (dir, plugins) = plugin_dir(&[&testing]);
    let first = plugins.reload();
    assert_eq!(first.loaded.len(), 1);
    let again = plugins.reload();
    assert!(again.loaded.is_empty());
    assert_eq!(again.unchanged, 1);
    // Replace the file's contents with another library: a new version.
    std::fs::copy(&examples, dir.path().join("libeddy_udf_testing.so")).unwrap();
    let changed = plugins.reload();
    assert_eq!(changed.loaded.len(), 1);
    assert_ne!(changed.loaded[0].sha256, first.loaded[0].sha256);
    assert!(
        changed.loaded[0]
            .functions()
            .iter()
            .any(|f| f.name == "TEST_UDAF")
    );
    // The first version is still loaded and callable.
    assert!(first.loaded[0].functions().iter().any(|f| f.name == "ECHO"));
}

/// The cache the copies are loaded from is private to the server's user, and a copy found there is
/// loaded only if it still hashes to its name: a file someone put under the expected name is
/// replaced, not loaded.
#[test]
fn a_planted_copy_in_the_cache_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _) = plugin_dir(&[&build("eddy-udf-testing")]);
    let cache = dir.path().join("cache");
    let library = std::fs::read(dir.path().join("libeddy_udf_testing.so")).unwrap();
    let sha256: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&library)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let planted = cache.join(format!("{sha256}.so"));
    std::fs::write(&planted, b"not the library that hashes to this name").unwrap();
    let plugins = PluginDir::with_cache(dir.path(), &cache).unwrap();
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache is private: {mode:o}");
    let report = plugins.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(std::fs::read(&planted).unwrap(), library);
}
