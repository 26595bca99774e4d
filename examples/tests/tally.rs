//! The tally enclave in mock mode: running totals per party, counts over
//! all, refusals that change nothing, and a ledger that survives a restart.

use conclave_client::EnclaveClient;
use conclave_examples::tally::{self, MAX_AMOUNT, Response, TallyEnclave};
use conclave_host::{EnclaveHost, LocalRelayHandle};

fn party(relay: &LocalRelayHandle) -> EnclaveClient<LocalRelayHandle> {
    conclave_test_support::mock_client::<TallyEnclave>(relay)
}

fn send(client: &mut EnclaveClient<LocalRelayHandle>, body: &[u8]) -> Response {
    let reply = client.send_mail("tally", body).unwrap().expect("the enclave answers every mail at once");
    Response::parse(&reply.body).unwrap()
}

fn relay() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<TallyEnclave>()).unwrap()
}

#[test]
fn each_party_has_its_own_total_and_the_enclave_counts_all() {
    let relay = relay();
    let (mut alice, mut bob) = (party(&relay), party(&relay));
    assert_eq!(send(&mut alice, &tally::add(5).unwrap()), Response::Added { mails: 1, total: 5 });
    assert_eq!(send(&mut alice, &tally::add(7).unwrap()), Response::Added { mails: 2, total: 12 });
    assert_eq!(send(&mut bob, &tally::add(100).unwrap()), Response::Added { mails: 1, total: 100 });
    assert_eq!(
        send(&mut alice, &tally::totals()),
        Response::Totals { mails: 2, total: 12, all_mails: 3, all_total: 112 }
    );
    // A party that never added has nothing of its own.
    let mut carol = party(&relay);
    assert_eq!(
        send(&mut carol, &tally::totals()),
        Response::Totals { mails: 0, total: 0, all_mails: 3, all_total: 112 }
    );
}

#[test]
fn bad_mail_is_answered_and_changes_nothing() {
    let relay = relay();
    let mut alice = party(&relay);
    assert!(tally::add(MAX_AMOUNT + 1).is_err(), "the client checks the limit first");
    for bad in [
        format!(r#"{{"v": 1, "kind": "add", "amount": {}}}"#, MAX_AMOUNT + 1),
        r#"{"v": 1, "kind": "add", "amount": -1}"#.to_owned(),
        r#"{"v": 1, "kind": "subtract", "amount": 1}"#.to_owned(),
        r#"{"kind": "totals"}"#.to_owned(),
        "not json".to_owned(),
    ] {
        match send(&mut alice, bad.as_bytes()) {
            Response::Error { message } => assert!(!message.is_empty()),
            other => panic!("{bad}: expected an error, got {other:?}"),
        }
    }
    assert_eq!(send(&mut alice, &tally::totals()), Response::Totals { mails: 0, total: 0, all_mails: 0, all_total: 0 });
}

#[test]
fn the_ledger_survives_a_restart() {
    let relay = relay();
    let mut alice = party(&relay);
    send(&mut alice, &tally::add(40).unwrap());
    relay.lock().restart_enclave().unwrap();
    alice.start().unwrap();
    assert_eq!(send(&mut alice, &tally::add(2).unwrap()), Response::Added { mails: 2, total: 42 });
}
