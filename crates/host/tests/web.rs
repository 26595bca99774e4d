//! The web host over real HTTP on port 0: attestation, delivery, polling and
//! acknowledgement, every documented error, back-pressure, health, metrics
//! and a durable store across host restarts.

use std::time::Duration;

use conclave_core::{EnclaveInstanceInfo, Rejection, ResponseKind};
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use conclave_examples::reverse::ReverseEnclave;
use conclave_host::{EnclaveHost, HostService, ServiceConfig, mock_identity, store::SqliteStore, web::WebConfig};
use conclave_test_support::web::{
    Gate, Party, WebHost as TestHost, ack, agent, answer, get, poll, post_mail, wait_for,
};
use rand_core::OsRng;

fn reverse_service() -> HostService {
    HostService::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap()
}

fn assert_still_serving(host: &TestHost) {
    let health = get(host, "/v1/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(get(host, "/v1/attestation").status, 200);
}

#[test]
fn attestation_binary_and_json() {
    let host = TestHost::start(reverse_service(), WebConfig::default());
    let binary = get(&host, "/v1/attestation");
    assert_eq!(binary.status, 200);
    assert_eq!(binary.header("content-type"), Some("application/octet-stream"));
    let info = EnclaveInstanceInfo::decode(&binary.body).unwrap();
    assert_eq!(info.verify(now()).unwrap().mode.as_str(), "MOCK");

    let json = answer(agent().get(host.url("/v1/attestation")).header("Accept", "application/json").call());
    assert_eq!(json.status, 200);
    assert!(json.header("content-type").unwrap().starts_with("application/json"));
    let json = json.json();
    let identity = mock_identity::<ReverseEnclave>();
    assert_eq!(json["code_hash"], hex::encode(identity.code_hash));
    assert_eq!(json["code_signing_key_hash"], hex::encode(identity.code_signing_key_hash));
    assert_eq!(json["product_id"], 0);
    assert_eq!(json["revocation_level"], 0);
    assert_eq!(json["mode"], "MOCK");
    assert_eq!(json["security"]["summary"], "INSECURE");
    assert!(!json["security"]["reason"].as_str().unwrap().is_empty());
    assert_eq!(json["encryption_key"], info.encryption_key().to_hex());
    assert_eq!(json["data_signing_key"], hex::encode(info.data_signing_key()));
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn deliver_poll_and_acknowledge() {
    let host = TestHost::start(reverse_service(), WebConfig::default());
    let mut party = Party::new(&host, "chat");

    let first = post_mail(&host, Some("alice-1"), &party.mail(b"hello"));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("application/octet-stream"));
    let first_id: u64 = first.header("reply-id").unwrap().parse().unwrap();
    assert_eq!(party.open(&first.body), b"olleh");

    let second = post_mail(&host, Some("alice-1"), &party.mail(b"abc"));
    assert_eq!(second.status, 200);
    let second_id: u64 = second.header("reply-id").unwrap().parse().unwrap();
    assert_ne!(first_id, second_id);

    // Both replies stay queued until acknowledged, oldest first.
    let queued = poll(&host, "alice-1");
    assert_eq!(queued.iter().map(|q| q.0).collect::<Vec<_>>(), vec![first_id, second_id]);
    assert_eq!(queued[0].1, first.body);
    assert_eq!(party.open(&queued[1].1), b"cba");

    // Polling again does not consume them.
    assert_eq!(poll(&host, "alice-1").len(), 2);
    let limited = get(&host, "/v1/mail/alice-1?limit=1");
    assert_eq!(limited.json()["replies"].as_array().unwrap().len(), 1);

    let acked = ack(&host, "alice-1", &[first_id]);
    assert_eq!(acked.status, 200);
    assert_eq!(acked.json()["deleted"], 1);
    assert_eq!(poll(&host, "alice-1").iter().map(|q| q.0).collect::<Vec<_>>(), vec![second_id]);
    // Acknowledging again deletes nothing and is not an error.
    assert_eq!(ack(&host, "alice-1", &[first_id]).json()["deleted"], 0);
    assert_eq!(ack(&host, "alice-1", &[second_id]).json()["deleted"], 1);
    assert!(poll(&host, "alice-1").is_empty());

    // Another correlation id sees none of alice's replies.
    let mut bob = Party::new(&host, "chat");
    assert_eq!(post_mail(&host, Some("bob"), &bob.mail(b"xy")).status, 200);
    assert_eq!(poll(&host, "bob").len(), 1);
    assert!(poll(&host, "alice-1").is_empty());
}

/// An enclave that replies to nobody: the runtime answers with a receipt.
#[derive(Default)]
struct Silent;

impl Enclave for Silent {
    fn receive_mail(
        &mut self,
        _: &mut EnclaveContext<'_>,
        _: EnclaveMail,
        _: Option<&str>,
    ) -> Result<(), EnclaveError> {
        Ok(())
    }
}

#[test]
fn a_mail_the_application_does_not_answer_gets_a_receipt() {
    let service = HostService::in_memory(EnclaveHost::load_mock(Silent)).unwrap();
    let host = TestHost::start(service, WebConfig::default());
    let mut party = Party::new(&host, "t");
    let answer = post_mail(&host, Some("quiet"), &party.mail(b"x"));
    assert_eq!(answer.status, 200);
    let (frame, body) = party.answer(&answer.body);
    assert_eq!((frame.kind, body.is_empty()), (ResponseKind::Receipt, true));
    assert_eq!(frame.answers.unwrap().sequence_number, 0);
    assert_eq!(poll(&host, "quiet").len(), 1);
}

#[test]
fn bad_inputs_get_documented_errors_and_the_host_keeps_serving() {
    let config = WebConfig::default().with_max_body_bytes(64 * 1024);
    let host = TestHost::start(reverse_service(), config);

    // Random bytes as mail.
    let mut noise = vec![0u8; 500];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut noise);
    post_mail(&host, Some("c1"), &noise).assert_error(400, "MAIL_INVALID");
    assert_still_serving(&host);

    // Missing and invalid Correlation-ID.
    let mut party = Party::new(&host, "t");
    let mail = party.mail(b"hi");
    post_mail(&host, None, &mail).assert_error(400, "MISSING_CORRELATION_ID");
    post_mail(&host, Some("has space"), &mail).assert_error(400, "INVALID_CORRELATION_ID");
    post_mail(&host, Some(&"x".repeat(257)), &mail).assert_error(400, "INVALID_CORRELATION_ID");
    post_mail(&host, Some("ok"), b"").assert_error(400, "BAD_REQUEST");
    assert_still_serving(&host);

    // Oversized body.
    post_mail(&host, Some("c1"), &vec![7u8; 64 * 1024 + 1]).assert_error(413, "PAYLOAD_TOO_LARGE");
    assert_still_serving(&host);

    // The mail was never delivered, so it is still good; replaying it is not:
    // the enclave says so to the sender, encrypted.
    assert_eq!(post_mail(&host, Some("c1"), &mail).status, 200);
    let replayed = post_mail(&host, Some("c1"), &mail);
    assert_eq!(replayed.status, 200);
    assert_eq!(party.rejection(&replayed.body), Rejection::Replayed);
    // Skipping a sequence number.
    let _skipped = party.mail(b"lost");
    let gap = post_mail(&host, Some("c1"), &party.mail(b"after gap"));
    assert_eq!(party.rejection(&gap.body), Rejection::Gap);
    assert_still_serving(&host);

    // Unknown correlation ids, routes and methods; malformed acknowledgements.
    get(&host, "/v1/mail/never-used").assert_error(404, "UNKNOWN_CORRELATION_ID");
    ack(&host, "never-used", &[1]).assert_error(404, "UNKNOWN_CORRELATION_ID");
    get(&host, "/v1/mail/bad%20id").assert_error(400, "INVALID_CORRELATION_ID");
    get(&host, "/v1/mail/c1?limit=abc").assert_error(400, "BAD_REQUEST");
    // openapi.yaml says limit >= 1: 0 is an error that names the parameter, not one reply.
    let zero = get(&host, "/v1/mail/c1?limit=0");
    zero.assert_error(400, "BAD_REQUEST");
    assert!(zero.json()["message"].as_str().unwrap().contains("limit"), "{}", zero.json());
    get(&host, "/v1/nothing-here").assert_error(404, "NOT_FOUND");
    answer(agent().delete(host.url("/v1/attestation")).call()).assert_error(405, "METHOD_NOT_ALLOWED");
    answer(agent().post(host.url("/v1/mail/c1/ack")).send(&b"{\"ids\": \"x\"}"[..])).assert_error(400, "BAD_REQUEST");

    // And a good mail still works after all of that.
    let reply = post_mail(&host, Some("c2"), &Party::new(&host, "t").mail(b"fine"));
    assert_eq!(reply.status, 200);

    // Errors are counted by code.
    let metrics = String::from_utf8(get(&host, "/metrics").body).unwrap();
    for code in ["MAIL_INVALID", "PAYLOAD_TOO_LARGE", "UNKNOWN_CORRELATION_ID"] {
        assert!(metrics.contains(&format!("conclave_errors_total{{code=\"{code}\"}}")), "{code} in\n{metrics}");
    }
}

#[test]
fn a_full_worker_queue_answers_503_with_retry_after_and_reads_still_answer() {
    let (gate, entered, release) = Gate::new();
    let service = HostService::in_memory(EnclaveHost::load_mock(gate)).unwrap();
    let config = WebConfig::default().with_queue_capacity(1).with_retry_after(Duration::from_secs(7));
    let host = TestHost::start(service, config);
    let mut first_party = Party::new(&host, "t");
    let mut second_party = Party::new(&host, "t");
    let first_mail = first_party.mail(b"slow");
    let second_mail = second_party.mail(b"queued");

    // The worker blocks inside the enclave with the first mail...
    let base = host.base.clone();
    let blocked = std::thread::spawn(move || {
        let request = agent().post(format!("{base}/v1/mail")).header("Correlation-ID", "slow");
        answer(request.send(&first_mail[..]))
    });
    entered.recv_timeout(Duration::from_secs(20)).expect("the enclave was not called");
    // ...a second mail takes the only queue slot...
    let base = host.base.clone();
    let queued = std::thread::spawn(move || {
        let request = agent().post(format!("{base}/v1/mail")).header("Correlation-ID", "queued");
        answer(request.send(&second_mail[..]))
    });
    wait_for("the second mail to be queued", || get(&host, "/v1/health").json()["worker_queue"] == 1);

    // ...so the third is refused at once,
    let busy = post_mail(&host, Some("third"), &Party::new(&host, "t").mail(b"no room"));
    busy.assert_error(503, "BUSY");
    assert_eq!(busy.header("retry-after"), Some("7"));
    let metrics = String::from_utf8(get(&host, "/metrics").body).unwrap();
    assert!(metrics.contains("conclave_worker_queue_length 1"), "{metrics}");
    assert!(metrics.contains("conclave_refused_total{cause=\"busy\"} 1"), "{metrics}");
    // while attestation, its JSON view and health do not wait behind the mail,
    assert_eq!(get(&host, "/v1/attestation").status, 200);
    let json = answer(agent().get(host.url("/v1/attestation")).header("Accept", "application/json").call());
    assert_eq!(json.status, 200);
    // and health tells the truth about the refusal.
    let health = get(&host, "/v1/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["reasons"], serde_json::json!(["deliveries_refused_busy"]), "{health}");

    release.send(()).unwrap();
    let first = blocked.join().unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first_party.open(&first.body), b"slow");
    entered.recv_timeout(Duration::from_secs(20)).expect("the queued mail was not delivered");
    release.send(()).unwrap();
    let second = queued.join().unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second_party.open(&second.body), b"queued");
    wait_for("the queue to drain", || get(&host, "/v1/health").json()["worker_queue"] == 0);
}

#[test]
fn health_and_metrics() {
    let host = TestHost::start(reverse_service(), WebConfig::default());
    let health = get(&host, "/v1/health");
    assert_eq!(health.status, 200);
    let json = health.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["reasons"], serde_json::json!([]));
    assert_eq!(json["enclave"], "running");
    assert_eq!(json["stored_replies"], 0);

    let mut party = Party::new(&host, "t");
    for body in [&b"one"[..], b"two", b"three"] {
        assert_eq!(post_mail(&host, Some("m"), &party.mail(body)).status, 200);
    }
    assert_eq!(get(&host, "/v1/health").json()["stored_replies"], 3);

    let metrics = get(&host, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().contains("text"));
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        "conclave_mails_in_total 3",
        "conclave_mails_out_total 3",
        "conclave_stored_replies 3",
        "conclave_worker_queue_length 0",
        "conclave_enclave_restarts_total 0",
        "conclave_delivery_duration_seconds_count 3",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn replies_survive_a_host_restart_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let secret = [9u8; 32];
    let service = |store| {
        HostService::new(EnclaveHost::load_mock_restartable::<ReverseEnclave>(), store, ServiceConfig::new(secret))
            .unwrap()
    };

    let host = TestHost::start(service(SqliteStore::open(&db).unwrap()), WebConfig::default());
    let mut party = Party::new(&host, "t");
    let first = post_mail(&host, Some("durable"), &party.mail(b"keep me"));
    let id: u64 = first.header("reply-id").unwrap().parse().unwrap();
    host.stop().unwrap();

    let host = TestHost::start(service(SqliteStore::open(&db).unwrap()), WebConfig::default());
    let queued = poll(&host, "durable");
    assert_eq!(queued, vec![(id, first.body.clone())]);
    assert_eq!(party.open(&queued[0].1), b"em peek");
    assert_eq!(ack(&host, "durable", &[id]).json()["deleted"], 1);
    assert!(poll(&host, "durable").is_empty());
}

/// docs/http-api.md's error table and docs/openapi.yaml agree with `http_status`.
#[test]
fn documented_error_statuses_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let guide = std::fs::read_to_string(root.join("docs/http-api.md")).unwrap();
    let openapi = std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap();
    let mut rows = 0;
    for line in guide.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, status, code, ..] = cells[..] else { continue };
        let (Ok(status), Some(code)) =
            (status.parse::<u16>(), code.strip_prefix('`').and_then(|c| c.strip_suffix('`')))
        else {
            continue;
        };
        assert_eq!(conclave_host::web::http_status(code).as_u16(), status, "{code} in docs/http-api.md");
        assert!(openapi.contains(&format!("- {code}\n")), "{code} missing from docs/openapi.yaml");
        rows += 1;
    }
    assert_eq!(rows, 23, "the error table of docs/http-api.md changed size");
}
