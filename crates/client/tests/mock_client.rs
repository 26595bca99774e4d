//! The client against a mock enclave through the in-process relay.

use conclave_client::{ClientError, ClientState, EnclaveClient};
use conclave_core::{ConstraintError, EnclaveConstraint, MailRelay};
use conclave_examples::reverse::ReverseEnclave;
use conclave_host::{EnclaveHost, LocalRelayHandle, mock_identity};

fn relay() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap()
}

fn constraint(extra: &str) -> EnclaveConstraint {
    let code = hex::encode(mock_identity::<ReverseEnclave>().code_hash);
    EnclaveConstraint::parse(&format!("C:{code} {extra}")).unwrap()
}

#[test]
fn send_and_receive_the_reply() {
    let mut client = EnclaveClient::new(relay(), constraint("SEC:INSECURE"));
    client.start().unwrap();
    let reply = client.send_mail("t", b"abc").unwrap().unwrap();
    assert_eq!(reply.body, b"cba");
    // The first reply in this client's chain, answering its mail 0.
    assert_eq!((reply.sequence_number, reply.answers), (1, Some(0)));
    let second = client.send_mail("t", b"xy").unwrap().unwrap();
    assert_eq!((second.sequence_number, second.answers), (2, Some(1)));
    assert_eq!(client.checkpoint(), second.state);
}

#[test]
fn a_mock_enclave_fails_the_default_constraint() {
    let mut client = EnclaveClient::new(relay(), constraint(""));
    let err = client.start().unwrap_err();
    assert!(matches!(err, ClientError::Constraint(ConstraintError::NotSatisfied(_))), "{err:?}");
    assert!(err.to_string().contains("SEC:STALE"), "{err}");
    assert!(matches!(client.send_mail("t", b"x"), Err(ClientError::NotStarted)));
}

#[test]
fn saved_state_continues_the_sequence_numbers() {
    let relay = relay();
    let mut client = EnclaveClient::new(relay.clone(), constraint("SEC:INSECURE"));
    client.start().unwrap();
    client.send_mail("a", b"1").unwrap();
    client.send_mail("a", b"2").unwrap();
    client.send_mail("b", b"3").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    client.save_to_file(&path).unwrap();
    let key = client.public_key().unwrap();
    drop(client);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let mut restored = EnclaveClient::restore_from_file(relay.clone(), &path).unwrap();
    assert_eq!(restored.public_key().unwrap(), key);
    restored.start().unwrap();
    // Without the saved numbers the enclave would see a replay of 0 and refuse it.
    restored.send_mail("a", b"4").unwrap();
    restored.send_mail("b", b"5").unwrap();
    assert_eq!(restored.save().next_sequence_numbers.get("a"), Some(&3));
    assert_eq!(relay.lock().host_mut().mock_enclave::<ReverseEnclave>().unwrap().answered, 5);
}

#[test]
fn a_fresh_client_restarting_from_zero_is_seen_as_a_replay() {
    // The same key sending number 0 twice: what saved state prevents.
    let relay = relay();
    let mut client = EnclaveClient::new(relay.clone(), constraint("SEC:INSECURE"));
    client.start().unwrap();
    client.send_mail("a", b"1").unwrap();
    let mut state = client.save();
    state.next_sequence_numbers.clear();
    let mut stale = EnclaveClient::restore(relay, state).unwrap();
    stale.start().unwrap();
    let err = stale.send_mail("a", b"again").unwrap_err();
    assert!(matches!(&err, ClientError::AlreadyProcessed { sequence_number: 0, .. }), "{err:?}");
}

#[test]
fn bad_state_is_refused_with_a_reason() {
    assert!(matches!(ClientState::from_bytes(b"{}"), Err(ClientError::BadState(_))));
    let mut state = EnclaveClient::new(relay(), constraint("SEC:INSECURE")).save();
    state.private_key = "zz".into();
    let err = ClientState::from_bytes(&state.to_bytes()).unwrap_err();
    assert!(err.to_string().contains("private_key"), "{err}");
    let debug = format!("{:?}", EnclaveClient::new(relay(), constraint("SEC:INSECURE")).save());
    assert!(debug.contains("redacted"));
}

/// A relay that hands back the same reply twice.
struct Replaying(LocalRelayHandle, Option<conclave_core::QueuedMail>);

impl MailRelay for Replaying {
    fn attestation(&mut self) -> Result<Vec<u8>, conclave_core::RelayError> {
        self.0.attestation()
    }
    fn deliver(
        &mut self,
        id: &str,
        mail: &[u8],
    ) -> Result<Option<conclave_core::QueuedMail>, conclave_core::RelayError> {
        let reply = self.0.deliver(id, mail)?;
        Ok(match (&self.1, reply) {
            (Some(old), _) => Some(old.clone()),
            (None, reply) => {
                self.1 = reply.clone();
                reply
            }
        })
    }
    fn poll(&mut self, id: &str) -> Result<Vec<conclave_core::QueuedMail>, conclave_core::RelayError> {
        self.0.poll(id)
    }
    fn acknowledge(&mut self, id: &str, ids: &[u64]) -> Result<(), conclave_core::RelayError> {
        self.0.acknowledge(id, ids)
    }
}

#[test]
fn a_replayed_reply_is_not_taken_for_the_answer() {
    let mut client = EnclaveClient::new(Replaying(relay(), None), constraint("SEC:INSECURE"));
    client.start().unwrap();
    client.send_mail("t", b"first").unwrap();
    // The host hands back the first reply again: the client drops it and
    // finds the real answer in the queue.
    let second = client.send_mail("t", b"second").unwrap().unwrap();
    assert_eq!((second.body.as_slice(), second.answers), (&b"dnoces"[..], Some(1)));
    assert!(client.poll_mail().unwrap().is_empty());
}

#[test]
fn an_enclave_restart_means_new_keys_and_the_same_numbering() {
    let relay = relay();
    let mut client = EnclaveClient::new(relay.clone(), constraint("SEC:INSECURE"));
    client.start().unwrap();
    client.send_mail("t", b"1").unwrap();
    let old_key = client.enclave_info().unwrap().encryption_key;
    // The host restarts the enclave.
    relay.lock().restart_enclave().unwrap();
    client.start().unwrap();
    assert_ne!(client.enclave_info().unwrap().encryption_key, old_key);
    // The enclave sealed its floors: the client keeps numbering.
    assert_eq!(client.send_mail("t", b"2").unwrap().unwrap().answers, Some(1));
}

/// Attack 22 (client half): a link planted where the state file's temporary
/// copy goes is removed, never written through.
#[cfg(unix)]
#[test]
fn the_state_file_is_never_written_through_a_planted_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious.txt");
    std::fs::write(&target, b"precious").unwrap();
    let path = dir.path().join("client.json");
    std::os::unix::fs::symlink(&target, dir.path().join("client.json.tmp")).unwrap();
    let mut client = EnclaveClient::new(relay(), constraint("SEC:INSECURE"));
    client.start().unwrap();
    client.save_to_file(&path).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"precious", "the state was written through the link");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(ClientState::from_bytes(&std::fs::read(&path).unwrap()).is_ok());
}

/// A state file of an older conclave (wire format 1) is refused with what to do.
#[test]
fn a_version_1_state_file_is_refused_with_what_to_do() {
    let mut json: serde_json::Value =
        serde_json::from_slice(&EnclaveClient::new(relay(), constraint("SEC:INSECURE")).save().to_bytes()).unwrap();
    json["version"] = 1.into();
    let err = ClientState::from_bytes(json.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("start a new one"), "{err}");
}
