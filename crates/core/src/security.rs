//! The security summary of a verified enclave, shared with the hardware
//! verifiers of `conclave-attestation`.

pub use conclave_attestation::SecuritySummary;
