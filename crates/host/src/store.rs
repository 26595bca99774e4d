//! The host's store: re-exported from `conclave-store`, which holds the
//! SQLite backend (one host) and the PostgreSQL backend (several hosts).
pub use conclave_store::*;
