//! How a call names a model — `name`, `name@version` or `name@alias`, any of them followed by
//! `?threshold=t` — and how a name is resolved against the model directory
//! (`<dir>/<name>/<version>/`, and the aliases in `<dir>/<name>/aliases.json`).

use std::path::{Path, PathBuf};

use eddy_udf::serde_json::{self, Value};
use eddy_udf::{Error, Result};

/// The file of a model's aliases: a JSON object of alias → version, written by the server.
pub const ALIASES: &str = "aliases.json";

/// Which version a call names.
#[derive(Debug, Clone, PartialEq)]
pub enum Version {
    /// The highest there is.
    Latest,
    Number(u32),
    /// Whichever version the alias points at, read again for every batch.
    Alias(String),
}

/// A model reference as a call writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub version: Version,
    /// Overrides the card's threshold (IS_ANOMALY).
    pub threshold: Option<f64>,
}

impl Spec {
    pub fn parse(spec: &str) -> Result<Spec> {
        let (model, options) = spec.split_once('?').unwrap_or((spec, ""));
        let (name, version) = match model.split_once('@') {
            Some((n, v)) => (n.trim(), version(spec, v.trim())?),
            None => (model.trim(), Version::Latest),
        };
        if name.is_empty() || name.contains(['/', '\\', '.']) {
            return Err(Error(format!("bad model name '{spec}'")));
        }
        let mut threshold = None;
        for option in options.split('&').filter(|o| !o.trim().is_empty()) {
            match option.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("threshold", v)) => {
                    threshold = Some(v.parse().map_err(|_| {
                        Error(format!("bad threshold in '{spec}': expected a number"))
                    })?)
                }
                _ => {
                    return Err(Error(format!(
                        "unknown model option '{option}' in '{spec}': the only one is threshold=<number>"
                    )));
                }
            }
        }
        Ok(Spec {
            name: name.to_string(),
            version,
            threshold,
        })
    }
}

/// What follows the `@`: a version number or an alias (a letter, then letters, digits, `_` or `-`).
fn version(spec: &str, v: &str) -> Result<Version> {
    if let Ok(n) = v.parse() {
        return Ok(Version::Number(n));
    }
    let mut chars = v.chars();
    let alias = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if alias {
        return Ok(Version::Alias(v.to_ascii_lowercase()));
    }
    Err(Error(format!(
        "bad model version in '{spec}': expected name@number or name@alias"
    )))
}

/// The folder of a model's versions, or the error listing the models there are.
fn model_folder(dir: &Path, name: &str) -> Result<PathBuf> {
    let folder = dir.join(name);
    if folder.is_dir() {
        return Ok(folder);
    }
    let mut known: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    known.sort();
    Err(Error(format!(
        "no model '{name}' in {} (it has: {})",
        dir.display(),
        known.join(", ")
    )))
}

/// Where an alias sends rows, as the server's alias file says: versions with weights adding up to
/// 100 (rows split by key), and a shadow version scoring every row without its scores being
/// returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub weights: Vec<(u32, u32)>,
    pub shadow: Option<u32>,
}

impl Route {
    pub fn single(version: u32) -> Route {
        Route {
            weights: vec![(version, 100)],
            shadow: None,
        }
    }

    /// A version number, or `{"weights": [[version, weight], ...], "shadow": version}`.
    fn from_json(v: &Value) -> Option<Route> {
        let version = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        if v.is_number() {
            return version(v).map(Route::single);
        }
        let weights = v["weights"]
            .as_array()?
            .iter()
            .map(|pair| Some((version(&pair[0])?, version(&pair[1])?)))
            .collect::<Option<Vec<_>>>()?;
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        if weights.is_empty() || total != 100 {
            return None;
        }
        let shadow = match &v["shadow"] {
            Value::Null => None,
            s => Some(version(s)?),
        };
        Some(Route { weights, shadow })
    }

    /// Every version it uses.
    fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.weights.iter().map(|(v, _)| *v).chain(self.shadow)
    }
}

/// A model's aliases, from its aliases file (none when there is no file).
pub fn aliases(folder: &Path) -> Result<Vec<(String, Route)>> {
    let path = folder.join(ALIASES);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error(format!("{}: {e}", path.display()))),
    };
    let parsed: Value = serde_json::from_str(&text)
        .map_err(|e| Error(format!("{}: not JSON: {e}", path.display())))?;
    let object = parsed
        .as_object()
        .ok_or_else(|| Error(format!("{}: not a JSON object", path.display())))?;
    object
        .iter()
        .map(|(alias, v)| {
            let route = Route::from_json(v).ok_or_else(|| {
                Error(format!(
                    "{}: alias '{alias}' is neither a version nor a split of versions",
                    path.display()
                ))
            })?;
            Ok((alias.to_ascii_lowercase(), route))
        })
        .collect()
}

/// The model's name and where the spec sends rows: the named version, the alias's route, or the
/// highest version.
pub fn resolve(dir: &Path, spec: &Spec) -> Result<(String, Route)> {
    let name = spec.name.as_str();
    let folder = model_folder(dir, name)?;
    let mut versions: Vec<u32> = std::fs::read_dir(&folder)
        .map_err(|e| Error(format!("{}: {e}", folder.display())))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let route = match &spec.version {
        Version::Number(v) => Route::single(*v),
        Version::Alias(alias) => {
            let known = aliases(&folder)?;
            known
                .iter()
                .find(|(a, _)| a == alias)
                .map(|(_, r)| r.clone())
                .ok_or_else(|| {
                    let names: Vec<&str> = known.iter().map(|(a, _)| a.as_str()).collect();
                    Error(format!(
                        "model '{name}' has no alias '{alias}' (it has: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ))
                })?
        }
        Version::Latest => Route::single(
            *versions
                .last()
                .ok_or_else(|| Error(format!("model '{name}' has no versions")))?,
        ),
    };
    if let Some(missing) = route.versions().find(|v| !versions.contains(v)) {
        return Err(Error(format!(
            "model '{name}' has no version {missing} (it has {versions:?})"
        )));
    }
    Ok((name.to_string(), route))
}
