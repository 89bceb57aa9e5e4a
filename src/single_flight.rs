//! Coming: the plain-Rust core of this primitive (see its issue).
