//! Coming: the napi glue of the named cache.
