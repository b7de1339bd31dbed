//! A load / invoke / release loop over the test plugins, for memcheck: `scripts/leak-check` runs it
//! under valgrind and fails on any definite or indirect leak. Each round creates the functions afresh
//! (instances and accumulators are created and destroyed), passes nested arrays both ways, and makes
//! calls fail (a panic, a malformed result) so error paths release what they hold too.
//!
//! Usage: leak_check <plugin-dir> <rounds>

use std::error::Error;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use eddy_udf_host::PluginDir;
use serde_json::json;

fn invoke(udf: &ScalarUDF, args: Vec<ArrayRef>) -> datafusion::common::Result<ArrayRef> {
    let rows = args[0].len();
    let fields: Vec<_> = args
        .iter()
        .map(|a| Arc::new(Field::new("a", a.data_type().clone(), true)))
        .collect();
    let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
    let return_type = udf.return_type(&types)?;
    udf.invoke_with_args(ScalarFunctionArgs {
        args: args.into_iter().map(ColumnarValue::Array).collect(),
        arg_fields: fields,
        number_rows: rows,
        return_field: Arc::new(Field::new("r", return_type, true)),
        config_options: Arc::new(ConfigOptions::default()),
    })?
    .into_array(rows)
}

fn arrays() -> Vec<ArrayRef> {
    let mut list = ListBuilder::new(StringBuilder::new());
    list.values().append_value("a");
    list.values().append_null();
    list.append(true);
    list.append(false);
    list.append(true);
    let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("yz")]));
    vec![
        Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
        strings.clone(),
        Arc::new(list.finish()),
        Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("A", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef,
            ),
            (
                Arc::new(Field::new(
                    "B",
                    DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
                    true,
                )),
                Arc::new(datafusion::arrow::array::ListArray::from_iter_primitive::<
                    datafusion::arrow::datatypes::Float64Type,
                    _,
                    _,
                >(vec![
                    Some(vec![Some(1.0)]),
                    None,
                    Some(vec![]),
                ])) as ArrayRef,
            ),
        ])),
    ]
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PluginDir::new(std::path::Path::new(
        args.get(1)
            .ok_or("usage: leak_check <plugin-dir> <rounds>")?,
    ))?;
    let rounds: usize = args.get(2).map_or(Ok(100), |r| r.parse())?;
    let report = dir.reload();
    if !report.errors.is_empty() {
        return Err(format!("{:?}", report.errors).into());
    }
    let find = |name: &str| {
        dir.plugins().into_iter().find_map(|p| {
            let f = p.functions().iter().find(|f| f.name == name)?.clone();
            Some((p, f))
        })
    };
    let (testing, echo) = find("ECHO").ok_or("no ECHO: is the testing plugin in the directory?")?;
    let (stats, mean) = find("STREAM_MEAN").ok_or("no STREAM_MEAN: is the stats plugin there?")?;
    let failing: Vec<_> = ["FRAGILE", "TOOLONG", "BADUTF8", "POSITIVE"]
        .iter()
        .map(|n| find(n).ok_or(format!("no {n}")))
        .collect::<Result<_, _>>()?;
    let values: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None, Some(4.0)]));
    let schema = Schema::new(vec![Field::new("v", DataType::Float64, true)]);
    let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("v", 0))];
    let expr_fields = vec![Arc::new(Field::new("v", DataType::Float64, true))];
    let mut checks = 0;
    for _ in 0..rounds {
        let udf = testing.scalar_udf(&echo, json!({}));
        for a in arrays() {
            let back = invoke(&udf, vec![a.clone()])?;
            assert_eq!(back.to_data(), a.to_data());
            checks += 1;
        }
        for (p, f) in &failing {
            let udf = p.scalar_udf(f, json!({}));
            let numbers: ArrayRef = Arc::new(Int64Array::from(vec![1, 13, -1]));
            // 13 panics FRAGILE, -1 fails POSITIVE; the others return malformed arrays.
            assert!(
                invoke(&udf, vec![numbers]).is_err(),
                "{} should fail",
                f.name
            );
        }
        let udaf = stats.aggregate_udf(&mean, json!({}));
        let accumulator_args = || AccumulatorArgs {
            return_field: Arc::new(Field::new("mean", DataType::Float64, true)),
            schema: &schema,
            ignore_nulls: false,
            order_bys: &[],
            is_reversed: false,
            name: "mean",
            is_distinct: false,
            exprs: &exprs,
            expr_fields: &expr_fields,
        };
        let mut a = udaf.accumulator(accumulator_args())?;
        let mut b = udaf.accumulator(accumulator_args())?;
        a.update_batch(std::slice::from_ref(&values))?;
        a.retract_batch(&[Arc::new(Float64Array::from(vec![4.0]))])?;
        let state: Vec<ArrayRef> = a
            .state()?
            .iter()
            .map(|s| s.to_array())
            .collect::<datafusion::common::Result<_>>()?;
        b.merge_batch(&state)?;
        assert_eq!(
            b.evaluate()?,
            datafusion::common::ScalarValue::Float64(Some(1.0))
        );
        checks += 1;
    }
    println!("{rounds} rounds, {checks} round trips checked");
    Ok(())
}
