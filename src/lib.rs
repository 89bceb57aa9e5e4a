//! bulkhead: leak-safe async primitives for Node.js.
//!
//! The crate is two layers. The plain-Rust cores (`clock`, `error`,
//! `registry`, and one module per primitive as they land) have no Node types
//! and are tested with `cargo test --no-default-features`. The `js` module is
//! the napi-rs glue, compiled only with the default `napi` feature.
#![deny(clippy::all)]

pub mod cache;
pub mod clock;
pub mod error;
pub mod limiter;
pub mod pool;
pub mod redis_hub;
pub mod registry;
pub mod shared_cache;
pub mod single_flight;

// The glue registers itself with Node at load time; a `cargo test` binary
// never loads into Node, so the glue is left out of test builds.
#[cfg(all(feature = "napi", not(test)))]
mod js;
