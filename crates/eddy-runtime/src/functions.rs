//! UDF plugins in the engine: the plugin directory's functions registered with the planner (each
//! with its `ksql.functions.<name>.*` configuration), names already taken refused, and what a reload
//! did.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_udf::Kind;
pub use eddy_udf_host::{CallSnapshot, Function, Plugin, PluginDir, PluginSample};
use serde_json::{Map, Value};

use crate::properties::Properties;
use eddy_sql::planner::Planner;

/// The functions that came from plugins, by upper-case name.
#[derive(Debug, Default, Clone)]
pub struct PluginFunctions {
    dir: Option<Arc<PluginDir>>,
    functions: BTreeMap<String, (Arc<Plugin>, Function)>,
}

/// What loading or reloading plugins did, for the user.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FunctionsReport {
    /// `name version (path): F1, F2` per plugin loaded or changed.
    pub loaded: Vec<String>,
    /// Plugins or functions not loaded, and why.
    pub errors: Vec<String>,
}

impl FunctionsReport {
    /// One message: what was loaded, then the errors.
    pub fn message(&self) -> String {
        let mut m = if self.loaded.is_empty() {
            "No new or changed plugins.".to_string()
        } else {
            format!("Loaded {}.", self.loaded.join("; "))
        };
        if !self.errors.is_empty() {
            m.push_str(&format!(" Not loaded: {}.", self.errors.join("; ")));
        }
        m
    }
}

impl PluginFunctions {
    pub fn dir(&self) -> Option<&Arc<PluginDir>> {
        self.dir.as_ref()
    }

    /// The plugin function of that name (any case).
    pub fn get(&self, name: &str) -> Option<&(Arc<Plugin>, Function)> {
        self.functions.get(&name.to_uppercase())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Arc<Plugin>, Function)> {
        self.functions.values()
    }

    /// Whether a model reference (`name@version`) loads: asked of the first function that takes
    /// a model (configured from `props`); Ok when no function takes one.
    pub fn check_model(&self, reference: &str, props: &Properties) -> Result<(), String> {
        let mut takers = self
            .functions
            .values()
            .filter(|(_, f)| self.takes_model(&f.name));
        match takers.next() {
            Some((plugin, f)) => plugin
                .accepts_first(f, &config(props, &f.name), reference)
                .map_err(|e| format!("{}: {e}", f.name)),
            None => Ok(()),
        }
    }

    /// Whether the function of that name takes a model reference first (a first parameter named
    /// `model`).
    pub fn takes_model(&self, name: &str) -> bool {
        self.get(name).is_some_and(|(_, f)| {
            f.overloads
                .iter()
                .any(|o| o.spec.params.first().is_some_and(|p| p.name == "model"))
        })
    }

    /// Registers every plugin the directory has loaded (the engine's start).
    pub fn attach(
        &mut self,
        dir: Arc<PluginDir>,
        planner: &mut Planner,
        props: &Properties,
    ) -> FunctionsReport {
        let plugins = dir.plugins();
        self.dir = Some(dir);
        let mut report = FunctionsReport::default();
        for p in plugins {
            self.register(&p, planner, props, &mut report);
        }
        report
    }

    /// Loads new and changed plugins and registers their functions; queries planned afterwards use
    /// them, running ones keep the versions they were planned with.
    pub fn reload(&mut self, planner: &mut Planner, props: &Properties) -> Option<FunctionsReport> {
        let dir = self.dir.clone()?;
        let reload = dir.reload();
        let mut report = FunctionsReport::default();
        for (path, e) in reload.errors {
            report.errors.push(format!("{}: {e}", path.display()));
        }
        for p in reload.loaded {
            self.register(&p, planner, props, &mut report);
        }
        Some(report)
    }

    fn register(
        &mut self,
        plugin: &Arc<Plugin>,
        planner: &mut Planner,
        props: &Properties,
        report: &mut FunctionsReport,
    ) {
        let mut names = Vec::new();
        for f in plugin.functions() {
            let taken_by = self.functions.get(&f.name).map(|(p, _)| p.path.clone());
            if let Some(other) = taken_by.filter(|other| *other != plugin.path) {
                report.errors.push(format!(
                    "{}: function {} is already defined by the plugin {}",
                    plugin.path.display(),
                    f.name,
                    other.display()
                ));
                continue;
            }
            if !self.functions.contains_key(&f.name) && planner.has_function(&f.name) {
                report.errors.push(format!(
                    "{}: function {} has the name of a built-in function; rename it",
                    plugin.path.display(),
                    f.name
                ));
                continue;
            }
            let config = config(props, &f.name);
            match f.kind {
                Kind::Aggregate => planner.register_udaf(plugin.aggregate_udf(f, config)),
                Kind::Scalar => planner.register_udf(plugin.scalar_udf(f, config)),
                Kind::Table => planner.register_table_function(plugin.scalar_udf(f, config)),
            }
            self.functions
                .insert(f.name.clone(), (plugin.clone(), f.clone()));
            names.push(f.name.clone());
        }
        let info = &plugin.manifest.plugin;
        report.loaded.push(format!(
            "{} {} ({}): {}",
            info.name,
            info.version,
            plugin.path.display(),
            names.join(", ")
        ));
    }
}

/// A function's configuration: `ksql.functions._global_.<key>`, then `ksql.functions.<name>.<key>`
/// (which wins), as `key: value` strings.
fn config(props: &Properties, name: &str) -> Value {
    let mut map = Map::new();
    let own = format!("ksql.functions.{}.", name.to_lowercase());
    for prefix in ["ksql.functions._global_.", own.as_str()] {
        for (k, v) in props {
            if let Some(key) = k.to_lowercase().strip_prefix(prefix) {
                map.insert(key.to_string(), Value::String(v.clone()));
            }
        }
    }
    Value::Object(map)
}
