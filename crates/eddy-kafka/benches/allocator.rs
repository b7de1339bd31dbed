//! The allocator the server and the shell use (mimalloc), so that benchmarks measure what they run.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
