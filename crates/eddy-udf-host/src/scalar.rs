//! Scalar and table functions of plugins as DataFusion `ScalarUDFImpl`s. Arguments are converted to
//! the chosen overload's types and passed as one batch; the result is checked (length, type) before
//! anyone reads it. A table function's result is a list per row, which the planner unnests. When a
//! call is planned, an instance is created with the call's literal arguments and dropped, so what the
//! plugin refuses (an unknown model, the wrong number of features) is a planning error.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, plan_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use eddy_sql::types::SqlType;
use eddy_udf::Kind;
use serde_json::Value;

use crate::api::{CallError, export};
use crate::instance::Pool;
use crate::plugin::{Function, Plugin};
use crate::signature::{Overload, Resolved, resolve};

#[derive(Debug)]
pub struct PluginScalar {
    name: String,
    plugin: Arc<Plugin>,
    function: Function,
    signature: Signature,
    pools: Vec<Pool>,
    /// Calls the plugin accepted when they were planned (overload and literal arguments).
    checked: Mutex<HashSet<String>>,
}

impl Plugin {
    /// A scalar function of this plugin as a DataFusion UDF; `config` is what its instances are
    /// created with.
    pub fn scalar_udf(self: &Arc<Self>, function: &Function, config: Value) -> ScalarUDF {
        ScalarUDF::new_from_impl(PluginScalar::new(self.clone(), function.clone(), config))
    }
}

impl PluginScalar {
    pub fn new(plugin: Arc<Plugin>, function: Function, config: Value) -> Self {
        let pools = function
            .overloads
            .iter()
            .map(|o| Pool::new(plugin.clone(), o.index, &config))
            .collect();
        PluginScalar {
            name: function.name.to_lowercase(),
            signature: signature(&function),
            plugin,
            function,
            pools,
            checked: Mutex::new(HashSet::new()),
        }
    }

    /// The overload the argument fields fit.
    fn overload_for(&self, fields: &[FieldRef]) -> Result<Resolved> {
        let types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
        resolve(&self.name, &self.function.overloads, &types)
            .map_err(|e| plan_datafusion_err!("{e}"))
    }

    /// Creates (and drops) an instance with the call's literal arguments, one single-row array per
    /// argument (NULL where the argument is not a literal): the plugin's refusal is a planning error.
    /// Accepted calls are remembered; refused ones are asked again (a model may appear meanwhile).
    fn check_call(&self, r: &Resolved, literals: &[Option<&ScalarValue>]) -> Result<()> {
        let key = format!("{}:{literals:?}", r.overload);
        if self.checked.lock().expect("checked lock").contains(&key) {
            return Ok(());
        }
        let constants = literals
            .iter()
            .zip(&r.targets)
            .map(|(literal, target)| match literal {
                Some(v) => convert(v.to_array_of_size(1)?, target),
                None => Ok(new_null_array(target, 1)),
            })
            .collect::<Result<Vec<_>>>()?;
        self.pools[r.overload]
            .create(&constants)
            .map_err(|e| plan_datafusion_err!("{}: {}", self.name.to_uppercase(), e.message))?;
        self.checked.lock().expect("checked lock").insert(key);
        Ok(())
    }

    /// The result type of an overload: a list of its rows for a table function.
    fn output_type(&self, overload: &Overload) -> DataType {
        let t = overload.returns.to_arrow();
        match self.function.kind {
            Kind::Table => DataType::List(Arc::new(Field::new("item", t, true))),
            _ => t,
        }
    }
}

/// Any arguments: the overload is picked (and the arguments converted) by [`resolve`], whose errors
/// name the signatures.
pub fn signature(function: &Function) -> Signature {
    let deterministic = function.overloads.iter().all(|o| o.spec.deterministic);
    Signature::variadic_any(if deterministic {
        Volatility::Immutable
    } else {
        Volatility::Volatile
    })
}

/// A failed call, as the error the query's error policy handles.
pub fn call_error(name: &str, e: CallError) -> DataFusionError {
    exec_datafusion_err!("{}: {}", name.to_uppercase(), e.message)
}

/// Converts `values` to `target`, if it is not already of that type.
pub fn convert(values: ArrayRef, target: &DataType) -> Result<ArrayRef> {
    if values.data_type() == target {
        Ok(values)
    } else {
        Ok(cast(&values, target)?)
    }
}

/// Checks a result's length and SQL type, giving it exactly the Arrow type expected.
pub fn check_result(
    name: &str,
    result: ArrayRef,
    rows: usize,
    expected: &DataType,
) -> Result<ArrayRef> {
    if result.len() != rows {
        return Err(exec_datafusion_err!(
            "{}: the plugin returned {} rows for {rows}",
            name.to_uppercase(),
            result.len()
        ));
    }
    if result.data_type() == expected {
        return Ok(result);
    }
    let same = matches!(
        (SqlType::from_arrow(result.data_type()), SqlType::from_arrow(expected)),
        (Ok(a), Ok(b)) if a == b
    );
    if !same {
        return Err(exec_datafusion_err!(
            "{}: the plugin returned values of type {} where its manifest promises {}",
            name.to_uppercase(),
            result.data_type(),
            expected
        ));
    }
    Ok(cast(&result, expected)?)
}

/// A plugin function is the same function as another with its name from the same library.
macro_rules! identified_by_name_and_library {
    ($ty:ty) => {
        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.name == other.name && self.plugin.sha256 == other.plugin.sha256
            }
        }

        impl Eq for $ty {}

        impl std::hash::Hash for $ty {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.name.hash(state);
                self.plugin.sha256.hash(state);
            }
        }
    };
}

pub(crate) use identified_by_name_and_library;

identified_by_name_and_library!(PluginScalar);

impl ScalarUDFImpl for PluginScalar {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// A table function is typed as its rows: the planner unnests the lists it returns.
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let r = resolve(&self.name, &self.function.overloads, arg_types)
            .map_err(|e| plan_datafusion_err!("{e}"))?;
        Ok(self.function.overloads[r.overload].returns.to_arrow())
    }

    /// The type, once the plugin has accepted the call's literal arguments.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let r = self.overload_for(args.arg_fields)?;
        self.check_call(&r, args.scalar_arguments)?;
        let returns = self.function.overloads[r.overload].returns.to_arrow();
        Ok(Arc::new(Field::new(self.name(), returns, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let r = self.overload_for(&args.arg_fields)?;
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .zip(&r.targets)
            .map(|(a, t)| convert(a.to_array(rows)?, t))
            .collect::<Result<Vec<_>>>()?;
        let api = &self.plugin.api;
        let call = || {
            self.pools[r.overload].with(|instance| {
                let (mut array, schema) =
                    export(&columns, rows).map_err(|message| CallError { message })?;
                api.output(|out, out_schema| unsafe {
                    (api.invoke)(instance.ptr, &mut array, &schema, out, out_schema)
                })
            })
        };
        let result = match self.plugin.calls(&self.name) {
            Some(stats) => stats.time(rows, call),
            None => call(),
        }
        .map_err(|e| call_error(&self.name, e))?;
        let expected = self.output_type(&self.function.overloads[r.overload]);
        Ok(ColumnarValue::Array(check_result(
            &self.name, result, rows, &expected,
        )?))
    }
}
