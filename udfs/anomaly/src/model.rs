//! One model of the model directory: `<dir>/<name>/<version>/model.onnx` with its `card.json`, loaded
//! and optimized by tract once, then run on whole batches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    plan: Arc<TypedRunnableModel>,
}

/// A model's scores and per-feature contributions for a batch (row-major, `features` per row).
#[derive(Debug)]
pub struct Scored {
    pub scores: Vec<f32>,
    pub contributions: Vec<f32>,
}

/// `name` or `name@version` (the highest version when none is given).
pub fn resolve(dir: &Path, spec: &str) -> Result<(String, u32, PathBuf)> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => {
            let v: u32 = v.parse().map_err(|_| {
                Error(format!(
                    "bad model version in '{spec}': expected name@number"
                ))
            })?;
            (n.trim(), Some(v))
        }
        None => (spec.trim(), None),
    };
    if name.is_empty() || name.contains(['/', '\\', '.']) {
        return Err(Error(format!("bad model name '{spec}'")));
    }
    let folder = dir.join(name);
    let versions: Vec<u32> = std::fs::read_dir(&folder)
        .map_err(|e| Error(format!("no model '{name}' in {}: {e}", dir.display())))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let version = match version {
        Some(v) if versions.contains(&v) => v,
        Some(v) => {
            return Err(Error(format!(
                "model '{name}' has no version {v} (it has {versions:?})"
            )));
        }
        None => *versions
            .iter()
            .max()
            .ok_or_else(|| Error(format!("model '{name}' has no versions")))?,
    };
    Ok((name.to_string(), version, folder.join(version.to_string())))
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
        let plan = tract_onnx::onnx()
            .model_for_path(folder.join("model.onnx"))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
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
            plan,
        })
    }

    /// Scores `rows` rows of features (row-major).
    pub fn score(&self, features: Vec<f32>, rows: usize) -> Result<Scored> {
        let width = self.features.len();
        let input = Tensor::from_shape(&[rows, width], &features)
            .map_err(|e| Error(format!("model {}: {e}", self.name)))?;
        let outputs = self
            .plan
            .run(tvec![input.into()])
            .map_err(|e| Error(format!("model {}@{}: {e:#}", self.name, self.version)))?;
        let take = |i: usize| -> Result<Vec<f32>> {
            outputs
                .get(i)
                .ok_or_else(|| Error(format!("model {}: missing output {i}", self.name)))?
                .to_plain_array_view::<f32>()
                .map(|view| view.iter().copied().collect())
                .map_err(|e| Error(format!("model {}: {e}", self.name)))
        };
        Ok(Scored {
            scores: take(0)?,
            contributions: take(1)?,
        })
    }
}
