//! The `SHOW MODELS` and `DESCRIBE MODEL` entities (Eddy's own): the catalog's models, their
//! versions, aliases, cards and the queries that score with them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use eddy_common::Error;
use eddy_runtime::Engine;
use eddy_runtime::model_catalog::{Model, ModelVersion};
use eddy_runtime::model_refs::Pinned;

use crate::entity_value::entity_value;

/// `SHOW MODELS`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelList<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    models: Vec<ModelSummary<'a>>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelSummary<'a> {
    name: &'a str,
    versions: Vec<u32>,
    latest: Option<u32>,
    aliases: BTreeMap<&'a str, Value>,
    features: usize,
}

/// `DESCRIBE MODEL`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelDescription<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    name: &'a str,
    aliases: BTreeMap<&'a str, Value>,
    versions: Vec<VersionDescription<'a>>,
    queries: Vec<ModelQuery>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionDescription<'a> {
    version: u32,
    sha256: &'a str,
    /// When it was registered, ms since the epoch.
    registered: i64,
    bytes: usize,
    features: Vec<String>,
    threshold: Option<f64>,
    /// What the card says of its inputs, outputs, validation and training (as written).
    input: &'a Value,
    outputs: &'a Value,
    validation: &'a Value,
    training: &'a Value,
}

/// A query scoring with the model: the reference it runs (`name@2`, `name@production`) and the
/// versions that is now (`2`, `1 WEIGHT 90, 2 WEIGHT 10 SHADOW 3`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelQuery {
    query_id: String,
    uses: String,
    versions: Option<String>,
}

/// The aliases as the alias file holds them: a version, or the split and shadow.
fn aliases(model: &Model) -> BTreeMap<&str, Value> {
    model
        .aliases
        .iter()
        .map(|(a, r)| (a.as_str(), r.to_json()))
        .collect()
}

fn version_description(v: &ModelVersion) -> VersionDescription<'_> {
    VersionDescription {
        version: v.version,
        sha256: &v.sha256,
        registered: v.registered,
        bytes: v.onnx.len(),
        features: v.features(),
        threshold: v.threshold(),
        input: &v.card["input"],
        outputs: &v.card["outputs"],
        validation: &v.card["validation"],
        training: &v.card["training"],
    }
}

/// `SHOW MODELS`.
pub fn model_list(text: &str, engine: &Engine) -> Value {
    let models = engine
        .models()
        .iter()
        .map(|(name, m)| ModelSummary {
            name,
            versions: m.versions.keys().copied().collect(),
            latest: m.latest(),
            aliases: aliases(m),
            features: m
                .latest()
                .map(|v| m.versions[&v].features().len())
                .unwrap_or(0),
        })
        .collect();
    entity_value(ModelList {
        entity_type: "models",
        statement_text: text,
        models,
        warnings: Vec::new(),
    })
}

/// `DESCRIBE MODEL name`.
pub fn model_description(text: &str, engine: &Engine, name: &str) -> Result<Value, Error> {
    let model: &Model = engine.models().require(name)?;
    let key = name.to_ascii_lowercase();
    let queries = engine
        .queries()
        .values()
        .flat_map(|q| {
            q.models
                .iter()
                .filter(|u| u.name == key)
                .map(|u| ModelQuery {
                    query_id: q.id.clone(),
                    uses: u.to_string(),
                    versions: match &u.version {
                        Pinned::Version(v) => Some(v.to_string()),
                        Pinned::Alias(a) => model.aliases.get(a).map(ToString::to_string),
                    },
                })
        })
        .collect();
    Ok(entity_value(ModelDescription {
        entity_type: "model_description",
        statement_text: text,
        name: &key,
        aliases: aliases(model),
        versions: model.versions.values().map(version_description).collect(),
        queries,
        warnings: Vec::new(),
    }))
}
