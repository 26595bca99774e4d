//! Simulation mode end to end: a signed enclave binary runs as a separate,
//! sandboxed process; its state survives restarts and crashes; rollback is
//! reported; the sandbox stops file and network access.

use std::path::{Path, PathBuf};

use conclave_client::{ClientError, EnclaveClient};
use conclave_core::{ConstraintError, EnclaveConstraint, EnclaveMode, MailRelay, SecuritySummary};
use conclave_host::{
    EnclaveHost, HostError, HostService, LocalRelayHandle, ServiceConfig,
    simulation::{SignedEnclave, SimulationError, measure},
    store::SqliteStore,
};
use conclave_test_support::{sign, signed_copy};
use tempfile::TempDir;

const PROBE: &str = env!("CARGO_BIN_EXE_probe-enclave");
const WRONG_VERSION: &str = env!("CARGO_BIN_EXE_wrong-version-enclave");

struct Setup {
    dir: TempDir,
    binary: PathBuf,
    signer: [u8; 32],
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (binary, key) = signed_copy(Path::new(PROBE), dir.path(), 1, 0);
    let signer = conclave_core::signature::code_hash(key.verifying_key().as_bytes());
    std::fs::create_dir(dir.path().join("data")).unwrap();
    Setup { dir, binary, signer }
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn service(&self) -> HostService {
        let host = EnclaveHost::load(&self.binary, &self.data()).unwrap();
        let store = SqliteStore::open(&self.data().join("host.db")).unwrap();
        let secret =
            conclave_host::simulation::load_or_create_secret(&self.data().join("platform.secret"), || vec![7u8; 32])
                .unwrap();
        HostService::new(host, store, ServiceConfig::new(secret.try_into().unwrap())).unwrap()
    }

    fn constraint(&self, extra: &str) -> EnclaveConstraint {
        let code = hex::encode(measure(&self.binary).unwrap());
        EnclaveConstraint::parse(&format!("C:{code} {extra}")).unwrap()
    }

    fn client(&self, relay: &LocalRelayHandle) -> EnclaveClient<LocalRelayHandle> {
        let mut client = EnclaveClient::new(relay.clone(), self.constraint("SEC:INSECURE"));
        client.start().unwrap();
        client
    }
}

fn text(reply: Option<conclave_client::EnclaveReply>) -> String {
    String::from_utf8(reply.expect("a reply").body).unwrap()
}

#[test]
fn attestation_is_simulation_and_insecure() {
    let s = setup();
    let relay = LocalRelayHandle::new(s.service());
    let mut client = EnclaveClient::new(relay.clone(), s.constraint("SEC:INSECURE"));
    let info = client.start().unwrap().clone();
    assert_eq!(info.mode, EnclaveMode::Simulation);
    assert_eq!(info.identity.security, SecuritySummary::Insecure);
    assert!(info.identity.security_reason.contains("simulated attestation key"), "{}", info.identity.security_reason);
    assert_eq!(info.identity.signer.as_deref(), Some(&s.signer[..]));
    assert_eq!(info.identity.product_id, Some(1));

    // The default SEC:STALE refuses it, and says why.
    let mut strict = EnclaveClient::new(relay.clone(), s.constraint(""));
    let err = strict.start().unwrap_err();
    assert!(matches!(err, ClientError::Constraint(ConstraintError::NotSatisfied(_))), "{err}");
    assert!(err.to_string().contains("SEC:STALE") && err.to_string().contains("simulation"), "{err}");

    // The right signer and product are accepted; another signer is refused.
    let by_signer = format!("S:{} PROD:1 SEC:INSECURE", hex::encode(s.signer));
    EnclaveClient::new(relay.clone(), EnclaveConstraint::parse(&by_signer).unwrap()).start().unwrap();
    let other = format!("S:{} PROD:1 SEC:INSECURE", hex::encode([9u8; 32]));
    let err = EnclaveClient::new(relay, EnclaveConstraint::parse(&other).unwrap()).start().unwrap_err();
    assert!(err.to_string().contains("accepted signers"), "{err}");
}

#[test]
fn mail_round_trip_through_the_process() {
    let s = setup();
    let relay = LocalRelayHandle::new(s.service());
    assert!(relay.lock().host_mut().enclave_pid().is_some());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"hello").unwrap()), "hello");
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "1");
    // The host saw only ciphertext.
    let traffic = relay.lock().traffic().to_vec();
    assert_eq!(traffic.len(), 4);
}

#[test]
fn the_counter_survives_a_host_restart() {
    let s = setup();
    {
        let relay = LocalRelayHandle::new(s.service());
        let mut client = s.client(&relay);
        for expected in 1..=3 {
            assert_eq!(text(client.send_mail("t", b"count").unwrap()), expected.to_string());
        }
    } // the host shuts down: enclave stopped, store closed
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "4");
}

#[test]
fn a_failed_call_commits_nothing() {
    let s = setup();
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "1");
    // The refusal is the enclave's own (encrypted to the sender); the change the call made is undone.
    let err = client.send_mail("t", b"fail").unwrap_err();
    assert!(matches!(&err, ClientError::Refused { message, .. } if message == "asked to fail"), "{err:?}");
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "2");
}

#[test]
fn sigkill_of_the_enclave_loses_no_committed_state() {
    let s = setup();
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "1");
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "2");
    let old_key = client.enclave_info().unwrap().encryption_key;

    let pid = relay.lock().host_mut().enclave_pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();

    // The next mail fails clearly; the host restarts the enclave from the last
    // committed batch; the client re-attests (new keys) and retries.
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "3");
    assert_ne!(client.enclave_info().unwrap().encryption_key, old_key);
    assert_eq!(relay.lock().restarts(), 1);
}

#[test]
fn a_crash_is_reported_with_how_the_process_ended() {
    let s = setup();
    let mut service = s.service();
    let err = service.call_enclave(b"crash").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, HostError::Simulation(SimulationError::Crashed { .. })), "{err:?}");
    assert!(message.contains("SIGABRT"), "{message}");
    // The service restarted it, and it answers again.
    assert_eq!(service.call_enclave(b"count").unwrap().unwrap(), b"0");
}

#[test]
fn mail_to_self_is_replayed_in_order_at_start() {
    let s = setup();
    {
        let relay = LocalRelayHandle::new(s.service());
        let mut client = s.client(&relay);
        for note in ["first", "second", "third"] {
            assert_eq!(text(client.send_mail("t", format!("note:{note}").as_bytes()).unwrap()), "ok");
        }
        assert_eq!(text(client.send_mail("t", b"replayed").unwrap()), "");
    }
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"replayed").unwrap()), "first,second,third");
    // Once absorbed, the enclave deletes them: the next start sees none.
    assert_eq!(text(client.send_mail("t", b"forget").unwrap()), "ok");
    drop(client);
    drop(relay);
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"replayed").unwrap()), "");
}

#[test]
fn an_older_sealed_state_is_reported_as_a_rollback() {
    let s = setup();
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "1");
    let old_state = relay.lock().store_mut().sealed_state().unwrap().unwrap();
    let old_counter = relay.lock().store_mut().state_counter().unwrap();
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "2");
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "3");

    // The host's operator puts the older state back and restarts the enclave.
    {
        let mut service = relay.lock();
        service.store_mut().replace_sealed_state_for_testing_only(&old_state, old_counter).unwrap();
        service.restart_enclave().unwrap();
    }
    client.start().unwrap();
    let err = client.send_mail("t", b"hello").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { enclave_index: 1, client_index: 3 }), "{err:?}");
    assert!(err.to_string().contains("rollback"), "{err}");
    // Changing the state does not hide it: counter 2 again, but another state.
    let err = client.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { .. }), "{err:?}");
}

#[test]
fn the_sandbox_refuses_files_sockets_and_threads() {
    let s = setup();
    let mut service = s.service();
    let report = service.host_mut().sandbox_report().unwrap().to_owned();
    assert!(report.contains("seccomp=on") && report.contains("no_new_privs=on"), "{report}");

    let answer = String::from_utf8(service.call_enclave(b"open-file").unwrap().unwrap()).unwrap();
    assert!(answer.starts_with("refused"), "{answer}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let request = format!("connect:{}", listener.local_addr().unwrap());
    let answer = String::from_utf8(service.call_enclave(request.as_bytes()).unwrap().unwrap()).unwrap();
    assert!(answer.starts_with("refused"), "{answer}");
    assert!(listener.accept().is_err(), "the enclave reached the listener");

    let answer = String::from_utf8(service.call_enclave(b"spawn-thread").unwrap().unwrap()).unwrap();
    assert!(answer.starts_with("refused"), "{answer}");
}

#[test]
fn a_forbidden_system_call_kills_the_enclave_and_the_host_says_so() {
    let s = setup();
    let mut service = s.service();
    let err = service.call_enclave(b"chdir").unwrap_err();
    assert!(err.to_string().contains("SIGSYS"), "{err}");
}

#[test]
fn unsigned_tampered_and_mis_signed_binaries_are_refused() {
    let s = setup();
    let dir = s.dir.path();
    // Unsigned.
    let unsigned = dir.join("unsigned");
    std::fs::copy(PROBE, &unsigned).unwrap();
    let err = SignedEnclave::load(&unsigned).unwrap_err();
    assert!(matches!(err, SimulationError::SignatureMissing { .. }), "{err}");
    assert!(err.to_string().contains("conclave sign"), "{err}");

    // Changed by one byte after signing.
    let tampered = dir.join("tampered");
    std::fs::copy(PROBE, &tampered).unwrap();
    sign(&tampered, &ed25519_dalek::SigningKey::from_bytes(&[5; 32]), 1, 0);
    let mut bytes = std::fs::read(&tampered).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let err = SignedEnclave::load(&tampered).unwrap_err();
    assert!(err.to_string().contains("changed after signing"), "{err}");

    // A signature file that is not one.
    let garbage = dir.join("garbage");
    std::fs::copy(PROBE, &garbage).unwrap();
    std::fs::write(dir.join("garbage.sig"), b"not a signature").unwrap();
    let err = SignedEnclave::load(&garbage).unwrap_err();
    assert!(matches!(err, SimulationError::SignatureInvalid { .. }), "{err}");
}

#[test]
fn a_channel_version_mismatch_names_both_versions() {
    let s = setup();
    // A fake enclave that answers Hello with channel version 99.
    let (fake, _) = signed_copy(Path::new(WRONG_VERSION), s.dir.path(), 1, 0);
    let mut host = EnclaveHost::load(&fake, &s.data()).unwrap();
    let err = host.start(None).unwrap_err();
    assert!(err.to_string().contains("host speaks version 2, enclave speaks version 99"), "{err}");
}

#[test]
fn an_enclave_started_twice_gets_fresh_keys() {
    let s = setup();
    let mut service = s.service();
    let first = service.attestation().unwrap();
    service.restart_enclave().unwrap();
    assert_ne!(first, service.attestation().unwrap());
    let relay = LocalRelayHandle::new(service);
    assert!(relay.clone().attestation().is_ok());
}

/// Attack 23: outside mock mode, enclave error text does not cross to the
/// host in clear: only a stable code does. The application's message goes
/// to the sender, encrypted.
#[test]
fn enclave_error_text_does_not_cross_to_the_host() {
    let s = setup();
    let mut service = s.service();
    let err = service.call_enclave(b"refuse:the secret is 42").unwrap_err();
    assert_eq!(err.code(), "ENCLAVE_REFUSED");
    assert!(!format!("{err} {err:?}").contains("secret is 42"), "{err:?}");
    let relay = LocalRelayHandle::new(service);
    let mut client = s.client(&relay);
    let err = client.send_mail("t", b"refuse:the secret is 43").unwrap_err();
    assert!(matches!(&err, ClientError::Refused { message, .. } if message == "the secret is 43"), "{err:?}");
}

/// Attack 17b in simulation mode: a panic in enclave code is reported as a
/// code, the process is reset in place (same keys), and it serves on.
#[test]
fn a_panic_in_a_simulation_enclave_keeps_its_keys() {
    let s = setup();
    let relay = LocalRelayHandle::new(s.service());
    let mut client = s.client(&relay);
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "1");
    let key = client.enclave_info().unwrap().encryption_key;
    let err = relay.lock().call_enclave(b"panic").unwrap_err();
    assert_eq!(err.code(), "ENCLAVE_FAILED");
    client.start().unwrap();
    assert_eq!(client.enclave_info().unwrap().encryption_key, key, "the enclave restarted");
    assert_eq!(text(client.send_mail("t", b"count").unwrap()), "2");
}
