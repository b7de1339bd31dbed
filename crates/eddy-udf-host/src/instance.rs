//! Instances of a plugin function, created on first use with the function's configuration and kept
//! for reuse: each concurrent caller takes one from the pool and puts it back (a failed call drops it,
//! so a function that panicked starts the next batch from a fresh instance).

use std::ffi::CString;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::ArrayRef;
use serde_json::Value;

use crate::api::{CallError, Handle, export};
use crate::plugin::Plugin;

/// A pool of instances of one manifest entry.
#[derive(Debug)]
pub struct Pool {
    plugin: Arc<Plugin>,
    index: u32,
    config: CString,
    idle: Mutex<Vec<Handle>>,
}

impl Pool {
    pub fn new(plugin: Arc<Plugin>, index: u32, config: &Value) -> Self {
        Pool {
            plugin,
            index,
            config: CString::new(config.to_string()).expect("JSON has no NUL bytes"),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Creates an instance, with `constants` (one-row arrays) for an aggregate.
    pub fn create(&self, constants: &[ArrayRef]) -> Result<Handle, CallError> {
        let api = &self.plugin.api;
        let (mut array, schema) = export(constants, 1).map_err(|message| CallError { message })?;
        let mut ptr = std::ptr::null_mut();
        let status = unsafe {
            (api.create)(
                self.index,
                self.config.as_ptr(),
                &mut array,
                &schema,
                &mut ptr,
            )
        };
        api.check(status)?;
        Ok(Handle::new(ptr, api.destroy))
    }

    /// Runs `f` with an idle instance (or a new one); the instance goes back to the pool if `f`
    /// succeeded.
    pub fn with<T>(&self, f: impl FnOnce(&Handle) -> Result<T, CallError>) -> Result<T, CallError> {
        let idle = self.idle.lock().expect("pool lock").pop();
        let instance = match idle {
            Some(i) => i,
            None => self.create(&[])?,
        };
        let result = f(&instance);
        if result.is_ok() {
            self.idle.lock().expect("pool lock").push(instance);
        }
        result
    }
}
