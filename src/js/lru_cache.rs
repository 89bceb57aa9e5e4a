//! Coming: the napi glue of this primitive (see its issue).
