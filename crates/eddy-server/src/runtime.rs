//! The Tokio runtime the server runs on. Its threads (the handlers' and the blocking pool's) get a
//! large stack: parsing and planning a statement recurse once per level of its nesting, and a
//! statement at the limits of `eddy_sql::limits` must be refused or planned, never overflow a stack
//! (which aborts the process). The stack is reserved address space; only what is used is memory.

/// Stack of every runtime thread.
pub const STACK_BYTES: usize = 64 << 20;

/// The multi-threaded runtime, with the I/O and time drivers and [`STACK_BYTES`] stacks.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(STACK_BYTES)
        .build()
}
