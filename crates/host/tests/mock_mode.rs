//! Mock mode end to end: load, start, attest, deliver, decrypt the reply;
//! and the sequence checks that protect the enclave from a hostile host.

use conclave_core::{EnclaveMode, HostCommand, PostOffice, PrivateKey, SecuritySummary, StateFrame};
use conclave_enclave::{EnclaveError, SequenceError};
use conclave_examples::reverse::ReverseEnclave;
use conclave_host::{EnclaveHost, HostError};
use rand_core::OsRng;

fn started() -> EnclaveHost {
    let mut host = EnclaveHost::load_mock(ReverseEnclave::default());
    host.start(None).unwrap();
    host
}

fn post_office(host: &EnclaveHost, topic: &str) -> PostOffice {
    let info = host.enclave_instance_info().unwrap().verify(0).unwrap();
    PostOffice::new(PrivateKey::generate(&mut OsRng), info.encryption_key, topic).unwrap()
}

fn sequence_error(result: Result<Vec<HostCommand>, HostError>) -> SequenceError {
    match result {
        Err(HostError::Enclave(EnclaveError::Sequence(e))) => e,
        other => panic!("expected a sequence error, got {other:?}"),
    }
}

#[test]
fn round_trip_through_a_mock_enclave() {
    let mut host = started();
    let info = host.enclave_instance_info().unwrap().verify(0).unwrap();
    assert_eq!(info.mode, EnclaveMode::Mock);
    assert_eq!(info.identity.security, SecuritySummary::Insecure);

    let mut po = post_office(&host, "reverse");
    let mail = po.encrypt_mail(b"hello enclave", &mut OsRng).unwrap();
    let commands = host.deliver_mail(&mail, Some("client-1")).unwrap();
    let [HostCommand::PostMail { bytes, routing_hint }] = commands.as_slice() else {
        panic!("expected one PostMail, got {commands:?}");
    };
    assert_eq!(routing_hint.as_deref(), Some("client-1"));
    let reply = po.decrypt_mail(bytes).unwrap();
    let (frame, body) = StateFrame::unwrap(&reply.body).unwrap();
    assert_eq!(body, b"evalcne olleh");
    // The reverse enclave keeps no state: no sealed state exists yet.
    assert_eq!(frame.counter, 0);
    assert_eq!(reply.header.topic(), "reverse");
    // The test reaches the enclave object itself.
    assert_eq!(host.mock_enclave::<ReverseEnclave>().unwrap().answered, 1);
}

#[test]
fn replay_reorder_and_gap_are_rejected_with_distinct_errors() {
    let mut host = started();
    let mut po = post_office(&host, "t");
    let mails: Vec<Vec<u8>> = (0..5).map(|_| po.encrypt_mail(b"x", &mut OsRng).unwrap()).collect();

    host.deliver_mail(&mails[0], None).unwrap();
    // Replay: mail 0 again.
    assert!(matches!(
        sequence_error(host.deliver_mail(&mails[0], None)),
        SequenceError::Replayed { expected: 1, received: 0, .. }
    ));
    // Gap: mail 3 while 1 is expected.
    assert!(matches!(
        sequence_error(host.deliver_mail(&mails[3], None)),
        SequenceError::Gap { expected: 1, received: 3, .. }
    ));
    // Reorder: mail 2 arrives after mail 3 was presented.
    assert!(matches!(
        sequence_error(host.deliver_mail(&mails[2], None)),
        SequenceError::Reordered { expected: 1, received: 2, later_seen: 3, .. }
    ));
    // None of it reached the application, and the stream goes on in order.
    assert_eq!(host.mock_enclave::<ReverseEnclave>().unwrap().answered, 1);
    for mail in &mails[1..] {
        host.deliver_mail(mail, None).unwrap();
    }
    assert_eq!(host.mock_enclave::<ReverseEnclave>().unwrap().answered, 5);
}

#[test]
fn sequences_are_per_sender_and_topic() {
    let mut host = started();
    let mut a = post_office(&host, "t");
    let mut b = post_office(&host, "t");
    let mut a2 = PostOffice::new(PrivateKey::generate(&mut OsRng), *a.destination(), "other").unwrap();
    for po in [&mut a, &mut b, &mut a2] {
        let mail = po.encrypt_mail(b"x", &mut OsRng).unwrap();
        host.deliver_mail(&mail, None).unwrap();
    }
}

#[test]
fn garbage_and_mail_for_another_enclave_are_refused() {
    let mut host = started();
    assert!(matches!(host.deliver_mail(b"not a mail", None), Err(HostError::Enclave(EnclaveError::Mail(_)))));
    let mut other = EnclaveHost::load_mock(ReverseEnclave::default());
    other.start(None).unwrap();
    let mut po = post_office(&other, "t");
    let mail = po.encrypt_mail(b"x", &mut OsRng).unwrap();
    let err = host.deliver_mail(&mail, None).unwrap_err();
    assert_eq!(err.code(), "MAIL_INVALID");
    assert_eq!(host.mock_enclave::<ReverseEnclave>().unwrap().answered, 0);
}

#[test]
fn keys_are_fresh_at_every_start() {
    let a = started();
    let b = started();
    assert_ne!(
        a.enclave_instance_info().unwrap().encryption_key(),
        b.enclave_instance_info().unwrap().encryption_key()
    );
}

#[test]
fn call_enclave_and_lifecycle_errors() {
    let mut host = EnclaveHost::load_mock(ReverseEnclave::default());
    assert!(matches!(host.call_enclave(b"abc"), Err(HostError::NotStarted)));
    host.start(None).unwrap();
    assert!(matches!(host.start(None), Err(HostError::AlreadyStarted)));
    let outcome = host.call_enclave(b"abc").unwrap();
    assert_eq!(outcome.response.as_deref(), Some(&b"cba"[..]));
    assert!(outcome.commands.is_empty());
    host.close();
    assert!(matches!(host.enclave_instance_info(), Err(HostError::NotStarted)));
}
