//! Anomaly detection in SQL: ONNX models from the model directory, run by tract on whole batches.
//!
//! - `ANOMALY_SCORE('model[@version]', x1, ..., xn)` → DOUBLE: the model's score (higher is stranger).
//! - `IS_ANOMALY('model[@version][?threshold=t]', x1, ..., xn)` → BOOLEAN: score ≥ the threshold on the
//!   model's card, or `t`.
//! - `ANOMALY_CAUSE('model[@version]', x1, ..., xn)` → STRING: the feature contributing most.
//!
//! The model is a literal; the features are DOUBLEs in the order the model's card lists them; a row
//! with a NULL feature gets NULL. The model directory is `ksql.functions._global_.model_dir` (or
//! `EDDY_MODEL_DIR`). A call is checked when its query is planned (the model loads, the number of
//! features fits), and a model is loaded once per instance; a new version added to the directory is
//! used by queries that name it (or, naming no version, by queries started after it appeared).

mod model;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use eddy_udf::arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder};
use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::types::Float64Type;
use eddy_udf::arrow_array::{Array, ArrayRef};
use eddy_udf::prelude::*;

pub use model::{Model, Scored, Spec, resolve};

/// Loads models by spec, once each.
#[derive(Debug)]
pub struct Models {
    dir: PathBuf,
    loaded: HashMap<String, Chosen>,
}

/// A model as a call names it: the model and the threshold its IS_ANOMALY uses.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub model: Arc<Model>,
    pub threshold: f64,
}

impl Models {
    pub fn new(options: &Options) -> Result<Models> {
        let dir = options
            .config("model_dir")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("EDDY_MODEL_DIR").map(PathBuf::from))
            .ok_or(
                "no model directory: set ksql.functions._global_.model_dir (or EDDY_MODEL_DIR)",
            )?;
        Ok(Models {
            dir,
            loaded: HashMap::new(),
        })
    }

    pub fn get(&mut self, spec: &str) -> Result<Chosen> {
        if let Some(m) = self.loaded.get(spec) {
            return Ok(m.clone());
        }
        let parsed = Spec::parse(spec)?;
        let (name, version, folder) = resolve(&self.dir, &parsed)?;
        let model = Arc::new(Model::load(&name, version, &folder)?);
        let threshold = parsed.threshold.unwrap_or(model.threshold);
        let chosen = Chosen { model, threshold };
        self.loaded.insert(spec.to_string(), chosen.clone());
        Ok(chosen)
    }

    /// A planned call's literal arguments (NULL where not a literal): the model must be a literal
    /// that loads, followed by as many features as its card lists.
    fn check(&mut self, constants: &[ArrayRef]) -> Result<()> {
        let Some(first) = constants.first() else {
            return Ok(());
        };
        let spec = first
            .as_string_opt::<i32>()
            .filter(|s| s.is_valid(0))
            .ok_or("the model must be a literal string, such as 'autoencoder@1'")?
            .value(0)
            .to_string();
        let chosen = self.get(&spec)?;
        arity(&chosen.model, constants.len() - 1)
    }

    /// Scores a batch: the model named by the first argument (the same on every row) over the
    /// others. Returns the model, the scores and a mask of rows with a NULL feature.
    fn score(&mut self, args: &[ArrayRef], rows: usize) -> Result<(Chosen, Scored, Vec<bool>)> {
        let specs = args[0]
            .as_string_opt::<i32>()
            .ok_or("the model name must be a STRING")?;
        let spec = (0..rows)
            .find(|r| specs.is_valid(*r))
            .map(|r| specs.value(r))
            .ok_or("the model name is NULL")?;
        if (0..rows).any(|r| specs.is_valid(r) && specs.value(r) != spec) {
            return Err("the model name must be the same for every row (a constant)".into());
        }
        let chosen = self.get(spec)?;
        let columns = &args[1..];
        arity(&chosen.model, columns.len())?;
        let columns: Vec<_> = columns
            .iter()
            .map(|c| {
                c.as_primitive_opt::<Float64Type>()
                    .ok_or("the features must be DOUBLEs")
            })
            .collect::<std::result::Result<_, _>>()?;
        let width = columns.len();
        let mut features = vec![0f32; rows * width];
        let mut null = vec![false; rows];
        for (j, column) in columns.iter().enumerate() {
            for (r, v) in column.iter().enumerate() {
                match v {
                    Some(v) => features[r * width + j] = v as f32,
                    None => null[r] = true,
                }
            }
        }
        let scored = chosen.model.score(features, rows)?;
        Ok((chosen, scored, null))
    }
}

/// The model takes `features` features.
fn arity(model: &Model, features: usize) -> Result<()> {
    if features == model.features.len() {
        return Ok(());
    }
    Err(Error(format!(
        "model {}@{} takes {} features, in this order: {}; the call gives {features}",
        model.name,
        model.version,
        model.features.len(),
        model.features.join(", ")
    )))
}

macro_rules! anomaly_function {
    ($(#[$doc:meta])* $ty:ident $name:tt $returns:tt, |$model:ident, $scored:ident, $row:ident| $value:expr, $builder:expr) => {
        $(#[$doc])*
        #[udf(name = $name, args = ["STRING", "DOUBLE"], variadic = true, returns = $returns)]
        pub struct $ty(Models);

        impl BatchFunction for $ty {
            fn create(options: &Options) -> Result<Self> {
                let mut models = Models::new(options)?;
                models.check(&options.constants)?;
                Ok($ty(models))
            }

            fn invoke(&mut self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
                let ($model, $scored, null) = self.0.score(args, rows)?;
                let _ = (&$model, &$scored);
                let mut out = $builder(rows);
                for $row in 0..rows {
                    if null[$row] {
                        out.append_null();
                    } else {
                        out.append_value($value);
                    }
                }
                Ok(Arc::new(out.finish()))
            }
        }
    };
}

anomaly_function!(
    /// The model's anomaly score for each row (higher is stranger).
    AnomalyScore "anomaly_score" "DOUBLE",
    |chosen, scored, row| f64::from(scored.scores()[row]),
    Float64Builder::with_capacity
);

anomaly_function!(
    /// Whether each row's score reaches the threshold on the model's card.
    IsAnomaly "is_anomaly" "BOOLEAN",
    |chosen, scored, row| f64::from(scored.scores()[row]) >= chosen.threshold,
    BooleanBuilder::with_capacity
);

anomaly_function!(
    /// The feature contributing most to each row's score.
    AnomalyCause "anomaly_cause" "STRING",
    |chosen, scored, row| {
        let features = &chosen.model.features;
        let width = features.len();
        let shares = &scored.contributions()[row * width..(row + 1) * width];
        let top = (0..width)
            .max_by(|a, b| shares[*a].total_cmp(&shares[*b]))
            .unwrap_or(0);
        features[top].as_str()
    },
    |rows| StringBuilder::with_capacity(rows, rows * 12)
);

eddy_udf::plugin!(AnomalyScore, IsAnomaly, AnomalyCause);

#[cfg(test)]
mod tests;
