//! ABI v1: the symbols a plugin exports and their C signatures. Stability rules: `eddy_udf_abi_version`
//! never changes; the host refuses a plugin whose version differs from its own and loads the rest. Within
//! a version the signatures below are fixed; an addition that old plugins lack is a new optional symbol,
//! anything else a new version.
//!
//! Conventions, for every entry point:
//! - Each returns a status ([`OK`], [`ERROR`], [`PANICKED`]); on failure `eddy_udf_last_error` returns a
//!   NUL-terminated message, valid until the next call on the same thread. Panics never cross: each entry
//!   point is `extern "C-unwind"` and catches them.
//! - Data crosses as Arrow C Data Interface structs. A batch of arguments is one struct array whose
//!   children are the argument columns (its length is the row count). Inputs are moved: the callee
//!   takes the `FFI_ArrowArray` out (leaving a released struct), the caller keeps the schema. Outputs are
//!   written into empty structs the caller provides, and the caller owns them after a success.
//! - Instances (`eddy_udf_create`) are used by one thread at a time; accumulators likewise. Aggregate
//!   instances make accumulators and may be shared between threads.
//! - A plugin is never unloaded; strings it returns from `eddy_udf_manifest` live as long as it does.

use std::ffi::{c_char, c_void};

pub use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};

/// The ABI version this SDK implements.
pub const ABI_VERSION: u32 = 1;

/// The call succeeded.
pub const OK: i32 = 0;
/// The function failed; `eddy_udf_last_error` says why.
pub const ERROR: i32 = 1;
/// The function panicked; `eddy_udf_last_error` has the panic message.
pub const PANICKED: i32 = 2;

/// `eddy_udf_abi_version`: looked up and called first.
pub type AbiVersionFn = unsafe extern "C-unwind" fn() -> u32;
/// `eddy_udf_manifest`: the JSON manifest.
pub type ManifestFn = unsafe extern "C-unwind" fn() -> *const c_char;
/// `eddy_udf_last_error`: the message of this thread's last failed call.
pub type LastErrorFn = unsafe extern "C-unwind" fn() -> *const c_char;
/// `eddy_udf_create(function, config_json, constants, constants_schema, out_instance)`: an instance of
/// manifest entry `function`; `constants` is a one-row struct array of an aggregate's constant arguments,
/// or, for the instance a scalar or table function gets while a query is planned, of all the call's
/// arguments (NULL where not a literal); no children otherwise.
pub type CreateFn = unsafe extern "C-unwind" fn(
    u32,
    *const c_char,
    *mut FFI_ArrowArray,
    *const FFI_ArrowSchema,
    *mut *mut c_void,
) -> i32;
/// `eddy_udf_destroy(instance)` and `eddy_udf_drop_accumulator(accumulator)`.
pub type DropFn = unsafe extern "C-unwind" fn(*mut c_void);
/// `eddy_udf_invoke(instance, args, args_schema, out, out_schema)` (scalar and table functions; a table
/// function returns a list per row).
pub type InvokeFn = unsafe extern "C-unwind" fn(
    *mut c_void,
    *mut FFI_ArrowArray,
    *const FFI_ArrowSchema,
    *mut FFI_ArrowArray,
    *mut FFI_ArrowSchema,
) -> i32;
/// `eddy_udf_update`, `eddy_udf_retract` and `eddy_udf_merge(accumulator, args, args_schema)`: rows of
/// arguments (or of states, for merge) folded into an accumulator.
pub type UpdateFn =
    unsafe extern "C-unwind" fn(*mut c_void, *mut FFI_ArrowArray, *const FFI_ArrowSchema) -> i32;
/// `eddy_udf_metrics` (optional: plugins built before it lack it): the plugin's counters as a
/// NUL-terminated JSON list (`eddy_udf::metrics`), valid until the next call on the same thread.
pub type MetricsFn = unsafe extern "C-unwind" fn() -> *const c_char;
/// `eddy_udf_accumulator(instance, out_accumulator)`: a fresh accumulator of an aggregate instance.
pub type AccumulatorFn = unsafe extern "C-unwind" fn(*mut c_void, *mut *mut c_void) -> i32;
/// `eddy_udf_state` and `eddy_udf_evaluate(accumulator, out, out_schema)`: a one-row struct array of
/// the state columns, or a one-row array of the result.
pub type OutputFn =
    unsafe extern "C-unwind" fn(*mut c_void, *mut FFI_ArrowArray, *mut FFI_ArrowSchema) -> i32;

/// Symbol names, NUL-terminated for `dlsym`.
pub mod symbols {
    pub const ABI_VERSION: &[u8] = b"eddy_udf_abi_version\0";
    pub const MANIFEST: &[u8] = b"eddy_udf_manifest\0";
    pub const LAST_ERROR: &[u8] = b"eddy_udf_last_error\0";
    pub const CREATE: &[u8] = b"eddy_udf_create\0";
    pub const DESTROY: &[u8] = b"eddy_udf_destroy\0";
    pub const INVOKE: &[u8] = b"eddy_udf_invoke\0";
    pub const ACCUMULATOR: &[u8] = b"eddy_udf_accumulator\0";
    pub const UPDATE: &[u8] = b"eddy_udf_update\0";
    pub const RETRACT: &[u8] = b"eddy_udf_retract\0";
    pub const MERGE: &[u8] = b"eddy_udf_merge\0";
    pub const STATE: &[u8] = b"eddy_udf_state\0";
    pub const EVALUATE: &[u8] = b"eddy_udf_evaluate\0";
    pub const DROP_ACCUMULATOR: &[u8] = b"eddy_udf_drop_accumulator\0";
    /// Optional.
    pub const METRICS: &[u8] = b"eddy_udf_metrics\0";
}

/// An opaque instance or accumulator pointer.
pub type Handle = *mut c_void;
