//! The runtime's integration tests, in one binary (one link of the engine instead of one per file).

mod common;
mod join_restore;
mod joins;
mod per_commit;
mod pull;
mod reload;
mod restore;
mod topics;
