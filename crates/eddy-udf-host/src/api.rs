//! A loaded library's entry points, looked up once, and the calls across the boundary: batches
//! exported as struct arrays, results imported and validated before anything reads them.

use std::ffi::{CStr, c_void};

use datafusion::arrow::array::{Array, ArrayRef, StructArray, make_array};
use datafusion::arrow::datatypes::{Field, Fields};
use eddy_udf::abi::{
    self, AbiVersionFn, AccumulatorFn, CreateFn, DropFn, InvokeFn, LastErrorFn, ManifestFn,
    MetricsFn, OutputFn, UpdateFn, symbols,
};
use eddy_udf::arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use libloading::Library;

/// A failed call: the plugin's message (a panic's says so).
#[derive(Debug, Clone)]
pub struct CallError {
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One counter a plugin keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSample {
    pub name: String,
    pub help: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl PluginSample {
    /// A sample as the plugin writes it; names and label names that Prometheus would refuse are
    /// dropped.
    fn from_json(v: &serde_json::Value) -> Option<PluginSample> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        let name = v["name"].as_str().filter(|n| valid(n))?.to_string();
        let labels = v["labels"]
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())).filter(|(k, _)| valid(k)))
            .collect::<Option<Vec<_>>>()?;
        Some(PluginSample {
            name,
            help: v["help"].as_str().unwrap_or_default().to_string(),
            labels,
            value: v["value"].as_f64()?,
        })
    }
}

/// The entry points of ABI v1. The library they come from is never unloaded, so they stay valid.
#[derive(Debug)]
pub struct Api {
    pub manifest: ManifestFn,
    last_error: LastErrorFn,
    pub create: CreateFn,
    pub destroy: DropFn,
    pub invoke: InvokeFn,
    pub accumulator: AccumulatorFn,
    pub update: UpdateFn,
    pub retract: UpdateFn,
    pub merge: UpdateFn,
    pub state: OutputFn,
    pub evaluate: OutputFn,
    pub drop_accumulator: DropFn,
    /// Optional: plugins built before it lack it.
    metrics: Option<MetricsFn>,
}

/// Looks up a symbol as a function pointer of type `T`.
///
/// # Safety
/// The symbol must have type `T`; the library must never be unloaded.
unsafe fn symbol<T: Copy>(lib: &Library, name: &[u8]) -> Result<T, String> {
    unsafe { lib.get::<T>(name) }.map(|s| *s).map_err(|e| {
        format!(
            "it does not export {} ({e}); is it an Eddy UDF plugin built with eddy_udf::plugin!?",
            String::from_utf8_lossy(&name[..name.len() - 1])
        )
    })
}

impl Api {
    /// Checks the ABI version, then looks up the entry points.
    ///
    /// # Safety
    /// The library must be an Eddy plugin (exporting these symbols with these types), and must never
    /// be unloaded.
    pub unsafe fn of(lib: &Library) -> Result<Api, String> {
        let version: AbiVersionFn = unsafe { symbol(lib, symbols::ABI_VERSION) }?;
        let version = unsafe { version() };
        if version != abi::ABI_VERSION {
            return Err(format!(
                "it speaks UDF ABI version {version}, this server speaks version {}: rebuild it against an eddy-udf with ABI version {}",
                abi::ABI_VERSION,
                abi::ABI_VERSION
            ));
        }
        unsafe {
            Ok(Api {
                manifest: symbol(lib, symbols::MANIFEST)?,
                last_error: symbol(lib, symbols::LAST_ERROR)?,
                create: symbol(lib, symbols::CREATE)?,
                destroy: symbol(lib, symbols::DESTROY)?,
                invoke: symbol(lib, symbols::INVOKE)?,
                accumulator: symbol(lib, symbols::ACCUMULATOR)?,
                update: symbol(lib, symbols::UPDATE)?,
                retract: symbol(lib, symbols::RETRACT)?,
                merge: symbol(lib, symbols::MERGE)?,
                state: symbol(lib, symbols::STATE)?,
                evaluate: symbol(lib, symbols::EVALUATE)?,
                drop_accumulator: symbol(lib, symbols::DROP_ACCUMULATOR)?,
                metrics: symbol(lib, symbols::METRICS).ok(),
            })
        }
    }

    /// The plugin's counters (`eddy_udf::metrics`): none when it keeps none or cannot say.
    pub fn metrics(&self) -> Vec<PluginSample> {
        let Some(metrics) = self.metrics else {
            return Vec::new();
        };
        let text = unsafe { metrics() };
        if text.is_null() {
            return Vec::new();
        }
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        let Ok(serde_json::Value::Array(samples)) = serde_json::from_str(&text) else {
            return Vec::new();
        };
        samples.iter().filter_map(PluginSample::from_json).collect()
    }

    /// Turns a call's status into a result, with the plugin's message on failure.
    pub fn check(&self, status: i32) -> Result<(), CallError> {
        if status == abi::OK {
            return Ok(());
        }
        let text = unsafe { (self.last_error)() };
        let message = if text.is_null() {
            "the function failed without a message".to_string()
        } else {
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        Err(CallError { message })
    }

    /// Calls a function of the plugin that writes one array into `out`, and imports it.
    pub fn output(
        &self,
        call: impl FnOnce(*mut FFI_ArrowArray, *mut FFI_ArrowSchema) -> i32,
    ) -> Result<ArrayRef, CallError> {
        let mut out = FFI_ArrowArray::empty();
        let mut out_schema = FFI_ArrowSchema::empty();
        self.check(call(&mut out, &mut out_schema))?;
        import(out, &out_schema).map_err(|message| CallError { message })
    }
}

/// A batch of columns as one struct array in C Data Interface structs.
pub fn export(
    columns: &[ArrayRef],
    rows: usize,
) -> Result<(FFI_ArrowArray, FFI_ArrowSchema), String> {
    let batch = if columns.is_empty() {
        StructArray::new_empty_fields(rows, None)
    } else {
        let fields: Fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        StructArray::try_new(fields, columns.to_vec(), None).map_err(|e| e.to_string())?
    };
    to_ffi(&batch.to_data()).map_err(|e| e.to_string())
}

/// Imports an array a plugin returned, checking all of it (offsets, UTF-8, buffer sizes) before use.
fn import(array: FFI_ArrowArray, schema: &FFI_ArrowSchema) -> Result<ArrayRef, String> {
    if array.is_released() {
        return Err("the plugin returned no array".into());
    }
    let data = unsafe { from_ffi(array, schema) }
        .map_err(|e| format!("the plugin returned an array Arrow cannot read: {e}"))?;
    data.validate_full()
        .map_err(|e| format!("the plugin returned an invalid array: {e}"))?;
    Ok(make_array(data))
}

/// The columns of a struct array a plugin returned.
pub fn columns(array: &ArrayRef) -> Result<Vec<ArrayRef>, String> {
    array
        .as_any()
        .downcast_ref::<StructArray>()
        .map(|s| s.columns().to_vec())
        .ok_or_else(|| {
            format!(
                "expected a struct array of states, got {}",
                array.data_type()
            )
        })
}

/// A raw instance or accumulator pointer, destroyed with the given function when dropped.
#[derive(Debug)]
pub struct Handle {
    pub ptr: *mut c_void,
    drop: DropFn,
}

// The ABI lets an instance or accumulator move between threads (one thread at a time uses it).
unsafe impl Send for Handle {}
// Shared references never call into the plugin except for aggregate instances, which the ABI lets
// threads share.
unsafe impl Sync for Handle {}

impl Handle {
    pub fn new(ptr: *mut c_void, drop: DropFn) -> Self {
        Handle { ptr, drop }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { (self.drop)(self.ptr) };
    }
}
