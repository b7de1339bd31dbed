//! The plugin side of the ABI: what the symbols [`plugin!`](crate::plugin) generates call. Each turns
//! raw pointers into Arrow arrays and Rust calls, catching panics and keeping the last error per
//! thread.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::{Array, ArrayRef, StructArray};
use arrow_schema::{Field, Fields};
use serde_json::Value;

use crate::abi::{ABI_VERSION, ERROR, OK, PANICKED};
use crate::function::{Accumulator, AccumulatorFactory, BatchFunction, Options};
use crate::manifest::{Create, FunctionDef, Manifest, PluginInfo};
use crate::{Error, Result};

/// A plugin's functions and its manifest, built once.
#[derive(Debug)]
pub struct Plugin {
    defs: Vec<FunctionDef>,
    manifest: CString,
}

impl Plugin {
    pub fn new(plugin: PluginInfo, defs: Vec<FunctionDef>) -> Self {
        // A panic's message goes back to the host (which logs it and applies the query's error
        // policy); the plugin's own copy of the standard library would also print it to stderr.
        std::panic::set_hook(Box::new(|_| {}));
        let manifest = Manifest {
            abi_version: ABI_VERSION,
            plugin,
            functions: defs.iter().map(|d| d.spec.clone()).collect(),
        };
        Plugin {
            defs,
            manifest: CString::new(manifest.to_json()).expect("JSON has no NUL bytes"),
        }
    }

    pub fn manifest(&self) -> *const c_char {
        self.manifest.as_ptr()
    }

    /// `eddy_udf_create`.
    ///
    /// # Safety
    /// The pointers follow the ABI's conventions (see [`crate::abi`]).
    pub unsafe fn create(
        &self,
        function: u32,
        config: *const c_char,
        constants: *mut FFI_ArrowArray,
        constants_schema: *const FFI_ArrowSchema,
        out: *mut *mut c_void,
    ) -> i32 {
        guard(|| {
            let def = self
                .defs
                .get(function as usize)
                .ok_or_else(|| Error(format!("the plugin has no function number {function}")))?;
            let config = if config.is_null() {
                Value::Null
            } else {
                let text = unsafe { CStr::from_ptr(config) }.to_string_lossy();
                serde_json::from_str(&text).map_err(|e| Error(format!("bad config JSON: {e}")))?
            };
            let (constants, _) = unsafe { import_batch(constants, constants_schema) }?;
            let options = Options { config, constants };
            let instance = match def.create {
                Create::Batch(f) => Instance::Batch(f(&options)?),
                Create::Aggregate(f) => Instance::Aggregate(f(&options)?),
            };
            unsafe { out.write(Box::into_raw(Box::new(instance)).cast()) };
            Ok(())
        })
    }
}

enum Instance {
    Batch(Box<dyn BatchFunction>),
    Aggregate(Box<dyn AccumulatorFactory>),
}

type BoxedAccumulator = Box<dyn Accumulator>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// `eddy_udf_last_error`.
pub fn last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', " ")).expect("NUL bytes replaced");
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// Runs an entry point's body: errors and panics become a status and the last error.
fn guard(f: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => OK,
        Ok(Err(e)) => {
            set_last_error(&e.0);
            ERROR
        }
        Err(panic) => {
            set_last_error(&format!(
                "the function panicked: {}",
                panic_message(&*panic)
            ));
            PANICKED
        }
    }
}

/// The message a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Counts the rows an aggregate's update or retract left out because they panicked (for generated
/// code): each row is applied whole or not at all, so the host never retries rows.
#[derive(Debug, Default)]
pub struct RowFailures {
    count: usize,
    first: Option<String>,
}

impl RowFailures {
    /// Runs one row's update, catching a panic.
    pub fn row(&mut self, f: impl FnOnce()) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
            self.count += 1;
            self.first.get_or_insert_with(|| {
                format!("the function panicked: {}", panic_message(&*panic))
            });
        }
    }

    /// An error if any row failed; the other rows were applied.
    pub fn finish(self, rows: usize) -> Result<()> {
        match self.first {
            None => Ok(()),
            Some(first) => Err(Error(format!(
                "{} of {rows} rows failed and were left out (the others were applied); the first: {first}",
                self.count
            ))),
        }
    }
}

/// Takes a batch (a struct array) out of the caller's structs: its columns and row count.
///
/// # Safety
/// `array` and `schema` are valid C Data Interface structs describing a struct array.
unsafe fn import_batch(
    array: *mut FFI_ArrowArray,
    schema: *const FFI_ArrowSchema,
) -> Result<(Vec<ArrayRef>, usize)> {
    let array = unsafe { std::ptr::replace(array, FFI_ArrowArray::empty()) };
    let data = unsafe { from_ffi(array, &*schema) }?;
    let batch = StructArray::from(data);
    let rows = batch.len();
    let (_, columns, _) = batch.into_parts();
    Ok((columns, rows))
}

/// Writes an array into the caller's empty structs.
///
/// # Safety
/// `out` and `out_schema` are writable.
unsafe fn export(
    array: &ArrayRef,
    out: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> Result<()> {
    let (a, s) = to_ffi(&array.to_data())?;
    unsafe {
        out.write(a);
        out_schema.write(s);
    }
    Ok(())
}

/// # Safety
/// `instance` came from [`Plugin::create`] and is not used again.
pub unsafe fn destroy(instance: *mut c_void) {
    guard(|| {
        drop(unsafe { Box::from_raw(instance.cast::<Instance>()) });
        Ok(())
    });
}

/// `eddy_udf_invoke`.
///
/// # Safety
/// See [`crate::abi`].
pub unsafe fn invoke(
    instance: *mut c_void,
    args: *mut FFI_ArrowArray,
    args_schema: *const FFI_ArrowSchema,
    out: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> i32 {
    guard(|| {
        let Instance::Batch(f) = (unsafe { &mut *instance.cast::<Instance>() }) else {
            return Err("eddy_udf_invoke called on an aggregate function".into());
        };
        let (columns, rows) = unsafe { import_batch(args, args_schema) }?;
        let result = f.invoke(&columns, rows)?;
        unsafe { export(&result, out, out_schema) }
    })
}

/// `eddy_udf_accumulator`.
///
/// # Safety
/// See [`crate::abi`].
pub unsafe fn accumulator(instance: *mut c_void, out: *mut *mut c_void) -> i32 {
    guard(|| {
        let Instance::Aggregate(f) = (unsafe { &*instance.cast::<Instance>() }) else {
            return Err("eddy_udf_accumulator called on a scalar or table function".into());
        };
        let acc: BoxedAccumulator = f.accumulator()?;
        unsafe { out.write(Box::into_raw(Box::new(acc)).cast()) };
        Ok(())
    })
}

/// # Safety
/// `acc` came from [`accumulator`] and is not used by another thread.
unsafe fn with_accumulator(
    acc: *mut c_void,
    f: impl FnOnce(&mut BoxedAccumulator) -> Result<()>,
) -> i32 {
    guard(|| f(unsafe { &mut *acc.cast::<BoxedAccumulator>() }))
}

/// Which rows an accumulator is given.
#[derive(Debug, Clone, Copy)]
pub enum Fold {
    Update,
    Retract,
    Merge,
}

/// `eddy_udf_update`, `eddy_udf_retract`, `eddy_udf_merge`.
///
/// # Safety
/// See [`crate::abi`].
pub unsafe fn fold(
    fold: Fold,
    acc: *mut c_void,
    args: *mut FFI_ArrowArray,
    args_schema: *const FFI_ArrowSchema,
) -> i32 {
    unsafe {
        with_accumulator(acc, |acc| {
            let (columns, rows) = import_batch(args, args_schema)?;
            match fold {
                Fold::Update => acc.update(&columns, rows),
                Fold::Retract => acc.retract(&columns, rows),
                Fold::Merge => acc.merge(&columns, rows),
            }
        })
    }
}

/// `eddy_udf_state`: the state columns as a one-row struct array.
///
/// # Safety
/// See [`crate::abi`].
pub unsafe fn state(
    acc: *mut c_void,
    out: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> i32 {
    unsafe {
        with_accumulator(acc, |acc| {
            let columns = acc.state()?;
            let fields: Fields = columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("s{i}"), c.data_type().clone(), true))
                .collect();
            let batch: ArrayRef = Arc::new(StructArray::try_new(fields, columns, None)?);
            export(&batch, out, out_schema)
        })
    }
}

/// `eddy_udf_evaluate`.
///
/// # Safety
/// See [`crate::abi`].
pub unsafe fn evaluate(
    acc: *mut c_void,
    out: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> i32 {
    unsafe { with_accumulator(acc, |acc| export(&acc.evaluate()?, out, out_schema)) }
}

/// # Safety
/// `acc` came from [`accumulator`] and is not used again.
pub unsafe fn drop_accumulator(acc: *mut c_void) {
    guard(|| {
        drop(unsafe { Box::from_raw(acc.cast::<BoxedAccumulator>()) });
        Ok(())
    });
}

/// Finishes a builder into an array (for generated code).
pub fn finish<B: arrow_array::builder::ArrayBuilder>(mut builder: B) -> ArrayRef {
    builder.finish()
}

/// Exports a plugin's functions: `plugin!(haversine_km, mean::Mean, split_to_rows)` names the items
/// marked `#[udf]`, `#[udaf]` or `#[udtf]` (paths are allowed). Generates the ABI's symbols; the
/// plugin's name, version, authors and description come from its `Cargo.toml`.
#[macro_export]
macro_rules! plugin {
    ($($($segment:ident)::+),* $(,)?) => {
        fn __eddy_udf_plugin() -> &'static $crate::export::Plugin {
            static PLUGIN: ::std::sync::OnceLock<$crate::export::Plugin> = ::std::sync::OnceLock::new();
            PLUGIN.get_or_init(|| {
                $crate::export::Plugin::new(
                    $crate::PluginInfo {
                        name: env!("CARGO_PKG_NAME").into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        authors: env!("CARGO_PKG_AUTHORS").into(),
                        description: env!("CARGO_PKG_DESCRIPTION").into(),
                    },
                    vec![$($($segment)::+::__eddy_udf_def()),*],
                )
            })
        }

        #[unsafe(no_mangle)]
        pub extern "C-unwind" fn eddy_udf_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C-unwind" fn eddy_udf_manifest() -> *const ::std::ffi::c_char {
            __eddy_udf_plugin().manifest()
        }

        #[unsafe(no_mangle)]
        pub extern "C-unwind" fn eddy_udf_last_error() -> *const ::std::ffi::c_char {
            $crate::export::last_error()
        }

        #[unsafe(no_mangle)]
        pub extern "C-unwind" fn eddy_udf_metrics() -> *const ::std::ffi::c_char {
            $crate::metrics::exported()
        }

        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn eddy_udf_create(
            function: u32,
            config: *const ::std::ffi::c_char,
            constants: *mut $crate::abi::FFI_ArrowArray,
            constants_schema: *const $crate::abi::FFI_ArrowSchema,
            out: *mut $crate::abi::Handle,
        ) -> i32 {
            unsafe { __eddy_udf_plugin().create(function, config, constants, constants_schema, out) }
        }

        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn eddy_udf_destroy(instance: $crate::abi::Handle) {
            unsafe { $crate::export::destroy(instance) }
        }

        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn eddy_udf_invoke(
            instance: $crate::abi::Handle,
            args: *mut $crate::abi::FFI_ArrowArray,
            args_schema: *const $crate::abi::FFI_ArrowSchema,
            out: *mut $crate::abi::FFI_ArrowArray,
            out_schema: *mut $crate::abi::FFI_ArrowSchema,
        ) -> i32 {
            unsafe { $crate::export::invoke(instance, args, args_schema, out, out_schema) }
        }

        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn eddy_udf_accumulator(
            instance: $crate::abi::Handle,
            out: *mut $crate::abi::Handle,
        ) -> i32 {
            unsafe { $crate::export::accumulator(instance, out) }
        }

        $crate::__fold_symbol!(eddy_udf_update, Update);
        $crate::__fold_symbol!(eddy_udf_retract, Retract);
        $crate::__fold_symbol!(eddy_udf_merge, Merge);
        $crate::__output_symbol!(eddy_udf_state, state);
        $crate::__output_symbol!(eddy_udf_evaluate, evaluate);

        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn eddy_udf_drop_accumulator(acc: $crate::abi::Handle) {
            unsafe { $crate::export::drop_accumulator(acc) }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __fold_symbol {
    ($symbol:ident, $fold:ident) => {
        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $symbol(
            acc: $crate::abi::Handle,
            args: *mut $crate::abi::FFI_ArrowArray,
            args_schema: *const $crate::abi::FFI_ArrowSchema,
        ) -> i32 {
            unsafe { $crate::export::fold($crate::export::Fold::$fold, acc, args, args_schema) }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __output_symbol {
    ($symbol:ident, $f:ident) => {
        /// # Safety
        /// See the ABI's conventions.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $symbol(
            acc: $crate::abi::Handle,
            out: *mut $crate::abi::FFI_ArrowArray,
            out_schema: *mut $crate::abi::FFI_ArrowSchema,
        ) -> i32 {
            unsafe { $crate::export::$f(acc, out, out_schema) }
        }
    };
}

/// The element type of an `ARRAY<T>` SQL type (a table function's rows).
pub fn element_type(sql_type: &str) -> String {
    sql_type
        .strip_prefix("ARRAY<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(sql_type)
        .to_string()
}

/// Checks that a function received the number of arguments its signature has (for generated code).
pub fn check_arity(args: &[ArrayRef], expected: usize, variadic: bool) -> Result<()> {
    if args.len() == expected || (variadic && args.len() >= expected) {
        Ok(())
    } else {
        Err(Error(format!(
            "expected {}{expected} arguments, got {}",
            if variadic { "at least " } else { "" },
            args.len()
        )))
    }
}
