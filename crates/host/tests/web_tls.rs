//! The web host over TLS: clients that trust its CA get through, others and
//! plain HTTP do not, a stalled handshake is closed, and plain HTTP is
//! refused on an address other than loopback.

use std::{io::Read, net::TcpStream, sync::Arc, time::Duration};

use conclave_examples::reverse::ReverseEnclave;
use conclave_host::{
    EnclaveHost, HostService,
    web::{TlsConfig, WebConfig, WebError, check_transport, run},
};
use conclave_test_support::web::{TestCertificate, WebHost, answer, ca_issued_localhost, self_signed_localhost};

fn reverse() -> HostService {
    HostService::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap()
}

fn tls_host(cert: &TestCertificate, config: WebConfig) -> WebHost {
    let tls = TlsConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    WebHost::start(reverse(), config.with_tls(tls))
}

/// An agent that trusts exactly `pem`.
fn trusting(pem: &str) -> ureq::Agent {
    let certs: Vec<_> = ureq::tls::parse_pem(pem.as_bytes())
        .filter_map(|item| match item.unwrap() {
            ureq::tls::PemItem::Certificate(cert) => Some(cert),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs))).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls)
        .build()
        .into()
}

fn metric(host: &WebHost, agent: &ureq::Agent, line_start: &str) -> u64 {
    let text = String::from_utf8(answer(agent.get(host.url("/metrics")).call()).body).unwrap();
    text.lines().find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

#[test]
fn a_client_that_trusts_the_ca_is_served_over_tls() {
    for cert in [ca_issued_localhost(), self_signed_localhost()] {
        let host = tls_host(&cert, WebConfig::default());
        assert!(host.base.starts_with("https://localhost:"), "{}", host.base);
        let agent = trusting(&cert.trust_pem);
        let health = answer(agent.get(host.url("/v1/health")).call());
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["status"], "ok");
        let attestation = answer(agent.get(host.url("/v1/attestation")).call());
        assert_eq!(attestation.status, 200);
        assert!(!attestation.body.is_empty());
    }
}

#[test]
fn a_client_that_does_not_trust_the_certificate_and_plain_http_are_refused() {
    let cert = ca_issued_localhost();
    let host = tls_host(&cert, WebConfig::default());
    // The web roots do not know this CA.
    let error = ureq::get(host.url("/v1/health")).call().unwrap_err();
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
    // Another CA is no better.
    let stranger = ca_issued_localhost();
    assert!(trusting(&stranger.trust_pem).get(host.url("/v1/health")).call().is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = format!("http://{}/v1/health", host.addr);
    assert!(ureq::get(&plain).call().is_err());
    let agent = trusting(&cert.trust_pem);
    assert!(metric(&host, &agent, "conclave_tls_handshake_failures_total") >= 2);
}

#[test]
fn a_stalled_handshake_is_closed_at_the_header_timeout() {
    let cert = self_signed_localhost();
    let host = tls_host(&cert, WebConfig::default().with_header_timeout(Duration::from_millis(300)));
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 16];
    // Nothing sent, nothing received: the host closes the socket.
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    let agent = trusting(&cert.trust_pem);
    assert_eq!(metric(&host, &agent, "conclave_timeouts_total{cause=\"tls_handshake\"}"), 1);
}

#[test]
fn plain_http_is_refused_off_loopback_unless_allowed() {
    let everywhere = "0.0.0.0:8080".parse().unwrap();
    let error = check_transport(everywhere, &WebConfig::default()).unwrap_err();
    assert!(matches!(error, WebError::PlainHttpOnNetwork { .. }), "{error}");
    assert!(error.to_string().contains("--tls-cert"), "{error}");
    assert!(check_transport(everywhere, &WebConfig::default().with_insecure_http(true)).is_ok());
    assert!(check_transport("127.0.0.1:8080".parse().unwrap(), &WebConfig::default()).is_ok());
    assert!(check_transport("[::1]:8080".parse().unwrap(), &WebConfig::default()).is_ok());
    let cert = self_signed_localhost();
    let tls = TlsConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    assert!(check_transport(everywhere, &WebConfig::default().with_tls(tls)).is_ok());

    // `run` itself refuses, before serving anything.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        run(listener, reverse(), WebConfig::default(), std::future::pending()).await
    });
    assert_eq!(refused.unwrap_err().code(), "HOST_FAILED");
}
