//! Mock mode end to end: load, start, attest, deliver, decrypt the reply;
//! and the sequence checks that protect the enclave from a hostile host.

use conclave_core::{
    EnclaveMode, HostCommand, PostOffice, PrivateKey, Rejection, ReplyChain, RequestFrame, ResponseFrame, ResponseKind,
    SecuritySummary,
};
use conclave_enclave::EnclaveError;
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

/// A client mail body: the request frame of a client that has seen nothing yet.
fn framed(body: &[u8]) -> Vec<u8> {
    RequestFrame { request_id: [1; 16], chain: ReplyChain::START, runs: Vec::new() }.wrap(body)
}

/// The enclave's answers among `commands`, opened by `po`.
fn answers(po: &PostOffice, commands: &[HostCommand]) -> Vec<(ResponseFrame, Vec<u8>)> {
    commands
        .iter()
        .filter_map(|c| match c {
            HostCommand::PostMail { bytes, .. } => {
                let mail = po.decrypt_mail(bytes).unwrap();
                let (frame, body) = ResponseFrame::unwrap(&mail.body).unwrap();
                Some((frame, body.to_vec()))
            }
            _ => None,
        })
        .collect()
}

fn rejection(po: &PostOffice, commands: &[HostCommand]) -> Rejection {
    match answers(po, commands).as_slice() {
        [(ResponseFrame { kind: ResponseKind::Rejected(rejection, _), .. }, _)] => *rejection,
        other => panic!("expected one rejection, got {other:?}"),
    }
}

#[test]
fn round_trip_through_a_mock_enclave() {
    let mut host = started();
    let info = host.enclave_instance_info().unwrap().verify(0).unwrap();
    assert_eq!(info.mode, EnclaveMode::Mock);
    assert_eq!(info.identity.security, SecuritySummary::Insecure);
    assert_eq!(info.run.counter, 1, "the run's own state is the first");

    let mut po = post_office(&host, "reverse");
    let mail = po.encrypt_mail(&framed(b"hello enclave"), &mut OsRng).unwrap();
    let delivered = host.deliver_mail(&mail, Some("client-1")).unwrap();
    assert_eq!(delivered.outcome, "ACCEPTED");
    let [HostCommand::PostMail { routing_hint, .. }, HostCommand::StoreSealedState { counter: 2, .. }] =
        delivered.commands.as_slice()
    else {
        panic!("expected the reply and the new state, got {:?}", delivered.commands);
    };
    assert_eq!(routing_hint.as_deref(), Some("client-1"));
    let [(frame, body)] = answers(&po, &delivered.commands).try_into().unwrap();
    assert_eq!(body, b"evalcne olleh");
    assert_eq!(frame.kind, ResponseKind::Reply);
    // Every accepted mail makes a new state: the reply names it and the mail it answers.
    assert_eq!(frame.state.counter, 2);
    assert_eq!(frame.answers.map(|a| (a.topic, a.sequence_number)), Some(("reverse".to_owned(), 0)));
    assert_eq!(frame.link.map(|l| l.index), Some(1));
    // The test reaches the enclave object itself.
    assert_eq!(host.mock_enclave::<ReverseEnclave>().unwrap().answered, 1);
}

#[test]
fn replay_reorder_and_gap_are_rejected_with_distinct_errors() {
    let mut host = started();
    let mut po = post_office(&host, "t");
    let mails: Vec<Vec<u8>> = (0..5).map(|_| po.encrypt_mail(&framed(b"x"), &mut OsRng).unwrap()).collect();
    let deliver = |host: &mut EnclaveHost, mail: &[u8]| host.deliver_mail(mail, None).unwrap();

    deliver(&mut host, &mails[0]);
    // Replay: mail 0 again.
    let replayed = deliver(&mut host, &mails[0]);
    assert_eq!((replayed.outcome, rejection(&po, &replayed.commands)), ("SEQUENCE_REPLAYED", Rejection::Replayed));
    // Gap: mail 3 while 1 is expected.
    let gap = deliver(&mut host, &mails[3]);
    assert_eq!(rejection(&po, &gap.commands), Rejection::Gap);
    // Reorder: mail 2 arrives after mail 3 was presented.
    let reordered = deliver(&mut host, &mails[2]);
    assert_eq!(rejection(&po, &reordered.commands), Rejection::Reordered);
    // A rejection changes nothing: no state is sealed.
    assert!(!reordered.commands.iter().any(|c| matches!(c, HostCommand::StoreSealedState { .. })));
    // None of it reached the application, and the stream goes on in order.
    assert_eq!(host.mock_enclave::<ReverseEnclave>().unwrap().answered, 1);
    for mail in &mails[1..] {
        assert_eq!(deliver(&mut host, mail).outcome, "ACCEPTED");
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
        let mail = po.encrypt_mail(&framed(b"x"), &mut OsRng).unwrap();
        assert_eq!(host.deliver_mail(&mail, None).unwrap().outcome, "ACCEPTED");
    }
}

#[test]
fn garbage_and_mail_for_another_enclave_are_refused() {
    let mut host = started();
    assert!(matches!(host.deliver_mail(b"not a mail", None), Err(HostError::Enclave(EnclaveError::Mail(_)))));
    // A mail without a request frame is answered with an authenticated rejection.
    let mut po = post_office(&host, "t");
    let unframed = po.encrypt_mail(b"x", &mut OsRng).unwrap();
    let rejected = host.deliver_mail(&unframed, None).unwrap();
    assert_eq!(rejection(&po, &rejected.commands), Rejection::BadRequest);
    let mut other = EnclaveHost::load_mock(ReverseEnclave::default());
    other.start(None).unwrap();
    let mut po = post_office(&other, "t");
    let mail = po.encrypt_mail(&framed(b"x"), &mut OsRng).unwrap();
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
