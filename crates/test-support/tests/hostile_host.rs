//! What a hostile host can try against clients and the enclave's state, and
//! how each attempt is caught. The probe enclave runs in mock mode; the host
//! is driven directly and through relays that misbehave.

use conclave_client::{ClientError, EnclaveClient};
use conclave_core::{EnclaveConstraint, MailRelay, QueuedMail, RelayError};
use conclave_host::{EnclaveHost, HostError, LocalRelayHandle};
use conclave_test_support::ProbeEnclave;

fn relay() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ProbeEnclave>()).unwrap()
}

fn constraint() -> EnclaveConstraint {
    conclave_test_support::mock_constraint::<ProbeEnclave>()
}

fn client<R: MailRelay>(relay: R) -> EnclaveClient<R> {
    let mut client = EnclaveClient::new(relay, constraint());
    client.start().unwrap();
    client
}

fn text(reply: Option<conclave_client::EnclaveReply>) -> String {
    String::from_utf8(reply.expect("a reply").body).unwrap()
}

fn counter(relay: &LocalRelayHandle) -> String {
    String::from_utf8(relay.lock().call_enclave(b"count").unwrap().unwrap()).unwrap()
}

/// A relay the test can make misbehave.
struct Hostile {
    inner: LocalRelayHandle,
    /// Deliver, then restart the enclave and claim it failed.
    deliver_then_fail: bool,
    /// Refuse as busy without delivering.
    busy: bool,
    /// Replies to hand out again later.
    kept: Vec<QueuedMail>,
    /// Hand these out with the next poll.
    inject: Vec<QueuedMail>,
    /// Pretend the response to a delivery was lost.
    lose_response: bool,
}

impl Hostile {
    fn new(inner: LocalRelayHandle) -> Self {
        Self {
            inner,
            deliver_then_fail: false,
            busy: false,
            kept: Vec::new(),
            inject: Vec::new(),
            lose_response: false,
        }
    }
}

impl MailRelay for Hostile {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        self.inner.attestation()
    }
    fn deliver(&mut self, id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        if self.busy {
            self.busy = false;
            return Err(RelayError::new("BUSY", "the host is busy"));
        }
        let reply = self.inner.deliver(id, mail)?;
        self.kept.extend(reply.clone());
        if self.deliver_then_fail {
            self.deliver_then_fail = false;
            self.inner.lock().restart_enclave().unwrap();
            return Err(RelayError::new("ENCLAVE_FAILED", "the enclave failed"));
        }
        if self.lose_response {
            self.lose_response = false;
            return Err(RelayError::new("UNREACHABLE", "connection reset"));
        }
        Ok(reply)
    }
    fn poll(&mut self, id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        let mut replies = self.inner.poll(id)?;
        replies.append(&mut self.inject);
        Ok(replies)
    }
    fn acknowledge(&mut self, id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.inner.acknowledge(id, ids)
    }
}

#[test]
fn a_replayed_reply_is_refused_even_after_the_client_restarts() {
    let relay = relay();
    let mut alice = client(Hostile::new(relay.clone()));
    assert_eq!(text(alice.send_mail("t", b"transfer 100").unwrap()), "transfer 100");
    let old = alice.relay_mut().kept.clone();
    // Alice's process restarts from its state file; the host replays the old reply.
    let mut alice = EnclaveClient::restore(Hostile::new(relay), alice.save()).unwrap();
    alice.start().unwrap();
    alice.relay_mut().inject = old;
    assert!(alice.poll_mail().unwrap().is_empty(), "the replayed reply was shown again");
}

#[test]
fn a_rollback_followed_by_progress_is_still_caught() {
    let relay = relay();
    let mut alice = client(relay.clone());
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "1");
    let old_state = relay.lock().store_mut().sealed_state().unwrap().unwrap();
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "2");

    // The host rolls back to state 1, then advances it with its own client
    // until the counter is past what Alice saw.
    {
        let mut service = relay.lock();
        service.store_mut().replace_sealed_state_for_testing_only(&old_state).unwrap();
        service.restart_enclave().unwrap();
    }
    let mut mallory = client(relay.clone());
    for _ in 0..3 {
        mallory.send_mail("m", b"count").unwrap();
    }
    alice.start().unwrap();
    let err = alice.send_mail("t", b"hello").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { last_seen: 2, received: 1 }), "{err:?}");
}

#[test]
fn a_lost_response_is_not_mistaken_for_a_rollback() {
    let relay = relay();
    let mut alice = client(Hostile::new(relay));
    alice.relay_mut().lose_response = true;
    // The first "count" is processed and committed, but its response is lost.
    assert!(alice.send_mail("t", b"count").is_err());
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "2");
    // The first reply (an older state of the same run) waits in the queue.
    let replies = alice.poll_mail().unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].body, b"1");
}

#[test]
fn a_mail_is_not_processed_twice_when_the_host_fakes_a_failure() {
    let relay = relay();
    let mut alice = client(Hostile::new(relay.clone()));
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "1");
    // The host delivers and commits the next mail, restarts the enclave and
    // answers "enclave failed": the client re-attests and resends.
    alice.relay_mut().deliver_then_fail = true;
    let outcome = alice.send_mail("t", b"count").unwrap();
    assert!(outcome.is_none(), "the resend was processed: {outcome:?}");
    assert_eq!(counter(&relay), "2", "the mail was counted twice");
    // Its reply was committed with it and waits in the queue.
    assert_eq!(alice.poll_mail().unwrap().iter().map(|r| r.body.clone()).collect::<Vec<_>>(), vec![b"2".to_vec()]);
    // And the conversation goes on.
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "3");
}

#[test]
fn a_busy_host_does_not_burn_a_sequence_number() {
    let relay = relay();
    let mut alice = client(Hostile::new(relay));
    alice.relay_mut().busy = true;
    let err = alice.send_mail("t", b"count").unwrap_err();
    assert!(matches!(&err, ClientError::Relay(e) if e.code == "BUSY"), "{err:?}");
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "1");
}

#[test]
fn deleted_mail_to_self_cannot_be_brought_back() {
    let relay = relay();
    let mut alice = client(relay.clone());
    assert_eq!(text(alice.send_mail("t", b"note:pay-bob-100").unwrap()), "ok");
    let kept = relay.lock().store_mut().self_mail().unwrap();
    relay.lock().restart_enclave().unwrap();
    alice.start().unwrap();
    assert_eq!(text(alice.send_mail("t", b"replayed").unwrap()), "pay-bob-100");
    assert_eq!(text(alice.send_mail("t", b"forget").unwrap()), "ok");
    assert!(relay.lock().store_mut().self_mail().unwrap().is_empty());

    // The host kept a copy and hands it back at the next start.
    let mut service = relay.lock();
    let (_, blob) = &kept[0];
    let mut batch = conclave_host::store::Batch::default();
    batch.self_mail.push(blob.clone());
    service.store_mut().commit(&batch).unwrap();
    let err = service.restart_enclave().unwrap_err();
    assert!(err.to_string().contains("deleted or never sealed"), "{err}");
}

#[test]
fn a_failed_commit_puts_the_enclave_back_to_the_committed_state() {
    let relay = relay();
    assert_eq!(counter(&relay), "0");
    let mut alice = client(relay.clone());
    assert_eq!(text(alice.send_mail("t", b"count").unwrap()), "1");
    // A delivery whose batch the store refuses (a correlation id it cannot keep).
    let mut po = conclave_core::PostOffice::new(
        conclave_core::PrivateKey::generate(&mut rand_core::OsRng),
        alice.enclave_info().unwrap().encryption_key,
        "x",
    )
    .unwrap();
    let mail = po.encrypt_mail(b"count", &mut rand_core::OsRng).unwrap();
    let err = relay.lock().deliver(&"c".repeat(300), &mail).unwrap_err();
    assert!(matches!(err, HostError::Store(_)), "{err:?}");
    // Nothing of that call survives, in the store or in the enclave.
    assert_eq!(counter(&relay), "1");
}

#[test]
fn a_client_that_never_acknowledges_cannot_fill_the_disk() {
    use conclave_host::{HostService, ServiceConfig, store::Store};
    let mut config = ServiceConfig::new([9; 32]);
    config.max_queued_replies = 2;
    let mut service = HostService::new(
        EnclaveHost::load_mock_restartable::<ProbeEnclave>(),
        Store::open_in_memory().unwrap(),
        config,
    )
    .unwrap();
    let info = conclave_core::EnclaveInstanceInfo::decode(&service.attestation().unwrap()).unwrap();
    let mut po = conclave_core::PostOffice::new(
        conclave_core::PrivateKey::generate(&mut rand_core::OsRng),
        *info.encryption_key(),
        "t",
    )
    .unwrap();
    for _ in 0..2 {
        let mail = po.encrypt_mail(b"count", &mut rand_core::OsRng).unwrap();
        service.deliver("slacker", &mail).unwrap().unwrap();
    }
    let third = po.encrypt_mail(b"count", &mut rand_core::OsRng).unwrap();
    let err = service.deliver("slacker", &third).unwrap_err();
    assert_eq!(err.code(), "REPLY_QUEUE_FULL");
    // Refused before the enclave saw it; after acknowledging, the same mail goes through.
    assert_eq!(service.call_enclave(b"count").unwrap().unwrap(), b"2");
    let ids: Vec<u64> = service.poll("slacker", 10).unwrap().iter().map(|m| m.id).collect();
    service.acknowledge("slacker", &ids).unwrap();
    service.deliver("slacker", &third).unwrap().unwrap();
    assert_eq!(service.call_enclave(b"count").unwrap().unwrap(), b"3");
}
