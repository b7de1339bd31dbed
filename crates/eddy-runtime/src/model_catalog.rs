//! The model catalog: the versions of every model (an ONNX graph and its card, registered by
//! `CREATE MODEL` or a REST upload) and their aliases (`production`, `candidate`, ...). Hosts keep it
//! in their command log ([`ModelVersion::entry`] is the versioned record) and it is written out to a
//! directory in the layout model plugins read: `<dir>/<name>/<version>/{model.onnx, card.json}` and
//! `<dir>/<name>/aliases.json`, replaced whole so that a reader sees the old file or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use eddy_common::{Error, Result, exec_err, plan_err};
use eddy_sql::alias_route::AliasRoute;

/// The version of the command-log record a registered model version is kept in.
const ENTRY_FORMAT: u64 = 1;

/// Largest model graph accepted (models are small; the command log's records are bounded).
pub const MAX_MODEL_BYTES: usize = 512 * 1024;

/// The aliases file's name in a model's folder (the anomaly plugin reads it).
const ALIASES: &str = "aliases.json";

/// One registered version of a model.
#[derive(Debug, Clone)]
pub struct ModelVersion {
    pub version: u32,
    /// The card, with `name` and `version` set to where it is registered.
    pub card: Value,
    pub onnx: Arc<[u8]>,
    /// Of the ONNX graph, in hex.
    pub sha256: String,
    /// When it was registered (ms since the epoch).
    pub registered: i64,
}

impl ModelVersion {
    /// The features the card lists, in order.
    pub fn features(&self) -> Vec<String> {
        self.card["features"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The card's threshold.
    pub fn threshold(&self) -> Option<f64> {
        self.card["threshold"].as_f64()
    }

    /// The command-log record of this version of `name`: Eddy's own record, versioned.
    pub fn entry(&self, name: &str) -> Value {
        json!({"model": {
            "format": ENTRY_FORMAT,
            "name": name,
            "version": self.version,
            "card": self.card,
            "onnx": base64::engine::general_purpose::STANDARD.encode(&self.onnx),
            "sha256": self.sha256,
            "registered": self.registered,
        }})
    }
}

/// A model: its versions and aliases.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub versions: BTreeMap<u32, ModelVersion>,
    /// Alias → where it sends rows.
    pub aliases: BTreeMap<String, AliasRoute>,
}

impl Model {
    /// The highest version.
    pub fn latest(&self) -> Option<u32> {
        self.versions.keys().next_back().copied()
    }
}

/// The catalog of models, by lower-case name.
#[derive(Debug, Clone, Default)]
pub struct ModelCatalog {
    models: BTreeMap<String, Model>,
    /// Where the catalog is written out, if anywhere.
    dir: Option<PathBuf>,
}

/// What registering a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    New(u32),
    /// The same graph and card were registered as this version already.
    Same(u32),
}

/// `text` trimmed and lower-cased, if it is a letter followed by letters, digits or `extra`
/// characters, at most `max` long.
fn identifier(text: &str, extra: &[char], max: usize) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let mut chars = lower.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        && lower.len() <= max;
    ok.then_some(lower)
}

/// A model's name as the catalog keys it, checked: letters, digits and `_`, starting with a letter.
pub fn model_name(name: &str) -> Result<String> {
    identifier(name, &['_'], 128).ok_or_else(|| {
        plan_err!(
            "Invalid model name '{name}': a model name is a letter followed by letters, digits or '_'"
        )
    })
}

/// An alias as the catalog keys it: a letter, then letters, digits, `_` or `-` (so not a number).
fn alias_name(alias: &str) -> Result<String> {
    identifier(alias, &['_', '-'], 64).ok_or_else(|| {
        plan_err!(
            "Invalid alias '{alias}': an alias is a letter followed by letters, digits, '_' or '-'"
        )
    })
}

/// Reads a model folder: its `model.onnx` and `card.json`.
pub fn read_folder(folder: &Path) -> Result<(Value, Vec<u8>)> {
    let card_path = folder.join("card.json");
    let text = std::fs::read_to_string(&card_path)
        .map_err(|e| plan_err!("Cannot read the model card {}: {e}", card_path.display()))?;
    let card: Value = serde_json::from_str(&text)
        .map_err(|e| plan_err!("The model card {} is not JSON: {e}", card_path.display()))?;
    let onnx_path = folder.join("model.onnx");
    let size = std::fs::metadata(&onnx_path)
        .map_err(|e| plan_err!("Cannot read the model {}: {e}", onnx_path.display()))?
        .len();
    if size > MAX_MODEL_BYTES as u64 {
        return Err(plan_err!(
            "The model {} has {size} bytes; at most {MAX_MODEL_BYTES} are accepted",
            onnx_path.display()
        ));
    }
    let onnx = std::fs::read(&onnx_path)
        .map_err(|e| plan_err!("Cannot read the model {}: {e}", onnx_path.display()))?;
    Ok((card, onnx))
}

/// Checks a card: an object listing its features (strings) and a numeric threshold.
fn check_card(card: &Value) -> Result<()> {
    let object = card
        .as_object()
        .ok_or_else(|| plan_err!("A model card must be a JSON object"))?;
    let features = object.get("features").and_then(Value::as_array);
    match features {
        Some(f) if !f.is_empty() && f.iter().all(Value::is_string) => {}
        _ => {
            return Err(plan_err!(
                "A model card must list its input features: \"features\": [\"name\", ...]"
            ));
        }
    }
    if !object.get("threshold").is_some_and(Value::is_number) {
        return Err(plan_err!(
            "A model card must give its alert threshold: \"threshold\": <number>"
        ));
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ModelCatalog {
    /// A catalog written out to `dir` (emptied first: the catalog is the truth).
    pub fn in_dir(dir: PathBuf) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                exec_err!("cannot clear the model directory {}: {e}", dir.display())
            })?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| exec_err!("cannot create the model directory {}: {e}", dir.display()))?;
        Ok(ModelCatalog {
            models: BTreeMap::new(),
            dir: Some(dir),
        })
    }

    /// A copy that writes nothing out (for a sandbox).
    pub fn detached(&self) -> Self {
        ModelCatalog {
            models: self.models.clone(),
            dir: None,
        }
    }

    /// Where the catalog is written out.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.get(&name.to_ascii_lowercase())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Model)> {
        self.models.iter()
    }

    /// The model or the error naming the models there are.
    pub fn require(&self, name: &str) -> Result<&Model> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            plan_err!(
                "Model '{}' does not exist (the models are: {})",
                name.to_ascii_lowercase(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// Registers a graph and its card as version `version` of `name` (the next version when
    /// `None`). Registering what a version holds already is no change.
    pub fn register(
        &mut self,
        name: &str,
        version: Option<u32>,
        mut card: Value,
        onnx: Vec<u8>,
        registered: i64,
    ) -> Result<(Registered, ModelVersion)> {
        let name = model_name(name)?;
        check_card(&card)?;
        if onnx.is_empty() || onnx.len() > MAX_MODEL_BYTES {
            return Err(plan_err!(
                "A model graph must have 1 to {MAX_MODEL_BYTES} bytes; this one has {}",
                onnx.len()
            ));
        }
        let sha256 = sha256_hex(&onnx);
        let model = self.models.get(&name);
        let same = model.and_then(|m| {
            m.versions.values().find(|v| {
                v.sha256 == sha256
                    && version.is_none_or(|n| n == v.version)
                    && same_card(&v.card, &card)
            })
        });
        if let Some(same) = same {
            return Ok((Registered::Same(same.version), same.clone()));
        }
        let version = match version {
            Some(0) => return Err(plan_err!("Model versions start at 1")),
            Some(v) => {
                if model.is_some_and(|m| m.versions.contains_key(&v)) {
                    return Err(plan_err!(
                        "Model '{name}' has a version {v} already, with another graph or card: register this one as a new version"
                    ));
                }
                v
            }
            None => model.and_then(Model::latest).unwrap_or(0) + 1,
        };
        if let Some(fields) = card.as_object_mut() {
            fields.insert("name".into(), name.clone().into());
            fields.insert("version".into(), version.into());
        }
        let entry = ModelVersion {
            version,
            card,
            onnx: onnx.into(),
            sha256,
            registered,
        };
        self.write_version(&name, &entry)?;
        self.models
            .entry(name)
            .or_default()
            .versions
            .insert(version, entry.clone());
        Ok((Registered::New(version), entry))
    }

    /// Restores a version from its command-log record.
    pub fn restore(&mut self, entry: &Value) -> Result<u32> {
        let format = entry["format"].as_u64().unwrap_or(0);
        if format != ENTRY_FORMAT {
            return Err(exec_err!(
                "a model record of format {format}: this server reads format {ENTRY_FORMAT}"
            ));
        }
        let name = entry["name"].as_str().unwrap_or_default();
        let version = entry["version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| exec_err!("a model record without a version"))?;
        let onnx = base64::engine::general_purpose::STANDARD
            .decode(entry["onnx"].as_str().unwrap_or_default())
            .map_err(|e| exec_err!("a model record with a bad graph: {e}"))?;
        let registered = entry["registered"].as_i64().unwrap_or_default();
        match self.register(name, Some(version), entry["card"].clone(), onnx, registered)? {
            (Registered::New(v) | Registered::Same(v), _) => Ok(v),
        }
    }

    /// Points `alias` of `name` at `route` (`None`: removes it). Returns where it pointed before.
    pub fn set_alias(
        &mut self,
        name: &str,
        alias: &str,
        route: Option<AliasRoute>,
    ) -> Result<Option<AliasRoute>> {
        let alias = alias_name(alias)?;
        let key = model_name(name)?;
        let model = self.require(&key)?;
        if let Some(v) = route
            .iter()
            .flat_map(|r| r.versions())
            .find(|v| !model.versions.contains_key(v))
        {
            return Err(plan_err!(
                "Model '{key}' has no version {v} (it has {})",
                list(model.versions.keys())
            ));
        }
        if route.is_none() && !model.aliases.contains_key(&alias) {
            return Err(plan_err!("Model '{key}' has no alias '{alias}'"));
        }
        // Queries through the alias were planned with the features of the version it points at: every
        // version it is to send rows to must take the same.
        if let Some(r) = &route {
            let current = model
                .aliases
                .get(&alias)
                .and_then(|old| old.versions().next());
            if let Some(reference) = current.or_else(|| r.versions().next()) {
                let want = model.versions[&reference].features();
                if let Some(v) = r.versions().find(|v| model.versions[v].features() != want) {
                    return Err(plan_err!(
                        "Version {v} of model '{key}' takes other features than version {reference} ({}), which {}: register it as another model, or create the queries anew with it",
                        want.join(", "),
                        if current.is_some() {
                            format!(
                                "alias '{alias}' points at now and its queries were planned with"
                            )
                        } else {
                            "the same alias is to send rows to".to_string()
                        }
                    ));
                }
            }
        }
        let mut aliases = model.aliases.clone();
        let before = match route {
            Some(r) => aliases.insert(alias, r),
            None => aliases.remove(&alias),
        };
        self.write_aliases(&key, &aliases)?;
        if let Some(m) = self.models.get_mut(&key) {
            m.aliases = aliases;
        }
        Ok(before)
    }

    /// Removes version `version` of `name`, or the whole model; refused while an alias points at
    /// it. Returns the versions removed.
    pub fn drop(&mut self, name: &str, version: Option<u32>) -> Result<Vec<u32>> {
        let key = model_name(name)?;
        let model = self.require(&key)?;
        let removed: Vec<u32> = match version {
            Some(v) if model.versions.contains_key(&v) => vec![v],
            Some(v) => return Err(plan_err!("Model '{key}' has no version {v}")),
            None => model.versions.keys().copied().collect(),
        };
        let pointing: Vec<String> = model
            .aliases
            .iter()
            .filter(|(_, r)| version.is_some() && r.versions().any(|v| removed.contains(&v)))
            .map(|(a, r)| format!("{a} → {r}"))
            .collect();
        if !pointing.is_empty() {
            return Err(plan_err!(
                "Cannot drop version {} of model '{key}': aliases point at it ({}); move them first",
                removed[0],
                pointing.join(", ")
            ));
        }
        if let Some(dir) = &self.dir {
            let folder = dir.join(&key);
            let target = match version {
                Some(v) => folder.join(v.to_string()),
                None => folder,
            };
            std::fs::remove_dir_all(&target)
                .map_err(|e| exec_err!("cannot remove {}: {e}", target.display()))?;
        }
        if let Some(model) = self.models.get_mut(&key) {
            model.versions.retain(|v, _| !removed.contains(v));
            if model.versions.is_empty() {
                self.models.remove(&key);
            }
        }
        Ok(removed)
    }

    fn write_version(&self, name: &str, v: &ModelVersion) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let folder = dir.join(name).join(v.version.to_string());
        let card = serde_json::to_vec_pretty(&v.card).map_err(|e| exec_err!("{e}"))?;
        write_replacing(&folder, "model.onnx", &v.onnx)?;
        write_replacing(&folder, "card.json", &card)
    }

    fn write_aliases(&self, name: &str, aliases: &BTreeMap<String, AliasRoute>) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let object: Map<String, Value> = aliases
            .iter()
            .map(|(a, r)| (a.clone(), r.to_json()))
            .collect();
        let bytes = serde_json::to_vec(&object).map_err(|e| exec_err!("{e}"))?;
        write_replacing(&dir.join(name), ALIASES, &bytes)
    }
}

/// Whether two cards say the same, apart from the name and version they were registered under.
fn same_card(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("name");
            o.remove("version");
        }
        v
    };
    strip(a) == strip(b)
}

/// Writes `folder/file` through a temporary file renamed over it.
fn write_replacing(folder: &Path, file: &str, bytes: &[u8]) -> Result<()> {
    let fail =
        |e: std::io::Error| -> Error { exec_err!("cannot write {}/{file}: {e}", folder.display()) };
    std::fs::create_dir_all(folder).map_err(fail)?;
    let temporary = folder.join(format!(".{file}.tmp"));
    std::fs::write(&temporary, bytes).map_err(fail)?;
    std::fs::rename(&temporary, folder.join(file)).map_err(fail)
}

/// `1, 2, 3`.
fn list<'a>(versions: impl Iterator<Item = &'a u32>) -> String {
    versions.map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Value {
        json!({"features": ["a", "b"], "threshold": 3.5})
    }

    #[test]
    fn versions_number_up_and_the_same_graph_is_no_change() {
        let dir = std::env::temp_dir().join(format!("eddy-models-{}", std::process::id()));
        let mut c = ModelCatalog::in_dir(dir.clone()).unwrap();
        let (r, _) = c
            .register("Car_AE", None, card(), b"one".to_vec(), 1)
            .unwrap();
        assert_eq!(r, Registered::New(1));
        let (r, _) = c
            .register("car_ae", None, card(), b"one".to_vec(), 2)
            .unwrap();
        assert_eq!(r, Registered::Same(1));
        let (r, v2) = c
            .register("car_ae", None, card(), b"two".to_vec(), 3)
            .unwrap();
        assert_eq!(r, Registered::New(2));
        assert_eq!(v2.card["version"], 2);
        let e = c
            .register("car_ae", Some(2), card(), b"three".to_vec(), 4)
            .unwrap_err();
        assert!(e.to_string().contains("has a version 2 already"), "{e}");
        assert_eq!(
            std::fs::read(dir.join("car_ae/2/model.onnx")).unwrap(),
            b"two"
        );
        // Aliases are written out for the plugin, and dropping what they point at is refused.
        let one = Some(AliasRoute::single(1));
        assert_eq!(
            c.set_alias("car_ae", "Production", one.clone()).unwrap(),
            None
        );
        let split = AliasRoute::new(vec![(1, 90), (2, 10)], None).unwrap();
        assert_eq!(
            c.set_alias("car_ae", "candidate", Some(split)).unwrap(),
            None
        );
        let e = c.drop("car_ae", Some(1)).unwrap_err();
        assert!(
            e.to_string()
                .contains("candidate → 1 WEIGHT 90, 2 WEIGHT 10"),
            "{e}"
        );
        c.set_alias("car_ae", "candidate", None).unwrap();
        let two = Some(AliasRoute::single(2));
        assert_eq!(c.set_alias("car_ae", "production", two).unwrap(), one);
        let aliases = std::fs::read_to_string(dir.join("car_ae/aliases.json")).unwrap();
        assert_eq!(aliases, r#"{"production":2}"#);
        let e = c.drop("car_ae", Some(2)).unwrap_err();
        assert!(e.to_string().contains("aliases point at it"), "{e}");
        // A version of other features cannot take over an alias, nor share one.
        let other = json!({"features": ["a", "c"], "threshold": 3.5});
        c.register("car_ae", None, other, b"four".to_vec(), 5)
            .unwrap();
        let e = c
            .set_alias("car_ae", "production", Some(AliasRoute::single(3)))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("Version 3 of model 'car_ae' takes other features than version 2 (a, b)"),
            "{e}"
        );
        let split = AliasRoute::new(vec![(1, 50), (3, 50)], None).unwrap();
        assert!(c.set_alias("car_ae", "canary", Some(split)).is_err());
        assert_eq!(
            c.set_alias("car_ae", "other", Some(AliasRoute::single(3)))
                .unwrap(),
            None
        );
        c.set_alias("car_ae", "other", None).unwrap();
        c.drop("car_ae", Some(3)).unwrap();
        assert_eq!(c.drop("car_ae", Some(1)).unwrap(), vec![1]);
        assert!(!dir.join("car_ae/1").exists());
        // A record of the command log gives the same version back.
        let entry = c.get("car_ae").unwrap().versions[&2].entry("car_ae");
        let mut other = ModelCatalog::default();
        assert_eq!(other.restore(&entry["model"]).unwrap(), 2);
        assert_eq!(other.get("car_ae").unwrap().versions[&2].sha256, v2.sha256);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_names_cards_and_aliases_are_refused() {
        let mut c = ModelCatalog::default();
        for (name, card, want) in [
            ("../x", card(), "Invalid model name"),
            ("m", json!({"threshold": 1}), "must list its input features"),
            (
                "m",
                json!({"features": ["a"]}),
                "must give its alert threshold",
            ),
        ] {
            let e = c.register(name, None, card, b"g".to_vec(), 0).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        c.register("m", None, card(), b"g".to_vec(), 0).unwrap();
        let e = c
            .set_alias("m", "7", Some(AliasRoute::single(1)))
            .unwrap_err();
        assert!(e.to_string().contains("Invalid alias"), "{e}");
        let e = c
            .set_alias("m", "prod", Some(AliasRoute::single(9)))
            .unwrap_err();
        assert!(e.to_string().contains("has no version 9 (it has 1)"), "{e}");
        let e = c.require("n").unwrap_err();
        assert!(e.to_string().contains("the models are: m"), "{e}");
    }
}
