//! Fuzz targets for every reader of untrusted input: statements, record decoders in every format,
//! Confluent's framing, windowed keys, changelog records and REST request bodies. A target takes
//! arbitrary bytes; it may return errors, and panics only on a bug. `eddy-fuzz` runs them with
//! mutations on stable Rust; `tests/corpus.rs` replays the inputs kept in `fuzz/corpus/`.

mod mutate;
mod sources;
mod targets;

pub use mutate::Mutator;

/// The stack targets run on: that of the server's threads that parse and plan (its runtime's) — the
/// deepest statement the limits allow must fit in it, and so be fuzzed with it.
pub const STACK_BYTES: usize = 64 << 20;

/// Runs `f` on a thread with a [`STACK_BYTES`] stack.
pub fn on_server_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, f)
            .expect("a fuzzing thread")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
pub use targets::{TARGETS, Target, target};
