//! Sample enclaves, each with the client side of its protocol.
//!
//! - [`reverse`]: answers each mail with its body reversed.
//! - [`auction`]: a sealed-bid second-price auction; bidders learn only the winner and the price.
//! - [`stats`]: count, mean, minimum and maximum over numbers from at least three parties.
//! - [`psi`]: private set intersection of two parties; each learns only the common items.
//! - [`tally`]: running totals per party; the workload of the crash and failover harnesses.
//! - [`kds::WithKds`]: any of them, with its keys from a key derivation service.
//!
//! They are built and run by the tests and by `conclave demo`.
#![deny(missing_docs)]

pub mod auction;
pub mod kds;
mod message;
pub mod psi;
pub mod reverse;
pub mod stats;
pub mod tally;
