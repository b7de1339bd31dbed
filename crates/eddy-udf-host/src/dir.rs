//! The plugin directory: every shared library directly inside it is loaded at start and again by
//! `RELOAD FUNCTIONS` when its contents changed. A library is loaded from a private copy named by its
//! SHA-256, so a changed file is a new library (the old one stays loaded for the queries using it) and
//! replacing a file never changes code that is running. The copies live in a cache only the server's
//! user may enter (mode 0700: the server's data directory, or a fresh directory of the process's
//! own), and a copy found there is loaded only when its bytes still hash to its name.

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
    /// The cache was made for this value alone, and goes with it.
    own_cache: bool,
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

impl Drop for PluginDir {
    /// A cache of its own is removed (libraries loaded from it stay mapped).
    fn drop(&mut self) {
        if self.own_cache {
            let _ = fs::remove_dir_all(&self.cache);
        }
    }
}

/// The SHA-256 of `bytes` in lower-case hex.
fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes `path` a directory only the current user may enter (mode 0700); `fresh`: it must not exist
/// yet (so that nobody else made it).
fn private_dir(path: &Path, fresh: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o700).recursive(!fresh);
        builder.create(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        if fresh {
            fs::create_dir(path)
        } else {
            fs::create_dir_all(path)
        }
    }
}

/// Whether a file name is a shared library's.
fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    )
}

impl PluginDir {
    /// A plugin directory, which must exist, with its copies in a fresh directory of this process's
    /// own under the system's temporary directory. Nothing is loaded until [`PluginDir::reload`].
    pub fn new(dir: &Path) -> Result<PluginDir, String> {
        let temp = std::env::temp_dir();
        let cache = (0..100)
            .map(|n| temp.join(format!("eddy-plugins-{}-{n}", std::process::id())))
            .find(|c| private_dir(c, true).is_ok())
            .ok_or_else(|| format!("cannot create a plugin cache in {}", temp.display()))?;
        let mut plugins = PluginDir::with_cache(dir, &cache);
        match &mut plugins {
            Ok(p) => p.own_cache = true,
            Err(_) => {
                let _ = fs::remove_dir(&cache);
            }
        }
        plugins
    }

    /// A plugin directory, which must exist, with its copies in `cache` (created, or made private
    /// to the server's user: mode 0700).
    pub fn with_cache(dir: &Path, cache: &Path) -> Result<PluginDir, String> {
        let dir = fs::canonicalize(dir)
            .map_err(|e| format!("the plugin directory {} cannot be used: {e}", dir.display()))?;
        private_dir(cache, false)
            .map_err(|e| format!("cannot use {} as the plugin cache: {e}", cache.display()))?;
        Ok(PluginDir {
            dir,
            cache: cache.to_path_buf(),
            own_cache: false,
            loaded: Mutex::new(BTreeMap::new()),
        })
    }

    /// Where the copies are loaded from.
    pub fn cache(&self) -> &Path {
        &self.cache
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
        let sha256 = hex_sha256(&bytes);
        if let Some(p) = self.loaded.lock().expect("plugins lock").get(file)
            && p.sha256 == sha256
        {
            return Ok(None);
        }
        let ext = real.extension().and_then(|e| e.to_str()).unwrap_or("so");
        let copy = self.cache.join(format!("{sha256}.{ext}"));
        // A copy already there is used only if it is what its name says (it may be left from an
        // earlier run, or changed since).
        let intact = fs::read(&copy).is_ok_and(|cached| hex_sha256(&cached) == sha256);
        if !intact {
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
