//! The `reverse` sample enclave as a simulation-mode binary:
//! sign it with `conclave sign` and run it with `conclave host --enclave`.
conclave_enclave::main!(conclave_examples::reverse::ReverseEnclave);
