//! The napi-rs glue: one file per exported class or group of functions.
//! Nothing here holds state of its own beyond handles on the cores.

mod boundary;
mod errors;
mod guard;
mod limiter;
mod lru_cache;
mod named_counter;
mod pool;
mod raw;
mod redis;
mod shared_cache;
mod single_flight;
