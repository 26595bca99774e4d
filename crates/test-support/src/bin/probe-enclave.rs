//! The probe enclave as a simulation-mode binary.
conclave_enclave::main!(conclave_test_support::ProbeEnclave);
