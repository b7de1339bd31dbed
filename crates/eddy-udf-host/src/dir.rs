//! The plugin directory: every shared library directly inside it is loaded at start and again by
//! `RELOAD FUNCTIONS` when its contents changed. A library is loaded from a private copy named by its
//! SHA-256, so a changed file is a new library (the old one stays loaded for the queries using it) and
//! replacing a file never changes code that is running.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::plugin::Plugin;

#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
    cache: PathBuf,
    loaded: Mutex<BTreeMap<PathBuf, Arc<Plugin>>>,
}

/// What a (re)load did.
#[derive(Debug, Default)]
pub struct Reload {
    /// Plugins loaded for the first time or changed since.
    pub loaded: Vec<Arc<Plugin>>,
    /// Plugins whose file is as it was.
    pub unchanged: usize,
    /// Files that could not be loaded, and why.
    pub errors: Vec<(PathBuf, String)>,
}

/// Whether a file name is a shared library's.
fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    )
}

impl PluginDir {
    /// A plugin directory, which must exist. Nothing is loaded until [`PluginDir::reload`].
    pub fn new(dir: &Path) -> Result<PluginDir, String> {
        let dir = fs::canonicalize(dir)
            .map_err(|e| format!("the plugin directory {} cannot be used: {e}", dir.display()))?;
        let cache = std::env::temp_dir().join("eddy-plugins");
        fs::create_dir_all(&cache)
            .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        Ok(PluginDir {
            dir,
            cache,
            loaded: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The plugins loaded, the latest version of each file.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.loaded
            .lock()
            .expect("plugins lock")
            .values()
            .cloned()
            .collect()
    }

    /// Loads the libraries in the directory that are new or changed.
    pub fn reload(&self) -> Reload {
        let mut report = Reload::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                report
                    .errors
                    .push((self.dir.clone(), format!("cannot list it: {e}")));
                return report;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_library(p))
            .collect();
        files.sort();
        for file in files {
            match self.load(&file) {
                Ok(Some(plugin)) => report.loaded.push(plugin),
                Ok(None) => report.unchanged += 1,
                Err(e) => {
                    tracing::warn!(plugin = %file.display(), "not loaded: {e}");
                    report.errors.push((file, e));
                }
            }
        }
        report
    }

    /// Loads one file if it is new or changed (`None`: unchanged).
    fn load(&self, file: &Path) -> Result<Option<Arc<Plugin>>, String> {
        let real = fs::canonicalize(file).map_err(|e| e.to_string())?;
        if real.parent() != Some(self.dir.as_path()) {
            return Err(format!(
                "it resolves to {}, outside the plugin directory {}; only files inside it are loaded",
                real.display(),
                self.dir.display()
            ));
        }
        let bytes = fs::read(&real).map_err(|e| format!("cannot read it: {e}"))?;
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Some(p) = self.loaded.lock().expect("plugins lock").get(file)
            && p.sha256 == sha256
        {
            return Ok(None);
        }
        let ext = real.extension().and_then(|e| e.to_str()).unwrap_or("so");
        let copy = self.cache.join(format!("{sha256}.{ext}"));
        if !copy.exists() {
            let partial = self
                .cache
                .join(format!("{sha256}.{}.partial", std::process::id()));
            fs::write(&partial, &bytes)
                .and_then(|()| fs::rename(&partial, &copy))
                .map_err(|e| format!("cannot copy it to {}: {e}", copy.display()))?;
        }
        let plugin = Plugin::load(file, &copy, sha256)?;
        self.loaded
            .lock()
            .expect("plugins lock")
            .insert(file.to_path_buf(), plugin.clone());
        tracing::info!(
            plugin = %file.display(),
            functions = plugin.functions().len(),
            "loaded UDF plugin {} {}",
            plugin.manifest.plugin.name,
            plugin.manifest.plugin.version
        );
        Ok(Some(plugin))
    }
}
