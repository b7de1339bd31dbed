//! The Eddy UDF SDK: all a plugin crate depends on. A plugin is a `cdylib` whose functions are
//! plain Rust functions or types marked with [`udf`], [`udaf`] or [`udtf`], exported with [`plugin!`];
//! the host loads it at run time and talks to it through the C ABI in [`abi`], passing Arrow arrays
//! over the Arrow C Data Interface, one call per batch.
//!
//! ```ignore
//! use eddy_udf::prelude::*;
//!
//! /// Distance between two points on Earth, in kilometres.
//! #[udf]
//! fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 { /* ... */ }
//!
//! eddy_udf::plugin!(haversine_km);
//! ```

pub mod abi;
mod error;
pub mod export;
mod function;
pub mod manifest;
pub mod metrics;
mod value;

pub use arrow_array;
pub use arrow_buffer;
pub use arrow_schema;
pub use eddy_udf_macros::{udaf, udf, udtf};
pub use error::{Error, Result};
pub use function::{Accumulator, AccumulatorFactory, BatchFunction, FromConstants, Options};
pub use manifest::{Create, FunctionDef, Kind, Manifest, Param, PluginInfo};
pub use serde_json;
pub use value::{Arg, Ret, Variadic};

/// What a plugin's source usually needs in scope.
pub mod prelude {
    pub use crate::arrow_array::{Array, ArrayRef};
    pub use crate::{
        Accumulator, AccumulatorFactory, BatchFunction, Error, FromConstants, Options, Result,
        Variadic, udaf, udf, udtf,
    };
}
