//! A UDF plugin for Eddy. Build with `cargo build --release`, copy `target/release/lib<name>.so` into
//! the server's plugin directory, then run `RELOAD FUNCTIONS;`.

use eddy_udf::prelude::*;

/// Repeats a string `times` times (a NULL argument gives NULL).
#[udf]
fn repeat_text(text: &str, times: i32) -> String {
    text.repeat(times.max(0) as usize)
}

eddy_udf::plugin!(repeat_text);
