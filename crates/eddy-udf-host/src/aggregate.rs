//! Aggregate functions of plugins as DataFusion `AggregateUDFImpl`s: an instance per overload and
//! set of constant arguments (shared by the groups), an accumulator per group in the plugin, states
//! passed as Arrow arrays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, plan_datafusion_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;
use serde_json::Value;

use crate::api::{CallError, Handle, columns, export};
use crate::instance::Pool;
use crate::plugin::{Function, Plugin};
use crate::scalar::{call_error, check_result, convert, identified_by_name_and_library, signature};
use crate::signature::{Overload, resolve};

#[derive(Debug)]
pub struct PluginAggregate {
    name: String,
    plugin: Arc<Plugin>,
    function: Function,
    signature: Signature,
    pools: Vec<Pool>,
    /// Instances by overload and constant arguments.
    instances: Mutex<HashMap<(usize, String), Arc<Handle>>>,
}

impl Plugin {
    /// An aggregate function of this plugin as a DataFusion UDAF.
    pub fn aggregate_udf(self: &Arc<Self>, function: &Function, config: Value) -> AggregateUDF {
        AggregateUDF::new_from_impl(PluginAggregate::new(self.clone(), function.clone(), config))
    }
}

impl PluginAggregate {
    pub fn new(plugin: Arc<Plugin>, function: Function, config: Value) -> Self {
        let pools = function
            .overloads
            .iter()
            .map(|o| Pool::new(plugin.clone(), o.index, &config))
            .collect();
        PluginAggregate {
            name: function.name.to_lowercase(),
            signature: signature(&function),
            plugin,
            function,
            pools,
            instances: Mutex::new(HashMap::new()),
        }
    }

    fn overload(&self, types: &[DataType]) -> Result<(crate::signature::Resolved, &Overload)> {
        let r = resolve(&self.name, &self.function.overloads, types)
            .map_err(|e| plan_datafusion_err!("{e}"))?;
        let o = &self.function.overloads[r.overload];
        Ok((r, o))
    }

    fn instance(&self, overload: usize, constants: Vec<ArrayRef>) -> Result<Arc<Handle>> {
        let key = (overload, format!("{constants:?}"));
        let mut instances = self.instances.lock().expect("instances lock");
        if let Some(i) = instances.get(&key) {
            return Ok(i.clone());
        }
        let i = Arc::new(
            self.pools[overload]
                .create(&constants)
                .map_err(|e| call_error(&self.name, e))?,
        );
        instances.insert(key, i.clone());
        Ok(i)
    }
}

identified_by_name_and_library!(PluginAggregate);

impl AggregateUDFImpl for PluginAggregate {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.overload(arg_types)?.1.returns.to_arrow())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let types: Vec<DataType> = args
            .input_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let (_, o) = self.overload(&types)?;
        Ok(o.state
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Arc::new(Field::new(
                    format!("{}[s{i}]", args.name),
                    t.to_arrow(),
                    true,
                ))
            })
            .collect())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let (r, o) = self.overload(&types)?;
        let columns = r.columns();
        let constants = args.exprs[columns..]
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let value = constant(e).ok_or_else(|| {
                    plan_datafusion_err!(
                        "{}: argument {} must be a constant (a literal): it sets up the aggregation",
                        self.name.to_uppercase(),
                        columns + i + 1
                    )
                })??;
                convert(value, &r.targets[columns + i])
            })
            .collect::<Result<Vec<_>>>()?;
        let instance = self.instance(r.overload, constants)?;
        let api = &self.plugin.api;
        let mut ptr = std::ptr::null_mut();
        api.check(unsafe { (api.accumulator)(instance.ptr, &mut ptr) })
            .map_err(|e| call_error(&self.name, e))?;
        Ok(Box::new(PluginAccumulator {
            name: self.name.clone(),
            accumulator: Handle::new(ptr, api.drop_accumulator),
            _instance: instance,
            plugin: self.plugin.clone(),
            targets: r.targets[..columns].to_vec(),
            returns: o.returns.to_arrow(),
            state: o.state.iter().map(|t| t.to_arrow()).collect(),
            retracts: o.spec.retract,
        }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

/// The value of an argument that reads no column (`None` if it does), as a one-row array.
fn constant(e: &Arc<dyn PhysicalExpr>) -> Option<Result<ArrayRef>> {
    if !collect_columns(e).is_empty() {
        return None;
    }
    let options = RecordBatchOptions::new().with_row_count(Some(1));
    Some(
        RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &options)
            .map_err(Into::into)
            .and_then(|batch| e.evaluate(&batch)?.into_array(1)),
    )
}

/// One group's accumulator, living in the plugin.
#[derive(Debug)]
struct PluginAccumulator {
    name: String,
    accumulator: Handle,
    /// Keeps the instance that made the accumulator alive.
    _instance: Arc<Handle>,
    plugin: Arc<Plugin>,
    /// The per-row arguments' types (constant arguments are left out).
    targets: Vec<DataType>,
    returns: DataType,
    state: Vec<DataType>,
    retracts: bool,
}

impl PluginAccumulator {
    fn fold(
        &mut self,
        values: &[ArrayRef],
        types: &[DataType],
        merge: bool,
        retract: bool,
    ) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        let columns = values
            .iter()
            .zip(types)
            .map(|(v, t)| convert(v.clone(), t))
            .collect::<Result<Vec<_>>>()?;
        let api = &self.plugin.api;
        let f = if merge {
            api.merge
        } else if retract {
            api.retract
        } else {
            api.update
        };
        let ptr = self.accumulator.ptr;
        let call = || {
            let (mut array, schema) =
                export(&columns, rows).map_err(|message| CallError { message })?;
            api.check(unsafe { f(ptr, &mut array, &schema) })
        };
        match self.plugin.calls(&self.name) {
            Some(stats) => stats.time(rows, call),
            None => call(),
        }
        .map_err(|e| call_error(&self.name, e))
    }

    fn output(&self, f: eddy_udf::abi::OutputFn) -> Result<ArrayRef> {
        let ptr = self.accumulator.ptr;
        self.plugin
            .api
            .output(|out, out_schema| unsafe { f(ptr, out, out_schema) })
            .map_err(|e| call_error(&self.name, e))
    }
}

impl Accumulator for PluginAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let types = self.targets.clone();
        self.fold(&values[..types.len()], &types, false, false)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let types = self.targets.clone();
        self.fold(&values[..types.len()], &types, false, true)
    }

    fn supports_retract_batch(&self) -> bool {
        self.retracts
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let types = self.state.clone();
        self.fold(states, &types, true, false)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let batch = self.output(self.plugin.api.state)?;
        let states = columns(&batch).map_err(|e| exec_datafusion_err!("{}: {e}", self.name))?;
        if states.len() != self.state.len() {
            return Err(exec_datafusion_err!(
                "{}: the plugin returned {} state columns where its manifest declares {}",
                self.name.to_uppercase(),
                states.len(),
                self.state.len()
            ));
        }
        states
            .into_iter()
            .zip(&self.state)
            .map(|(s, t)| ScalarValue::try_from_array(&check_result(&self.name, s, 1, t)?, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let result = self.output(self.plugin.api.evaluate)?;
        ScalarValue::try_from_array(&check_result(&self.name, result, 1, &self.returns)?, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
