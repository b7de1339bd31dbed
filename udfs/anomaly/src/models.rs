//! The models one function instance scores with, loaded once each. A reference by alias is resolved
//! again for every batch — a look at the alias file's identity, read again only when it changed — so
//! moving an alias switches a running query at a batch boundary.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_udf::Options;
use eddy_udf::Result;

use crate::model::Model;
use crate::spec::{ALIASES, Route, Spec, Version, resolve};

/// Loads models by reference, once each.
#[derive(Debug)]
pub struct Models {
    dir: PathBuf,
    /// By name and version.
    loaded: HashMap<(String, u32), Arc<Model>>,
    /// References parsed, with the version they last resolved to and, for an alias, the identity of
    /// the alias file it was read from.
    specs: HashMap<String, Resolved>,
}

#[derive(Debug, Clone)]
struct Resolved {
    spec: Spec,
    route: Route,
    aliases: Option<Stamp>,
}

/// What tells one alias file from another: the server replaces it (a new inode) to move an alias.
type Stamp = (u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

/// A model as a call names it: the model and the threshold its IS_ANOMALY uses.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub model: Arc<Model>,
    pub threshold: f64,
}

/// The models a reference scores with now: each with its share of the rows (out of 100), and the
/// shadow.
#[derive(Debug, Clone)]
pub struct Routed {
    pub parts: Vec<(Chosen, u32)>,
    pub shadow: Option<Chosen>,
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
            specs: HashMap::new(),
        })
    }

    /// The models a reference names now.
    pub fn get(&mut self, reference: &str) -> Result<Routed> {
        let current = match self.specs.get(reference) {
            Some(r) if !self.moved(r) => r.clone(),
            _ => {
                let spec = Spec::parse(reference)?;
                let aliases = match &spec.version {
                    Version::Alias(_) => stamp(&self.dir.join(&spec.name).join(ALIASES)),
                    _ => None,
                };
                let (_, route) = resolve(&self.dir, &spec)?;
                let r = Resolved {
                    spec,
                    route,
                    aliases,
                };
                self.specs.insert(reference.to_string(), r.clone());
                r
            }
        };
        let mut parts = Vec::with_capacity(current.route.weights.len());
        for (version, weight) in &current.route.weights {
            parts.push((self.chosen(&current.spec, *version)?, *weight));
        }
        let shadow = match current.route.shadow {
            Some(v) => Some(self.chosen(&current.spec, v)?),
            None => None,
        };
        Ok(Routed { parts, shadow })
    }

    /// Version `version` of the spec's model, loaded once, with the spec's threshold.
    fn chosen(&mut self, spec: &Spec, version: u32) -> Result<Chosen> {
        let key = (spec.name.clone(), version);
        let model = match self.loaded.get(&key) {
            Some(m) => m.clone(),
            None => {
                let folder = self.dir.join(&key.0).join(version.to_string());
                let m = Arc::new(Model::load(&key.0, version, &folder)?);
                self.loaded.insert(key, m.clone());
                m
            }
        };
        let threshold = spec.threshold.unwrap_or(model.threshold);
        Ok(Chosen { model, threshold })
    }

    /// Whether a reference by alias may point elsewhere now (its alias file changed).
    fn moved(&self, r: &Resolved) -> bool {
        matches!(r.spec.version, Version::Alias(_))
            && stamp(&self.dir.join(&r.spec.name).join(ALIASES)) != r.aliases
    }
}
