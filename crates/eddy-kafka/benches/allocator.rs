//! The server's allocator (mimalloc, as `eddy-server` links it), so that the benchmarks that run
//! the engine in this process measure what the server does.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
