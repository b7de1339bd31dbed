//! The cost of the plugin boundary: `HAVERSINE_KM` from the geo example plugin against the same
//! function written as a native DataFusion UDF, over 10 M rows in batches of 4,096 (a query task's
//! batch). Prints rows per second for each and the plugin's overhead.
//!
//! Run `scripts/build-plugins` first, then `cargo bench -p eddy-udf-host --bench plugin_overhead`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use eddy_udf_host::PluginDir;
use serde_json::json;

const ROWS: usize = 10_000_000;
const BATCH: usize = 4096;

/// The geo plugin's function, written natively: the same formula and the same NULL handling.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NativeHaversine {
    signature: Signature,
}

fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

impl ScalarUDFImpl for NativeHaversine {
    fn name(&self) -> &str {
        "native_haversine_km"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let c: Vec<&Float64Array> = arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let mut out = Float64Builder::with_capacity(rows);
        for i in 0..rows {
            if c.iter().any(|a| a.is_null(i)) {
                out.append_null();
            } else {
                out.append_value(haversine_km(
                    c[0].value(i),
                    c[1].value(i),
                    c[2].value(i),
                    c[3].value(i),
                ));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn batches() -> Vec<Vec<ArrayRef>> {
    (0..ROWS / BATCH)
        .map(|b| {
            let column = |k: f64| -> ArrayRef {
                Arc::new(Float64Array::from_iter_values(
                    (0..BATCH).map(|i| ((b * BATCH + i) as f64 * k) % 90.0),
                ))
            };
            vec![column(0.37), column(1.13), column(0.71), column(2.9)]
        })
        .collect()
}

/// Seconds to run `udf` over every batch (the best of three runs).
fn time(udf: &ScalarUDF, batches: &[Vec<ArrayRef>]) -> Duration {
    let fields: Vec<_> = (0..4)
        .map(|_| Arc::new(Field::new("a", DataType::Float64, true)))
        .collect();
    let options = Arc::new(ConfigOptions::default());
    (0..3)
        .map(|_| {
            let started = Instant::now();
            for batch in batches {
                let out = udf
                    .invoke_with_args(ScalarFunctionArgs {
                        args: batch.iter().cloned().map(ColumnarValue::Array).collect(),
                        arg_fields: fields.clone(),
                        number_rows: BATCH,
                        return_field: Arc::new(Field::new("r", DataType::Float64, true)),
                        config_options: options.clone(),
                    })
                    .expect("the function runs");
                black_box(out);
            }
            started.elapsed()
        })
        .min()
        .expect("three runs")
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins/dir");
    let plugins =
        PluginDir::new(&dir).unwrap_or_else(|e| panic!("{e}: run scripts/build-plugins first"));
    let report = plugins.reload();
    let (plugin, function) = report
        .loaded
        .iter()
        .find_map(|p| {
            let f = p
                .functions()
                .iter()
                .find(|f| f.name == "HAVERSINE_KM")?
                .clone();
            Some((p.clone(), f))
        })
        .expect("the geo plugin (scripts/build-plugins) in target/plugins/dir");
    let plugin_udf = plugin.scalar_udf(&function, json!({}));
    let native_udf = ScalarUDF::new_from_impl(NativeHaversine {
        signature: Signature::any(4, Volatility::Immutable),
    });
    let batches = batches();
    // Both give the same results.
    let first = |udf: &ScalarUDF| {
        udf.invoke_with_args(ScalarFunctionArgs {
            args: batches[1]
                .iter()
                .cloned()
                .map(ColumnarValue::Array)
                .collect(),
            arg_fields: (0..4)
                .map(|_| Arc::new(Field::new("a", DataType::Float64, true)))
                .collect(),
            number_rows: BATCH,
            return_field: Arc::new(Field::new("r", DataType::Float64, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })
        .and_then(|v| v.into_array(BATCH))
        .expect("runs")
    };
    assert_eq!(first(&plugin_udf).to_data(), first(&native_udf).to_data());
    let native = time(&native_udf, &batches);
    let plugin = time(&plugin_udf, &batches);
    let rate = |d: Duration| ROWS as f64 / d.as_secs_f64() / 1e6;
    println!(
        "HAVERSINE_KM over {ROWS} rows in batches of {BATCH}: native DataFusion UDF {:.1} M rows/s ({:.0} ms), plugin {:.1} M rows/s ({:.0} ms): plugin overhead {:+.1} %",
        rate(native),
        native.as_secs_f64() * 1e3,
        rate(plugin),
        plugin.as_secs_f64() * 1e3,
        (plugin.as_secs_f64() / native.as_secs_f64() - 1.0) * 100.0
    );
}
