//! The hostile-host suite: every attack of the threat model, tried against
//! real web hosts over HTTP (through a scriptable hostile proxy, and by
//! tampering with a stopped host's data directory), with the real client.
//! Each test names the attack and asserts the specific error the client or
//! the enclave reports. Numbers in the comments refer to the list of
//! attacks in docs/threat-model.md.

use std::path::Path;

use conclave_client::{ClientError, EnclaveClient, HttpRelay};
use conclave_core::{
    EnclaveInstanceInfo, MailHeader, MailRelay, PrivateKey, PublicKey, Rejection, ReplyChain, RequestFrame,
    ResponseFrame, ResponseKind, decrypt_mail, encrypt_mail,
};
use conclave_host::{EnclaveHost, web::WebConfig};
use conclave_test_support::{
    ProbeEnclave,
    hostile::{HostileProxy, PollRule, Rule},
    mock_constraint,
    webhost::{WebHost, copy_dir, restore_dir},
};
use rand_core::{OsRng, RngCore};

fn client(url: &str) -> EnclaveClient<HttpRelay> {
    let mut client = EnclaveClient::new(HttpRelay::new(url).unwrap(), mock_constraint::<ProbeEnclave>());
    client.start().unwrap();
    client
}

/// Sends `body` and returns the reply's text.
fn send(client: &mut EnclaveClient<HttpRelay>, topic: &str, body: &str) -> String {
    let reply = client.send_mail(topic, body.as_bytes()).unwrap().expect("a reply");
    String::from_utf8(reply.body).unwrap()
}

/// The enclave's counter, read by a fresh party (which changes nothing it counts).
fn peek(url: &str) -> u64 {
    send(&mut client(url), "peek", "peek").parse().unwrap()
}

fn restart(host: WebHost) -> WebHost {
    let dir = host.dir().to_owned();
    host.stop();
    WebHost::start(&dir)
}

/// Stops `host`, copies its data directory to `to`, starts it again.
fn snapshot(host: WebHost, to: &Path) -> WebHost {
    let dir = host.dir().to_owned();
    host.stop();
    copy_dir(&dir, to);
    WebHost::start(&dir)
}

/// Stops `host`, puts `snapshot` in place of its data, starts it again: a rollback.
fn roll_back(host: WebHost, snapshot: &Path) -> WebHost {
    let dir = host.dir().to_owned();
    host.stop();
    restore_dir(snapshot, &dir);
    WebHost::start(&dir)
}

/// A party that builds its mail by hand, to present the enclave with
/// numbers and frames the client library never sends.
struct RawParty {
    key: PrivateKey,
    enclave: PublicKey,
    relay: HttpRelay,
}

impl RawParty {
    fn new(url: &str) -> Self {
        let mut relay = HttpRelay::new(url).unwrap();
        let info = EnclaveInstanceInfo::decode(&relay.attestation().unwrap()).unwrap();
        Self { key: PrivateKey::generate(&mut OsRng), enclave: *info.encryption_key(), relay }
    }

    /// Delivers mail `number` on `topic` and opens the enclave's direct answer.
    fn send(&mut self, topic: &str, number: u64, body: &[u8]) -> (ResponseFrame, Vec<u8>) {
        let mut request_id = [0u8; 16];
        OsRng.fill_bytes(&mut request_id);
        let frame = RequestFrame { request_id, chain: ReplyChain::START, runs: Vec::new() };
        let header = MailHeader::new(topic, number).unwrap();
        let mail = encrypt_mail(&self.key, &self.enclave, &header, &frame.wrap(body), 0, &mut OsRng).unwrap();
        let id = hex::encode(self.key.public_key().as_bytes());
        let answer = self.relay.deliver(&id, &mail).unwrap().expect("an answer");
        let opened = decrypt_mail(&self.key, &answer.bytes).unwrap();
        assert_eq!(opened.sender, self.enclave);
        let (frame, body) = ResponseFrame::unwrap(&opened.body).unwrap();
        (frame, body.to_vec())
    }
}

fn rejection(frame: &ResponseFrame) -> Rejection {
    match frame.kind {
        ResponseKind::Rejected(rejection, _) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// ------------------------------------------------------------ rollback and forks

/// Attack 1: The host restores an old state, pushes the counter past the victim's
/// with its own parties' mail, and restarts.
#[test]
fn rollback_then_progress_then_restart_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    assert_eq!(send(&mut victim, "t", "count"), "1");
    host = snapshot(host, &dir.path().join("old"));
    proxy.switch_to(host.url());
    victim.start().unwrap();
    assert_eq!(send(&mut victim, "t", "count"), "2");

    host = roll_back(host, &dir.path().join("old"));
    let mut mallory = client(host.url());
    for _ in 0..3 {
        send(&mut mallory, "m", "count");
    }
    host = restart(host);
    proxy.switch_to(host.url());

    victim.start().unwrap();
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { enclave_index: 1, client_index: 2 }), "{err:?}");
    drop(host);
}

/// Attack 2: Two hosts from copies of one data directory; copy B is pushed ahead,
/// restarted, and the victim is moved to it.
#[test]
fn fork_with_progress_on_a_copied_data_directory_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let a = WebHost::start(&dir.path().join("a"));
    let proxy = HostileProxy::start(a.url());
    let mut victim = client(proxy.url());
    assert_eq!(send(&mut victim, "t", "count"), "1");
    let a = snapshot(a, &dir.path().join("b"));
    proxy.switch_to(a.url());
    victim.start().unwrap();
    assert_eq!(send(&mut victim, "t", "count"), "2");

    let mut b = WebHost::start(&dir.path().join("b"));
    let mut mallory = client(b.url());
    for _ in 0..5 {
        send(&mut mallory, "m", "count");
    }
    b = restart(b);
    proxy.switch_to(b.url());
    victim.start().unwrap();
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { enclave_index: 1, client_index: 2 }), "{err:?}");
    // The fork never saw the victim's second mail.
    assert_eq!(peek(b.url()), 6);
    drop(a);
}

/// Attack 3: The victim was shown state 4 in one run; a run started later from an
/// older state must not be accepted.
#[test]
fn a_run_started_below_a_state_already_shown_is_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    send(&mut victim, "t", "count");
    host = snapshot(host, &dir.path().join("state-2"));
    proxy.switch_to(host.url());
    victim.start().unwrap();
    let shown = victim.send_mail("t", b"count").unwrap().unwrap().state;
    assert_eq!(shown.counter, 4, "runs start at 1 and 3; the replies came from 2 and 4");

    host = roll_back(host, &dir.path().join("state-2"));
    proxy.switch_to(host.url());
    let run = victim.start().unwrap().run;
    assert_eq!(run.counter, 3, "a run started from state 2");
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { .. }), "{err:?}");
}

/// Attack 4: A sibling of a committed state (same counter, from a call the host
/// never committed) replaces it.
#[test]
fn a_sibling_state_with_the_same_counter_is_a_fork() {
    use conclave_host::LocalRelayHandle;
    use conclave_test_support::mock_client;

    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ProbeEnclave>()).unwrap();
    let mut victim = mock_client::<ProbeEnclave>(&relay);
    assert_eq!(String::from_utf8(victim.send_mail("t", b"count").unwrap().unwrap().body).unwrap(), "1");

    /// Runs every mail once uncommitted (keeping its sealed state), puts the
    /// enclave back, then delivers it for real.
    struct Sneaky(LocalRelayHandle, Vec<(Vec<u8>, u64)>);
    impl MailRelay for Sneaky {
        fn attestation(&mut self) -> Result<Vec<u8>, conclave_core::RelayError> {
            self.0.attestation()
        }
        fn deliver(
            &mut self,
            id: &str,
            mail: &[u8],
        ) -> Result<Option<conclave_core::QueuedMail>, conclave_core::RelayError> {
            {
                let mut service = self.0.lock();
                let delivered = service.host_mut().deliver_mail(mail, Some(id)).unwrap();
                for command in delivered.commands {
                    if let conclave_core::HostCommand::StoreSealedState { blob, counter, .. } = command {
                        self.1.push((blob, counter));
                    }
                }
                let state = service.store_mut().sealed_state().unwrap();
                let self_mail = service.store_mut().self_mail().unwrap();
                service.host_mut().reset(state, self_mail).unwrap();
            }
            self.0.deliver(id, mail)
        }
        fn poll(&mut self, id: &str) -> Result<Vec<conclave_core::QueuedMail>, conclave_core::RelayError> {
            self.0.poll(id)
        }
        fn acknowledge(&mut self, id: &str, ids: &[u64]) -> Result<(), conclave_core::RelayError> {
            self.0.acknowledge(id, ids)
        }
    }
    let mut victim = EnclaveClient::restore(Sneaky(relay.clone(), Vec::new()), victim.save()).unwrap();
    victim.start().unwrap();
    let shown = victim.send_mail("t", b"count").unwrap().unwrap();
    assert_eq!(String::from_utf8(shown.body).unwrap(), "2");
    let (sibling, counter) = victim.relay_mut().1.pop().unwrap();
    assert_eq!(counter, shown.state.counter, "the sibling has the same counter");

    {
        let mut service = relay.lock();
        service.store_mut().replace_sealed_state_for_testing_only(&sibling, counter).unwrap();
        service.restart_enclave().unwrap();
    }
    let mut victim = EnclaveClient::restore(relay, victim.save()).unwrap();
    victim.start().unwrap();
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Fork(_)), "{err:?}");
}

/// Attack 5: After many restarts (each re-attested by the victim) the same
/// rollback is still caught: nothing the check needs is evicted.
#[test]
fn many_restarts_do_not_evict_what_reveals_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    send(&mut victim, "t", "count");
    host = snapshot(host, &dir.path().join("old"));
    proxy.switch_to(host.url());
    victim.start().unwrap();
    send(&mut victim, "t", "count");
    for _ in 0..20 {
        host = restart(host);
        proxy.switch_to(host.url());
        victim.start().unwrap();
        victim.poll_mail().unwrap();
    }
    host = roll_back(host, &dir.path().join("old"));
    proxy.switch_to(host.url());
    victim.start().unwrap();
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { enclave_index: 1, client_index: 2 }), "{err:?}");
}

/// Attack 6: Another deployment of the same signer and product (a different build,
/// its own state) that the attacker advanced.
#[test]
fn another_instance_of_the_same_signer_and_product_is_not_taken_for_this_one() {
    use conclave_enclave::EnclaveIdentity;
    let identity = |code: u8| EnclaveIdentity {
        code_hash: [code; 32],
        code_signing_key_hash: [0x5e; 32],
        product_id: 7,
        revocation_level: 0,
    };
    let constraint =
        conclave_core::EnclaveConstraint::parse(&format!("S:{} PROD:7 SEC:INSECURE", hex::encode([0x5e; 32]))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, code: u8| {
        let host = EnclaveHost::load_mock_with_identity(ProbeEnclave::default(), identity(code));
        WebHost::start_with(&dir.path().join(name), host, WebConfig::default()).unwrap()
    };
    let a = start("a", 1);
    let b = start("b", 2);
    let proxy = HostileProxy::start(a.url());
    let mut victim = EnclaveClient::new(HttpRelay::new(proxy.url()).unwrap(), constraint.clone());
    victim.start().unwrap();
    send(&mut victim, "t", "count");
    send(&mut victim, "t", "count");
    let mut mallory = EnclaveClient::new(HttpRelay::new(b.url()).unwrap(), constraint);
    mallory.start().unwrap();
    for _ in 0..4 {
        send(&mut mallory, "m", "count");
    }
    proxy.switch_to(b.url());
    victim.start().unwrap();
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Rollback { enclave_index: 0, client_index: 2 }), "{err:?}");
}

// ------------------------------------------------------- drops and double processing

/// Attack 7a: The host swallows a mail and restarts the enclave: the next mail is
/// still a gap, as it would be within one run.
#[test]
fn a_mail_swallowed_before_a_restart_is_still_a_gap_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let mut party = RawParty::new(host.url());
    let (frame, _) = party.send("bids", 0, b"count");
    assert_eq!(frame.kind, ResponseKind::Reply);
    // Mail 1 is swallowed; the enclave restarts with new keys.
    host = restart(host);
    party.relay = HttpRelay::new(host.url()).unwrap();
    party.enclave = *EnclaveInstanceInfo::decode(&party.relay.attestation().unwrap()).unwrap().encryption_key();
    let (frame, _) = party.send("bids", 2, b"count");
    assert_eq!(rejection(&frame), Rejection::Gap);
    match frame.kind {
        ResponseKind::Rejected(_, detail) => assert_eq!((detail.expected, detail.received), (1, 2)),
        _ => unreachable!(),
    }
    // The swallowed number is still expected, exactly.
    let (frame, body) = party.send("bids", 1, b"count");
    assert_eq!((frame.kind, body), (ResponseKind::Reply, b"2".to_vec()));
}

/// Attack 7b: However long the host swallows a mail, the client never moves on
/// past it: the next mail waits until the swallowed one is answered.
#[test]
fn a_swallowed_mail_is_never_skipped_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    proxy.control().always = Some(Rule::Drop);
    let err = victim.send_mail("bids", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Unsettled { sequence_number: 0, .. }), "{err:?}");
    host = restart(host);
    proxy.switch_to(host.url());
    let err = victim.send_mail("bids", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Unsettled { sequence_number: 0, .. }), "the second mail went first: {err:?}");
    assert_eq!(victim.pending_topics(), vec!["bids".to_owned()]);
    // The host stops swallowing: both mails go through, in order, once.
    proxy.control().always = None;
    assert_eq!(send(&mut victim, "bids", "count"), "2");
    let earlier: Vec<_> = victim.poll_mail().unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(earlier, vec![b"1".to_vec()]);
    assert_eq!(peek(host.url()), 2);
}

/// Attack 8: The response is lost, the enclave restarts, and the re-delivery of
/// the old bytes gets MAIL_INVALID: the mail must not count as settled.
#[test]
fn mail_invalid_after_a_lost_response_and_a_restart_does_not_lose_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    proxy.next(Rule::ForwardThenDrop);
    assert!(matches!(victim.send_mail("t", b"count").unwrap_err(), ClientError::Unsettled { .. }));
    host = restart(host);
    proxy.switch_to(host.url());
    // The client still holds the old run's key: its re-delivery is MAIL_INVALID.
    assert_eq!(send(&mut victim, "t", "count"), "2");
    let earlier: Vec<_> = victim.poll_mail().unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(earlier, vec![b"1".to_vec()], "the first mail's answer was lost");
    assert_eq!(peek(host.url()), 2, "a mail was processed twice or not at all");
}

/// Attack 9: The host answers a processed mail with a forged ENCLAVE_REFUSED and
/// restarts the enclave: unauthenticated errors never make the client give
/// up a mail.
#[test]
fn a_forged_refusal_does_not_lose_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    // Forged once: the client finds the real answer in the queue.
    proxy.next(Rule::ForwardThenForge { status: 422, code: "ENCLAVE_REFUSED" });
    assert_eq!(send(&mut victim, "t", "count"), "1");
    // Forged every time, with the queue hidden, then a restart.
    proxy.control().always = Some(Rule::ForwardThenForge { status: 422, code: "ENCLAVE_REFUSED" });
    proxy.control().poll_rules.extend(std::iter::repeat_n(PollRule::Hide, 16));
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Unsettled { sequence_number: 1, .. }), "{err:?}");
    host = restart(host);
    proxy.switch_to(host.url());
    proxy.control().always = None;
    proxy.control().poll_rules.clear();
    // The forged mail is settled (processed once, its answer found), then the next one goes.
    assert_eq!(send(&mut victim, "t", "count"), "3");
    let earlier: Vec<_> = victim.poll_mail().unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(earlier, vec![b"2".to_vec()]);
    // A forged refusal of a mail that never reached the enclave: sent again, processed once.
    proxy.next(Rule::Forge { status: 422, code: "ENCLAVE_REFUSED" });
    assert_eq!(send(&mut victim, "t", "count"), "4");
    assert_eq!(peek(host.url()), 4);
}

/// Attack 10: After a faked failure the client is moved to a fork that has not
/// seen its mail: resending there must not process it a second time.
#[test]
fn a_resend_into_a_fork_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = WebHost::start(&dir.path().join("a"));
    let proxy = HostileProxy::start(a.url());
    let mut victim = client(proxy.url());
    assert_eq!(send(&mut victim, "t", "count"), "1");
    // B is a copy of the data from before A's current run.
    let a = snapshot(a, &dir.path().join("b"));
    let b = WebHost::start(&dir.path().join("b"));
    proxy.switch_to(a.url());
    victim.start().unwrap();
    // A processes and commits the mail; the host says "enclave failed" and
    // sends the client to B from then on.
    proxy.next(Rule::ForwardThenForge { status: 500, code: "ENCLAVE_FAILED" });
    proxy.control().then_switch_to = Some(b.url().to_owned());
    let err = victim.send_mail("t", b"count").unwrap_err();
    assert!(matches!(err, ClientError::Fork(_)), "{err:?}");
    assert_eq!(peek(a.url()), 2, "A processed the mail once");
    assert_eq!(peek(b.url()), 1, "the fork processed it too");
}

/// Attack 12: The host withholds the answer to one mail and returns it as the
/// answer to another: the client must not take it for that one.
#[test]
fn a_reply_to_another_mail_is_not_taken_for_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    proxy.next(Rule::Withhold);
    for _ in 0..8 {
        proxy.control().poll_rules.push_back(PollRule::Hide);
    }
    // The enclave's rejection of the repeated delivery says the mail was
    // processed: the client knows its answer is being withheld.
    let err = victim.send_mail("alpha", b"alpha").unwrap_err();
    assert!(matches!(err, ClientError::Withheld { missing: 1 }), "{err:?}");
    let withheld = proxy.control().kept.pop().unwrap();
    proxy.next(Rule::ReplaceReply(withheld));
    let result = victim.send_mail("bravo", b"bravo");
    // Whatever the host does, bravo's answer is never alpha's reply.
    if let Ok(Some(reply)) = &result {
        assert_eq!(reply.body, b"bravo", "the client took alpha's reply for bravo's answer");
    }
    proxy.control().poll_rules.clear();
    let answer = victim.resend_pending("bravo").unwrap().expect("bravo's answer");
    assert_eq!((answer.body, answer.answers), (b"bravo".to_vec(), Some(0)));
    let replies = victim.poll_mail().unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!((replies[0].topic.as_str(), replies[0].body.as_slice()), ("alpha", &b"alpha"[..]));
}

// ------------------------------------------------------------ impersonation and integrity

/// Attack 13: anyone on the network serves a SIMULATION attestation signed by
/// its own key, for the right code hash. A constraint that pins the host's
/// simulated attestation key (SIMKEY) refuses it; the transport half (TLS)
/// is tested with the web host.
#[test]
fn a_simulation_attestation_signed_by_another_key_is_refused_with_simkey() {
    use conclave_core::{EnclaveConstraint, EnclaveReport, Evidence, StateCheckpoint, key_binding};
    use ed25519_dalek::SigningKey;

    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let code = conclave_host::mock_identity::<ProbeEnclave>();
    let host_key = SigningKey::from_bytes(&[0x21; 32]);
    let pinned = format!(
        "C:{} SEC:INSECURE SIMKEY:{}",
        hex::encode(code.code_hash),
        hex::encode(host_key.verifying_key().to_bytes())
    );
    // The impostor's own keys and its own "simulated attestation key".
    let impostor = SigningKey::from_bytes(&[0x99; 32]);
    let mail_key = PrivateKey::generate(&mut OsRng).public_key();
    let signing = SigningKey::from_bytes(&[0x98; 32]);
    let report = EnclaveReport {
        code_hash: code.code_hash,
        code_signing_key_hash: code.code_signing_key_hash,
        product_id: 0,
        revocation_level: 0,
        report_data: key_binding(&signing.verifying_key().to_bytes(), &mail_key),
        timestamp_unix: 1_900_000_000,
    };
    let forged = EnclaveInstanceInfo::signed(
        &signing,
        mail_key,
        StateCheckpoint::GENESIS.next(&[1; 16]).unwrap(),
        Evidence::simulated_insecure(report, &impostor),
    );
    proxy.control().attestation = Some(forged.encode());
    // Without the pin the forgery is as good as the real thing: simulation proves nothing.
    let unpinned = mock_constraint::<ProbeEnclave>();
    assert!(EnclaveClient::new(HttpRelay::new(proxy.url()).unwrap(), unpinned).start().is_ok());
    let mut victim =
        EnclaveClient::new(HttpRelay::new(proxy.url()).unwrap(), EnclaveConstraint::parse(&pinned).unwrap());
    let err = victim.start().unwrap_err();
    assert!(err.to_string().contains("SIMKEY"), "{err}");
}

// ------------------------------------------------------------ integrity

/// Attack 14: A mail-to-self replaced by the content of one from a call the host
/// never committed (with the same number).
#[test]
fn a_replaced_mail_to_self_is_refused() {
    use conclave_host::LocalRelayHandle;
    use conclave_test_support::mock_client;

    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ProbeEnclave>()).unwrap();
    let mut alice = mock_client::<ProbeEnclave>(&relay);
    // The host runs a call that posts mail-to-self without committing it, keeps the mail ...
    let uncommitted = {
        let mut probe = RawLocal::new(&relay);
        let mail = probe.mail("n", 0, b"note:pay-mallory-1000");
        let mut service = relay.lock();
        let delivered = service.host_mut().deliver_mail(&mail, Some("x")).unwrap();
        let blob = delivered
            .commands
            .into_iter()
            .find_map(|c| match c {
                conclave_core::HostCommand::StoreMailToSelf { blob } => Some(blob),
                _ => None,
            })
            .unwrap();
        let state = service.store_mut().sealed_state().unwrap();
        let self_mail = service.store_mut().self_mail().unwrap();
        service.host_mut().reset(state, self_mail).unwrap();
        blob
    };
    // ... then commits alice's real one, which gets the same number.
    assert_eq!(String::from_utf8(alice.send_mail("t", b"note:pay-bob-1").unwrap().unwrap().body).unwrap(), "ok");
    let mut service = relay.lock();
    let (id, _) = service.store_mut().self_mail().unwrap()[0].clone();
    let batch =
        conclave_host::store::Batch { delete_self_mail: vec![id], self_mail: vec![uncommitted], ..Default::default() };
    service.store_mut().commit(&batch).unwrap();
    let err = service.restart_enclave().unwrap_err();
    assert_eq!(err.code(), "STATE_REFUSED");
    assert!(err.to_string().contains("not the one this state sealed"), "{err}");
}

/// A party talking to an in-process host with hand-made mail.
struct RawLocal {
    key: PrivateKey,
    enclave: PublicKey,
}

impl RawLocal {
    fn new(relay: &conclave_host::LocalRelayHandle) -> Self {
        let info = EnclaveInstanceInfo::decode(&relay.clone().attestation().unwrap()).unwrap();
        Self { key: PrivateKey::generate(&mut OsRng), enclave: *info.encryption_key() }
    }

    fn mail(&mut self, topic: &str, number: u64, body: &[u8]) -> Vec<u8> {
        let frame = RequestFrame { request_id: [1; 16], chain: ReplyChain::START, runs: Vec::new() };
        let header = MailHeader::new(topic, number).unwrap();
        encrypt_mail(&self.key, &self.enclave, &header, &frame.wrap(body), 0, &mut OsRng).unwrap()
    }
}

/// Attack 15: Under the signer policy, an older (revoked) build of the same signer
/// and product cannot unseal what a newer one sealed.
#[test]
fn an_older_revocation_level_cannot_read_newer_state() {
    use conclave_core::SealingPolicy;
    use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveIdentity, EnclaveMail};

    #[derive(Default)]
    struct BySigner(ProbeEnclave);
    impl Enclave for BySigner {
        fn receive_mail(
            &mut self,
            ctx: &mut EnclaveContext<'_>,
            mail: EnclaveMail,
            hint: Option<&str>,
        ) -> Result<(), EnclaveError> {
            self.0.receive_mail(ctx, mail, hint)
        }
        fn sealing_policy(&self) -> SealingPolicy {
            SealingPolicy::SignerAndProduct
        }
    }
    let identity = |code: u8, level: u16| EnclaveIdentity {
        code_hash: [code; 32],
        code_signing_key_hash: [0x5e; 32],
        product_id: 7,
        revocation_level: level,
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |code, level| {
        let host = EnclaveHost::load_mock_with_identity(BySigner::default(), identity(code, level));
        conclave_test_support::webhost::service(dir.path(), host)
    };
    // Version 2 (level 2) keeps state.
    let mut v2 = start(2, 2).unwrap();
    let mut party = RawService::new(&mut v2);
    party.count(&mut v2);
    drop(v2);
    // Version 3 (level 3) reads it: a fixed build may read what it fixed.
    let v3 = start(3, 3).unwrap();
    drop(v3);
    // The revoked version 1 (level 1) may not.
    let err = start(1, 1).unwrap_err();
    assert_eq!(err.code(), "STATE_REFUSED");
    assert!(err.to_string().contains("revocation level"), "{err}");
}

/// A party that delivers hand-made mail straight to a service.
struct RawService {
    key: PrivateKey,
    enclave: PublicKey,
    next: u64,
}

impl RawService {
    fn new(service: &mut conclave_host::HostService) -> Self {
        let info = EnclaveInstanceInfo::decode(&service.attestation().unwrap()).unwrap();
        Self { key: PrivateKey::generate(&mut OsRng), enclave: *info.encryption_key(), next: 0 }
    }

    fn count(&mut self, service: &mut conclave_host::HostService) {
        let frame = RequestFrame { request_id: [2; 16], chain: ReplyChain::START, runs: Vec::new() };
        let header = MailHeader::new("t", self.next).unwrap();
        let mail = encrypt_mail(&self.key, &self.enclave, &header, &frame.wrap(b"count"), 0, &mut OsRng).unwrap();
        service.deliver("raw", &mail).unwrap().unwrap();
        self.next += 1;
    }
}

// ------------------------------------------------------- denial of service and robustness

/// Attack 17a: A mail with sequence number 2^64-1 from a fresh key is refused; the
/// enclave keeps running with the same keys.
#[test]
fn the_largest_sequence_number_does_not_panic_the_enclave() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let mut victim = client(host.url());
    send(&mut victim, "t", "count");
    let key = victim.enclave_info().unwrap().encryption_key;
    let mut mallory = RawParty::new(host.url());
    let (frame, _) = mallory.send("t", u64::MAX, b"count");
    assert_eq!(rejection(&frame), Rejection::Gap);
    victim.start().unwrap();
    assert_eq!(victim.enclave_info().unwrap().encryption_key, key, "the enclave restarted");
    assert_eq!(send(&mut victim, "t", "count"), "2");
}

/// Attack 17b: Enclave code that panics takes down neither the host's worker nor
/// the enclave's keys: the enclave is put back on its last committed state.
#[test]
fn a_panic_in_enclave_code_keeps_the_host_serving_with_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let mut victim = client(host.url());
    assert_eq!(send(&mut victim, "t", "count"), "1");
    let key = victim.enclave_info().unwrap().encryption_key;
    let mut mallory = client(host.url());
    let err = mallory.send_mail("t", b"panic").unwrap_err();
    assert!(matches!(err, ClientError::Unsettled { .. }), "{err:?}");
    victim.start().unwrap();
    assert_eq!(victim.enclave_info().unwrap().encryption_key, key, "the enclave's keys changed");
    assert_eq!(send(&mut victim, "t", "count"), "2", "the panicking call's change survived");
}

/// Attack 18a: Refused mail from fresh keys does not grow the enclave's state.
#[test]
fn refused_mail_from_fresh_keys_does_not_grow_the_state() {
    use conclave_host::LocalRelayHandle;
    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ProbeEnclave>()).unwrap();
    let size = || relay.lock().store_mut().sealed_state().unwrap().unwrap().len();
    let before = size();
    for _ in 0..300 {
        let mut party = RawLocal::new(&relay);
        let mail = party.mail("t", 5, b"count");
        relay.lock().deliver("spam", &mail).unwrap().unwrap();
    }
    assert_eq!(size(), before, "gaps from fresh keys were sealed into the state");
}

/// Attack 18b: Streams and client records count against the state limit: past it,
/// new senders are refused (authenticated), the state stays bounded.
#[test]
fn streams_count_against_the_state_limit() {
    use conclave_host::{HostService, LocalRelayHandle, ServiceConfig, store::SqliteStore};
    let mut config = ServiceConfig::new([3; 32]);
    config.persistent_map_limit = 4096;
    let service = HostService::new(
        EnclaveHost::load_mock_restartable::<ProbeEnclave>(),
        SqliteStore::open_in_memory().unwrap(),
        config,
    )
    .unwrap();
    let relay = LocalRelayHandle::new(service);
    let mut full = 0;
    for _ in 0..100 {
        let mut party = RawLocal::new(&relay);
        let mail = party.mail("t", 0, b"peek");
        let answer = relay.lock().deliver("many", &mail).unwrap().unwrap();
        let opened = decrypt_mail(&party.key, &answer.bytes).unwrap();
        if let (ResponseFrame { kind: ResponseKind::Rejected(Rejection::StateFull, _), .. }, _) =
            ResponseFrame::unwrap(&opened.body).unwrap()
        {
            full += 1;
        }
    }
    assert!(full > 0, "the state never filled up");
    let size = relay.lock().store_mut().sealed_state().unwrap().unwrap().len();
    assert!(size < 4096 + 512, "the sealed state grew to {size} bytes");
}

/// Attack 20a: One undecryptable reply in the queue does not stop polling.
#[test]
fn an_undecryptable_reply_does_not_stop_polling() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    send(&mut victim, "t", "count");
    proxy.next(Rule::Withhold);
    let _ = victim.send_mail("t", b"count");
    proxy.control().poll_rules.push_back(PollRule::Inject(vec![(1 << 40, b"garbage".to_vec())]));
    // The answer was queued; the garbage injected ahead of it is dropped.
    let replies = victim.poll_mail().unwrap();
    let _ = replies;
    assert!(victim.pending_topics().is_empty(), "the answer behind the garbage was not read");
    assert!(victim.dropped_mail() >= 1);
    assert_eq!(send(&mut victim, "t", "count"), "3");
}

/// Attack 20b: A mail the host corrupts (MAIL_INVALID) does not use up its number:
/// the client sends the same bytes again and the topic goes on.
#[test]
fn a_corrupted_mail_does_not_spend_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut victim = client(proxy.url());
    proxy.next(Rule::Corrupt);
    assert_eq!(send(&mut victim, "t", "count"), "1");
    assert_eq!(send(&mut victim, "t", "count"), "2");
}

// ------------------------------------------------------- attacks the earlier suite covered

/// A reply the host hands out again, after the client restarted, is not shown twice.
#[test]
fn a_replayed_reply_is_refused_even_after_the_client_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut alice = client(proxy.url());
    assert_eq!(send(&mut alice, "t", "transfer 100"), "transfer 100");
    let old = proxy.control().direct_replies.last().cloned().unwrap();
    let mut alice = EnclaveClient::restore(HttpRelay::new(proxy.url()).unwrap(), alice.save()).unwrap();
    alice.start().unwrap();
    proxy.control().poll_rules.push_back(PollRule::Inject(vec![(1 << 41, old)]));
    assert!(alice.poll_mail().unwrap().is_empty(), "the replayed reply was shown again");
}

/// A busy host (503) does not cost the mail its number.
#[test]
fn a_busy_host_does_not_burn_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut alice = client(proxy.url());
    proxy.next(Rule::Forge { status: 503, code: "BUSY" });
    assert_eq!(send(&mut alice, "t", "count"), "1");
    assert_eq!(send(&mut alice, "t", "count"), "2");
}

/// The application's refusal is authenticated, reaches only the sender,
/// and uses up the mail's number; the next mail goes on.
#[test]
fn an_application_refusal_is_authenticated_and_final() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let mut alice = client(host.url());
    let err = alice.send_mail("t", b"refuse:bid too low").unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { sequence_number: 0, message, .. } if message == "bid too low"),
        "{err:?}"
    );
    assert!(alice.pending_topics().is_empty());
    assert_eq!(send(&mut alice, "t", "count"), "1");
}

/// Two clients kept on separate forks that never talk to the other fork
/// cannot tell: their checkpoints, compared, can.
#[test]
fn clients_kept_on_separate_forks_can_tell_by_comparing_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let a = WebHost::start(&dir.path().join("a"));
    let a = snapshot(a, &dir.path().join("b"));
    let b = WebHost::start(&dir.path().join("b"));
    let mut alice = client(a.url());
    let mut bob = client(b.url());
    send(&mut alice, "t", "count");
    send(&mut bob, "t", "count");
    let (x, y) = (alice.checkpoint(), bob.checkpoint());
    assert_eq!(x.counter, y.counter);
    assert_ne!(x.id, y.id, "two forks showed the same checkpoint");
}

/// A lost response is not mistaken for a rollback: the answer waits in the
/// queue, and the conversation goes on.
#[test]
fn a_lost_response_is_not_mistaken_for_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut alice = client(proxy.url());
    proxy.next(Rule::ForwardThenDrop);
    assert!(matches!(alice.send_mail("t", b"count").unwrap_err(), ClientError::Unsettled { .. }));
    assert_eq!(send(&mut alice, "t", "count"), "2");
    let earlier: Vec<_> = alice.poll_mail().unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(earlier, vec![b"1".to_vec()]);
}

/// The host delivers and commits a mail, restarts the enclave and says it
/// failed: the client attests again and sends again; the mail counts once.
#[test]
fn a_mail_is_not_processed_twice_when_the_host_fakes_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    let mut alice = client(proxy.url());
    assert_eq!(send(&mut alice, "t", "count"), "1");
    proxy.control().always = Some(Rule::ForwardThenForge { status: 500, code: "ENCLAVE_FAILED" });
    proxy.control().poll_rules.extend(std::iter::repeat_n(PollRule::Hide, 16));
    assert!(matches!(alice.send_mail("t", b"count").unwrap_err(), ClientError::Unsettled { .. }));
    host = restart(host);
    proxy.switch_to(host.url());
    proxy.control().always = None;
    proxy.control().poll_rules.clear();
    assert_eq!(send(&mut alice, "t", "count"), "3");
    assert_eq!(peek(host.url()), 3);
}

/// A mail-to-self the enclave deleted cannot be handed back by a host that kept a copy.
#[test]
fn deleted_mail_to_self_cannot_be_brought_back() {
    use conclave_host::LocalRelayHandle;
    use conclave_test_support::mock_client;
    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ProbeEnclave>()).unwrap();
    let mut alice = mock_client::<ProbeEnclave>(&relay);
    let say = |alice: &mut EnclaveClient<LocalRelayHandle>, body: &str| {
        String::from_utf8(alice.send_mail("t", body.as_bytes()).unwrap().unwrap().body).unwrap()
    };
    assert_eq!(say(&mut alice, "note:pay-bob-100"), "ok");
    let kept = relay.lock().store_mut().self_mail().unwrap();
    relay.lock().restart_enclave().unwrap();
    alice.start().unwrap();
    assert_eq!(say(&mut alice, "replayed"), "pay-bob-100");
    assert_eq!(say(&mut alice, "forget"), "ok");
    assert!(relay.lock().store_mut().self_mail().unwrap().is_empty());
    // The host kept a copy and hands it back at the next start.
    let mut service = relay.lock();
    let batch = conclave_host::store::Batch { self_mail: vec![kept[0].1.clone()], ..Default::default() };
    service.store_mut().commit(&batch).unwrap();
    let err = service.restart_enclave().unwrap_err();
    assert!(err.to_string().contains("deleted or never sealed"), "{err}");
}

/// A commit the store refuses puts the enclave back on the committed state,
/// in place: nothing of the call survives, and the keys stay.
#[test]
fn a_failed_commit_puts_the_enclave_back_to_the_committed_state() {
    use conclave_host::LocalRelayHandle;
    use conclave_test_support::mock_client;
    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<ProbeEnclave>()).unwrap();
    let mut alice = mock_client::<ProbeEnclave>(&relay);
    assert_eq!(String::from_utf8(alice.send_mail("t", b"count").unwrap().unwrap().body).unwrap(), "1");
    let key = alice.enclave_info().unwrap().encryption_key;
    // A delivery whose batch the store refuses (a correlation id it cannot keep).
    let mut party = RawLocal::new(&relay);
    let mail = party.mail("x", 0, b"count");
    let err = relay.lock().deliver(&"c".repeat(300), &mail).unwrap_err();
    assert_eq!(err.code(), "STORE_FAILED");
    alice.start().unwrap();
    assert_eq!(alice.enclave_info().unwrap().encryption_key, key, "the enclave restarted with new keys");
    assert_eq!(String::from_utf8(alice.send_mail("t", b"count").unwrap().unwrap().body).unwrap(), "2");
    assert_eq!(relay.lock().resets(), 1);
}

/// A client that never acknowledges cannot fill the host's disk.
#[test]
fn a_client_that_never_acknowledges_cannot_fill_the_disk() {
    use conclave_host::{HostService, LocalRelayHandle, ServiceConfig, store::SqliteStore};
    let mut config = ServiceConfig::new([9; 32]);
    config.max_queued_replies = 2;
    let service = HostService::new(
        EnclaveHost::load_mock_restartable::<ProbeEnclave>(),
        SqliteStore::open_in_memory().unwrap(),
        config,
    )
    .unwrap();
    let relay = LocalRelayHandle::new(service);
    let mut party = RawLocal::new(&relay);
    for n in 0..2 {
        let mail = party.mail("t", n, b"count");
        relay.lock().deliver("slacker", &mail).unwrap().unwrap();
    }
    let third = party.mail("t", 2, b"count");
    let err = relay.lock().deliver("slacker", &third).unwrap_err();
    assert_eq!(err.code(), "REPLY_QUEUE_FULL");
    // Refused before the enclave saw it; after acknowledging, the same mail goes through.
    let ids: Vec<u64> = relay.lock().poll("slacker", 10).unwrap().iter().map(|m| m.id).collect();
    relay.lock().acknowledge("slacker", &ids).unwrap();
    relay.lock().deliver("slacker", &third).unwrap().unwrap();
    assert_eq!(relay.lock().call_enclave(b"count").unwrap().unwrap(), b"3");
}
