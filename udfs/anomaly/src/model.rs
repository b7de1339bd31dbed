//! One model of the model directory: `<dir>/<name>/<version>/model.onnx` with its `card.json`, loaded
//! and optimized by tract once, then run on whole batches (reusing execution states, and the caller's
//! buffer as the input tensor). A batch size that keeps coming back gets a plan optimized for exactly
//! that many rows (tract runs those about 25 % faster than the plan for any number of rows).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use eddy_udf::serde_json::{self, Value};
use eddy_udf::{Error, Result};
use tract_onnx::prelude::*;

/// A loaded model and what its card says about it.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub version: u32,
    /// The input features, in order.
    pub features: Vec<String>,
    /// Scores at or above it are anomalies.
    pub threshold: f64,
    plans: Mutex<Plans>,
}

/// A batch size gets its own plan once it has been seen this often...
const HOT_AFTER: u32 = 8;
/// ...for at most this many sizes.
const MAX_FIXED: usize = 4;

/// The model's execution states: one for any batch size, and some for exact ones.
#[derive(Debug)]
struct Plans {
    /// The parsed graph, for optimizing it for one batch size.
    source: InferenceModel,
    any: TypedSimpleState,
    fixed: HashMap<usize, TypedSimpleState>,
    /// How often each batch size without a plan was seen (forgotten when it grows large).
    seen: HashMap<usize, u32>,
}

impl Plans {
    /// The state to run a batch of `rows` rows with.
    fn state(&mut self, rows: usize, width: usize) -> &mut TypedSimpleState {
        if !self.fixed.contains_key(&rows) && self.fixed.len() < MAX_FIXED {
            if self.seen.len() > 1024 {
                self.seen.clear();
            }
            let count = self.seen.entry(rows).or_default();
            *count += 1;
            if *count == HOT_AFTER {
                // A size tract cannot plan for is run by the general plan.
                if let Ok(state) = plan(self.source.clone(), Some([rows, width])) {
                    self.fixed.insert(rows, state);
                }
            }
        }
        match self.fixed.get_mut(&rows) {
            Some(state) => state,
            None => &mut self.any,
        }
    }
}

/// Optimizes the graph (for exactly `shape` when given) and makes an execution state.
fn plan(source: InferenceModel, shape: Option<[usize; 2]>) -> TractResult<TypedSimpleState> {
    let model = match shape {
        Some(shape) => source.with_input_fact(0, f32::fact(shape).into())?,
        None => source,
    };
    model.into_optimized()?.into_runnable()?.spawn()
}

/// A model's outputs for a batch.
#[derive(Debug)]
pub struct Scored {
    outputs: TVec<TValue>,
}

impl Scored {
    /// One score per row.
    pub fn scores(&self) -> &[f32] {
        self.output(0)
    }

    /// Each feature's share of each row's score (row-major, one per feature).
    pub fn contributions(&self) -> &[f32] {
        self.output(1)
    }

    fn output(&self, i: usize) -> &[f32] {
        floats(&self.outputs[i]).expect("checked when scored")
    }
}

/// A tensor's values, if they are f32s in memory.
fn floats(t: &Tensor) -> Option<&[f32]> {
    t.as_plain_ram()?.as_slice::<f32>().ok()
}

impl Model {
    /// Loads `<folder>/model.onnx` and `<folder>/card.json`.
    pub fn load(name: &str, version: u32, folder: &Path) -> Result<Model> {
        let card: Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("card.json"))
                .map_err(|e| Error(format!("model {name}@{version}: no card.json: {e}")))?,
        )
        .map_err(|e| Error(format!("model {name}@{version}: bad card.json: {e}")))?;
        let features: Vec<String> = card["features"]
            .as_array()
            .ok_or_else(|| {
                Error(format!(
                    "model {name}@{version}: the card lists no features"
                ))
            })?
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        let threshold = card["threshold"]
            .as_f64()
            .ok_or_else(|| Error(format!("model {name}@{version}: the card has no threshold")))?;
        let source = tract_onnx::onnx().model_for_path(folder.join("model.onnx"));
        let plans = source
            .and_then(|source| {
                Ok(Plans {
                    any: plan(source.clone(), None)?,
                    source,
                    fixed: HashMap::new(),
                    seen: HashMap::new(),
                })
            })
            .map_err(|e| {
                Error(format!(
                    "model {name}@{version} cannot be loaded by tract: {e:#}"
                ))
            })?;
        Ok(Model {
            name: name.to_string(),
            version,
            features,
            threshold,
            plans: Mutex::new(plans),
        })
    }

    /// Scores `rows` rows of features (row-major).
    pub fn score(&self, features: Vec<f32>, rows: usize) -> Result<Scored> {
        let width = self.features.len();
        let fail = |e: &dyn std::fmt::Display| {
            Error(format!("model {}@{}: {e:#}", self.name, self.version))
        };
        let input =
            tract_ndarray::Array2::from_shape_vec((rows, width), features).map_err(|e| fail(&e))?;
        let outputs = self
            .plans
            .lock()
            .map_err(|_| fail(&"an earlier run panicked"))?
            .state(rows, width)
            .run(tvec![Tensor::from(input).into()])
            .map_err(|e| fail(&e))?;
        let sizes = [rows, rows * width];
        for (i, size) in sizes.iter().enumerate() {
            match outputs.get(i).and_then(|o| floats(o)) {
                Some(values) if values.len() == *size => {}
                _ => return Err(fail(&format!("output {i} is not {size} floats"))),
            }
        }
        Ok(Scored { outputs })
    }
}
