//! One loaded plugin: its library (never unloaded), entry points, manifest and functions. Its
//! functions become DataFusion functions in `scalar` and `aggregate`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eddy_udf::{Kind, Manifest};
use libloading::Library;

use crate::api::Api;
use crate::call_stats::CallStats;
use crate::signature::Overload;

/// Every library loaded: plugins are never unloaded.
static LOADED: Mutex<Vec<Library>> = Mutex::new(Vec::new());

/// A plugin loaded from the plugin directory.
#[derive(Debug)]
pub struct Plugin {
    /// The file in the plugin directory it was loaded from.
    pub path: PathBuf,
    /// The SHA-256 of the file's contents, hex.
    pub sha256: String,
    pub manifest: Manifest,
    pub(crate) api: Api,
    functions: Vec<Function>,
    /// Each function's calls, by its name in lower case.
    calls: BTreeMap<String, CallStats>,
}

/// All the overloads of one function name in a plugin.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub kind: Kind,
    pub overloads: Vec<Overload>,
}

impl Plugin {
    /// Loads the library at `copy` (a private copy of `path`, so the original can be replaced while
    /// the copy stays mapped).
    pub fn load(path: &Path, copy: &Path, sha256: String) -> Result<Arc<Plugin>, String> {
        // Safety: loading runs the library's initialisers; the plugin directory is the operator's
        // statement that its libraries are trusted.
        let lib = unsafe { Library::new(copy) }.map_err(|e| format!("cannot load it: {e}"))?;
        // Safety: the library is kept loaded for good (below), so the entry points stay valid, and so
        // do arrays the plugin returned, whose release callbacks are its code.
        let api = unsafe { Api::of(&lib) }?;
        LOADED.lock().unwrap_or_else(|p| p.into_inner()).push(lib);
        let text = unsafe { CStr::from_ptr((api.manifest)()) }
            .to_string_lossy()
            .into_owned();
        let manifest = Manifest::from_json(&text).map_err(|e| format!("bad manifest: {e}"))?;
        let mut functions: Vec<Function> = Vec::new();
        for (index, spec) in manifest.functions.iter().enumerate() {
            let overload = Overload::new(index as u32, spec.clone())?;
            match functions.iter_mut().find(|f| f.name == spec.name) {
                Some(f) if f.kind != spec.kind => {
                    return Err(format!(
                        "function {} is declared both {} and {}",
                        spec.name,
                        f.kind.name(),
                        spec.kind.name()
                    ));
                }
                Some(f) => f.overloads.push(overload),
                None => functions.push(Function {
                    name: spec.name.clone(),
                    kind: spec.kind,
                    overloads: vec![overload],
                }),
            }
        }
        let calls = functions
            .iter()
            .map(|f| (f.name.to_lowercase(), CallStats::default()))
            .collect();
        Ok(Arc::new(Plugin {
            path: path.to_path_buf(),
            sha256,
            manifest,
            api,
            functions,
            calls,
        }))
    }

    /// The counters of the function `name`, in lower case (every function of the plugin has them).
    pub fn calls(&self, name: &str) -> Option<&CallStats> {
        self.calls.get(name)
    }

    /// The counters the plugin keeps (`eddy_udf::metrics`).
    pub fn metrics(&self) -> Vec<crate::api::PluginSample> {
        self.api.metrics()
    }

    pub fn functions(&self) -> &[Function] {
        &self.functions
    }
}
