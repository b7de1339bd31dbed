//! The host side of Eddy's UDF plugins: loading shared libraries from the plugin directory
//! ([`PluginDir`]), checking their ABI version and manifest, and adapting their functions to
//! DataFusion's `ScalarUDFImpl` and `AggregateUDFImpl` so they work wherever an expression does.

mod aggregate;
mod api;
mod call_stats;
mod dir;
mod instance;
mod plugin;
mod probe;
mod scalar;
mod signature;

pub use api::PluginSample;
pub use call_stats::{CallSnapshot, CallStats};
pub use dir::{PluginDir, Reload};
pub use plugin::{Function, Plugin};
pub use signature::Overload;
