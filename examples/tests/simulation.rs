//! The `reverse` sample built as an enclave binary, signed, and run in
//! simulation mode: the path a developer takes before hardware.

use std::path::Path;

use conclave_client::EnclaveClient;
use conclave_core::{EnclaveConstraint, EnclaveMode};
use conclave_host::{
    EnclaveHost, HostService, LocalRelayHandle, ServiceConfig, simulation::measure, store::SqliteStore,
};
use conclave_test_support::signed_copy;

#[test]
fn reverse_runs_as_a_signed_sandboxed_process() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, key) = signed_copy(Path::new(env!("CARGO_BIN_EXE_reverse-enclave")), dir.path(), 1, 0);
    let host = EnclaveHost::load(&binary, dir.path()).unwrap();
    let service = HostService::new(host, SqliteStore::open_in_memory().unwrap(), ServiceConfig::new([1; 32])).unwrap();
    let relay = LocalRelayHandle::new(service);

    let signer = conclave_core::signature::code_hash(key.verifying_key().as_bytes());
    let constraint =
        format!("C:{} S:{} PROD:1 SEC:INSECURE", hex::encode(measure(&binary).unwrap()), hex::encode(signer));
    let mut client = EnclaveClient::new(relay, EnclaveConstraint::parse(&constraint).unwrap());
    assert_eq!(client.start().unwrap().mode, EnclaveMode::Simulation);
    let reply = client.send_mail("demo", b"stressed").unwrap().unwrap();
    assert_eq!(reply.body, b"desserts");
}
