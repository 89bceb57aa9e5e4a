//! Coming: the process-wide (named) cache store, shared by every worker_thread.
