//! EnclaveClient over HttpRelay against a real web host on port 0.

use std::time::Duration;

use conclave_client::{EnclaveClient, HttpRelay, HttpRelayOptions};
use conclave_core::{EnclaveConstraint, MailRelay};
use conclave_examples::{
    reverse::ReverseEnclave,
    stats::{self, StatsEnclave},
};
use conclave_host::{EnclaveHost, HostService, mock_identity, web::WebConfig};
use conclave_test_support::web::WebHost;

/// A web host on port 0 with the default configuration.
struct TestHost(WebHost);

impl TestHost {
    fn start(service: HostService) -> Self {
        Self(WebHost::start(service, WebConfig::default()))
    }

    fn relay(&self) -> HttpRelay {
        HttpRelay::new(&self.0.base).unwrap()
    }
}

fn constraint_for<E: conclave_enclave::Enclave>() -> EnclaveConstraint {
    let code_hash = hex::encode(mock_identity::<E>().code_hash);
    EnclaveConstraint::parse(&format!("C:{code_hash} SEC:INSECURE")).unwrap()
}

#[test]
fn round_trip_with_saved_state() {
    let host = TestHost::start(HostService::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("client.state");

    let mut client = EnclaveClient::new(host.relay(), constraint_for::<ReverseEnclave>());
    assert_eq!(client.start().unwrap().mode.as_str(), "MOCK");
    let reply = client.send_mail("greeting", b"hello, enclave").unwrap().expect("a reply");
    assert_eq!(reply.body, b"evalcne ,olleh");
    assert_eq!(reply.topic, "greeting");
    // The direct reply was acknowledged by send_mail: nothing is left to poll.
    assert!(client.poll_mail().unwrap().is_empty());
    client.save_to_file(&state).unwrap();

    // A restored client continues the sequence (a replay would be refused).
    let mut restored = EnclaveClient::restore_from_file(host.relay(), &state).unwrap();
    restored.start().unwrap();
    let reply = restored.send_mail("greeting", b"again").unwrap().expect("a reply");
    assert_eq!(reply.body, b"niaga");
    assert_eq!((reply.sequence_number, reply.answers), (2, Some(1)));

    // A client that does not trust this enclave refuses to start.
    let other = EnclaveConstraint::parse(&format!("C:{} SEC:INSECURE", "ab".repeat(32))).unwrap();
    assert!(EnclaveClient::new(host.relay(), other).start().is_err());
}

#[test]
fn queued_replies_are_polled_and_acknowledged() {
    let host = TestHost::start(HostService::in_memory(EnclaveHost::load_mock_restartable::<StatsEnclave>()).unwrap());
    let mut parties: Vec<_> = (0..3)
        .map(|_| {
            let mut client = EnclaveClient::new(host.relay(), constraint_for::<StatsEnclave>());
            client.start().unwrap();
            client
        })
        .collect();
    for (party, values) in parties.iter_mut().zip([[1.0, 2.0], [3.0, 4.0], [5.0, 15.0]]) {
        let reply = party.send_mail("stats", &stats::submit(&values).unwrap()).unwrap().unwrap();
        assert_eq!(stats::Response::parse(&reply.body).unwrap(), stats::Response::Submitted { count: 2 });
    }
    let result = parties[2].send_mail("stats", &stats::compute()).unwrap().unwrap();
    let stats::Response::Result(summary) = stats::Response::parse(&result.body).unwrap() else { panic!("no result") };
    assert_eq!((summary.parties, summary.count, summary.min, summary.max), (3, 6, 1.0, 15.0));
    assert!((summary.mean - 5.0).abs() < 1e-9);

    // The other two find the same result waiting; polling acknowledges it.
    for party in &mut parties[..2] {
        let replies = party.poll_mail().unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(stats::Response::parse(&replies[0].body).unwrap(), stats::Response::Result(summary.clone()));
        assert!(party.poll_mail().unwrap().is_empty(), "acknowledged replies must be gone");
    }
}

#[test]
fn host_errors_keep_their_codes() {
    let host = TestHost::start(HostService::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap());
    let mut relay = host.relay();
    let error = relay.deliver("c1", b"not a mail at all").unwrap_err();
    assert_eq!(error.code, "MAIL_INVALID", "{error}");
    let error = relay.poll("never-seen").unwrap_err();
    assert_eq!(error.code, "UNKNOWN_CORRELATION_ID", "{error}");
    let error = relay.acknowledge("never-seen", &[1]).unwrap_err();
    assert_eq!(error.code, "UNKNOWN_CORRELATION_ID", "{error}");
    assert!(!relay.attestation().unwrap().is_empty());
}

#[test]
fn an_unreachable_host_is_unreachable() {
    // Bind and drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut relay = HttpRelay::with_timeout(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
    let error = relay.attestation().unwrap_err();
    assert_eq!(error.code, HttpRelay::UNREACHABLE, "{error}");
    let mut client = EnclaveClient::new(relay, constraint_for::<ReverseEnclave>());
    assert!(client.start().is_err());
}

#[test]
fn https_with_a_trusted_self_signed_certificate_and_not_without() {
    let cert = conclave_test_support::web::self_signed_localhost();
    let tls = conclave_host::web::TlsConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    let service = HostService::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap();
    let host = WebHost::start(service, WebConfig::default().with_tls(tls));
    assert!(host.base.starts_with("https://"));

    let options = HttpRelayOptions::default().trust_ca_pem(cert.trust_pem.as_bytes()).unwrap();
    let relay = HttpRelay::with_options(&host.base, options).unwrap();
    let mut client = EnclaveClient::new(relay, constraint_for::<ReverseEnclave>());
    client.start().unwrap();
    assert_eq!(client.send_mail("t", b"over tls").unwrap().unwrap().body, b"slt revo");

    // Without the certificate, the web roots do not vouch for this host.
    let error = HttpRelay::new(&host.base).unwrap().attestation().unwrap_err();
    assert_eq!(error.code, HttpRelay::UNREACHABLE, "{error}");
    assert!(error.message.to_lowercase().contains("certificate"), "{}", error.message);
}

#[test]
fn a_3_mib_mail_refused_as_busy_arrives_as_busy_not_as_a_broken_pipe() {
    use conclave_test_support::web::{BlockedWorker, Gate};
    let (gate, entered, release) = Gate::new();
    let service = HostService::in_memory(EnclaveHost::load_mock(gate)).unwrap();
    let host = WebHost::start(service, WebConfig::default().with_queue_capacity(1));
    let worker = BlockedWorker::start(&host, &entered, release);

    // HttpRelay sends `Expect: 100-continue` for a mail this large: the host
    // refuses from the head, and the body is never sent.
    let mut relay = HttpRelay::new(&host.base).unwrap();
    let error = relay.deliver("big", &vec![0x42; 3 * 1024 * 1024]).unwrap_err();
    assert_eq!(error.code, "BUSY", "{error}");
    assert_eq!(worker.release(), (200, 200));
}
