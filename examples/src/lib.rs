//! Sample enclaves, each with the client side of its protocol.
//!
//! - [`reverse`]: answers each mail with its body reversed.
//!
//! They are built and run by the tests and by `conclave demo`.
#![deny(missing_docs)]

pub mod reverse;
