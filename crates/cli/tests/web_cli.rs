//! `conclave host`, `attest`, `send`, `poll` and `attestation show`, run as
//! a user would: the host as a child process on port 0, clients as separate
//! processes, plus a host killed with SIGKILL and restarted on its data directory.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::{EnclaveInstanceInfo, PostOffice, PrivateKey, ReplyChain, RequestFrame, ResponseFrame};
use conclave_test_support::process::ServingProcess;
use rand_core::OsRng;

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

fn conclave(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run conclave")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `conclave host --example` child process; killed when dropped.
struct HostProcess;

impl HostProcess {
    fn start(example: &str, data_dir: &Path) -> ServingProcess {
        Self::start_in("mock", example, data_dir)
    }

    fn start_in(mode: &str, example: &str, data_dir: &Path) -> ServingProcess {
        Self::start_with(mode, example, data_dir, &[])
    }

    fn start_with(mode: &str, example: &str, data_dir: &Path, extra: &[&str]) -> ServingProcess {
        let mut args: Vec<std::ffi::OsString> =
            ["host", "--mode", mode, "--example", example, "--listen", "127.0.0.1:0"].iter().map(Into::into).collect();
        args.extend(["--data-dir".into(), data_dir.as_os_str().to_owned()]);
        args.extend(extra.iter().map(Into::into));
        ServingProcess::start(Path::new(BIN), args)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn attestation_bytes(url: &str) -> Vec<u8> {
    agent().get(format!("{url}/v1/attestation")).call().unwrap().body_mut().read_to_vec().unwrap()
}

/// The host's attestation in its JSON view.
fn attestation_json(url: &str) -> serde_json::Value {
    let json = agent()
        .get(format!("{url}/v1/attestation"))
        .header("Accept", "application/json")
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn code_hash(url: &str) -> String {
    attestation_json(url)["code_hash"].as_str().unwrap().to_owned()
}

fn constraint(url: &str) -> String {
    format!("C:{} SEC:INSECURE", code_hash(url))
}

#[test]
fn help_of_each_new_command_documents_exit_codes() {
    for command in [&["host"][..], &["attest"], &["send"], &["poll"], &["attestation", "show"]] {
        let output = conclave(&[command, &["--help"]].concat());
        assert!(output.status.success(), "{command:?}");
        let text = stdout(&output);
        assert!(text.contains("Usage: conclave"), "{command:?}: {text}");
        assert!(text.contains("Exit codes:"), "{command:?}: {text}");
    }
    assert!(stdout(&conclave(&["--help"])).contains("attestation"));
}

#[test]
fn host_serves_until_sigterm_and_warns_it_is_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = HostProcess::start("reverse", &dir.path().join("data"));
    let health = agent().get(format!("{}/v1/health", host.url)).call().unwrap().body_mut().read_to_vec().unwrap();
    let health: serde_json::Value = serde_json::from_slice(&health).unwrap();
    assert_eq!(health["status"], "ok");
    let secret = dir.path().join("data/platform.secret");
    assert_eq!(std::fs::read(&secret).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let pid = nix::unistd::Pid::from_raw(i32::try_from(host.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = host.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let stderr = host.stderr_text();
    assert!(stderr.contains("INSECURE"), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn host_refuses_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let output =
        conclave(&["host", "--mode", "mock", "--example", "nope", "--listen", "127.0.0.1:0", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(2));
    let output = conclave(&["host", "--mode", "mock", "--listen", "127.0.0.1:0", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(2), "needs --enclave or --example");
    // An unsigned binary is refused, and the message says how to fix it.
    let unsigned = dir.path().join("unsigned-enclave");
    std::fs::copy(BIN, &unsigned).unwrap();
    let output =
        conclave(&["host", "--enclave", unsigned.to_str().unwrap(), "--listen", "127.0.0.1:0", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not signed"), "{}", stderr(&output));
}

#[test]
fn simulation_is_the_default_and_runs_the_sample_as_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = ServingProcess::start(
        Path::new(BIN),
        ["host", "--example", "reverse", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()],
    );
    let url = host.url.clone();
    let json = agent()
        .get(format!("{url}/v1/attestation"))
        .header("Accept", "application/json")
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["mode"], "SIMULATION");
    assert_eq!(json["product_id"], 1);
    let hash = json["code_hash"].as_str().unwrap().to_owned();
    let state = dir.path().join("client.json");
    let sent = conclave(&[
        "send",
        &url,
        "--constraint",
        &format!("C:{hash} SEC:INSECURE"),
        "--state",
        state.to_str().unwrap(),
        "drawer",
    ]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    assert_eq!(stdout(&sent).trim_end(), "reward");
}

#[test]
fn attest_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start("reverse", &dir.path().join("data"));
    let hash = code_hash(&host.url);

    let ok = conclave(&["attest", &host.url, "--constraint", &format!("C:{hash} SEC:INSECURE")]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let text = stdout(&ok);
    for expected in ["MOCK", hash.as_str(), "INSECURE", "mock mode", "encryption key", "satisfied"] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    let other_hash = "ab".repeat(32);
    let wrong = conclave(&["attest", &host.url, "--constraint", &format!("C:{other_hash} SEC:INSECURE")]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("not satisfied"), "{}", stderr(&wrong));

    // Mock enclaves are INSECURE: the default minimum (STALE) refuses them.
    let default_security = conclave(&["attest", &host.url, "--constraint", &format!("C:{hash}")]);
    assert_eq!(default_security.status.code(), Some(1));

    let bad = conclave(&["attest", &host.url, "--constraint", "C:nothex"]);
    assert_eq!(bad.status.code(), Some(2));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = conclave(&["attest", &format!("http://127.0.0.1:{port}"), "--constraint", "C:00 SEC:INSECURE"]);
    assert_eq!(unreachable.status.code(), Some(2));
    let unreachable =
        conclave(&["attest", &format!("http://127.0.0.1:{port}"), "--constraint", &format!("C:{hash} SEC:INSECURE")]);
    assert_eq!(unreachable.status.code(), Some(2));
}

#[test]
fn send_prints_the_reply_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start("reverse", &dir.path().join("data"));
    let constraint = constraint(&host.url);
    let state = dir.path().join("client.state");
    let state = state.to_str().unwrap();

    let first = conclave(&["send", &host.url, "--constraint", &constraint, "--state", state, "hello"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(first.stdout, b"olleh");
    assert!(Path::new(state).exists());

    // The second send continues the sequence from the state file (a replay would fail).
    let file = dir.path().join("body.bin");
    std::fs::write(&file, [1u8, 2, 3, 0, 255]).unwrap();
    let second = conclave(&[
        "send",
        &host.url,
        "--constraint",
        &constraint,
        "--state",
        state,
        "--topic",
        "files",
        &format!("@{}", file.display()),
    ]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(second.stdout, [255u8, 0, 3, 2, 1]);
    let third = conclave(&["send", &host.url, "--constraint", &constraint, "--state", state, "abc"]);
    assert_eq!(third.stdout, b"cba", "{}", stderr(&third));

    // Send acknowledged its replies: nothing is left to poll.
    let poll = conclave(&["poll", &host.url, "--state", state]);
    assert_eq!(poll.status.code(), Some(0), "{}", stderr(&poll));
    assert!(poll.stdout.is_empty());

    // A constraint the enclave fails: exit 1; a state file with another constraint: exit 2.
    let other = format!("C:{} SEC:INSECURE", "cd".repeat(32));
    let fresh = dir.path().join("other.state");
    let refused = conclave(&["send", &host.url, "--constraint", &other, "--state", fresh.to_str().unwrap(), "x"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let mismatch = conclave(&["send", &host.url, "--constraint", &other, "--state", state, "x"]);
    assert_eq!(mismatch.status.code(), Some(2), "{}", stderr(&mismatch));
}

#[test]
fn poll_prints_and_acknowledges_queued_replies() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start("stats", &dir.path().join("data"));
    let constraint = constraint(&host.url);
    let states: Vec<String> =
        (0..3).map(|i| dir.path().join(format!("party{i}.state")).to_str().unwrap().to_owned()).collect();
    for (state, values) in states.iter().zip(["[1, 2]", "[3, 4]", "[5, 15]"]) {
        let body = format!(r#"{{"v": 1, "kind": "submit", "values": {values}}}"#);
        let sent = conclave(&["send", &host.url, "--constraint", &constraint, "--state", state, &body]);
        assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
        assert!(stdout(&sent).contains("submitted"), "{}", stdout(&sent));
    }
    let compute = r#"{"v": 1, "kind": "compute"}"#;
    let result = conclave(&["send", &host.url, "--constraint", &constraint, "--state", &states[2], compute]);
    let result: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(result["kind"], "result");
    assert_eq!(result["parties"], 3);

    // The first party's copy of the result waits in the host's queue.
    let polled = conclave(&["poll", &host.url, "--state", &states[0]]);
    assert_eq!(polled.status.code(), Some(0), "{}", stderr(&polled));
    let text = stdout(&polled);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let queued: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(queued, result);
    // Acknowledged: polling again finds nothing.
    let again = conclave(&["poll", &host.url, "--state", &states[0]]);
    assert!(again.stdout.is_empty(), "{}", stdout(&again));
    // The second party still has its copy.
    assert_eq!(stdout(&conclave(&["poll", &host.url, "--state", &states[1]])).lines().count(), 1);

    let missing = conclave(&["poll", &host.url, "--state", dir.path().join("none").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn attestation_show() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start("reverse", &dir.path().join("data"));
    let bytes = attestation_bytes(&host.url);
    let file = dir.path().join("info.bin");
    std::fs::write(&file, &bytes).unwrap();

    let shown = conclave(&["attestation", "show", file.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["code_hash"], code_hash(&host.url));
    assert_eq!(json["mode"], "MOCK");
    assert_eq!(json["security"]["summary"], "INSECURE");

    // Evidence that does not commit to the keys: decodes, does not verify.
    let info = EnclaveInstanceInfo::decode(&bytes).unwrap();
    let other_key = PrivateKey::generate(&mut OsRng).public_key();
    let forged =
        EnclaveInstanceInfo::new(*info.data_signing_key(), other_key, *info.run(), [0; 64], info.evidence().clone());
    let forged_file = dir.path().join("forged.bin");
    std::fs::write(&forged_file, forged.encode()).unwrap();
    let refused = conclave(&["attestation", "show", forged_file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(!stderr(&refused).is_empty());

    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"not an attestation").unwrap();
    assert_eq!(conclave(&["attestation", "show", garbage.to_str().unwrap()]).status.code(), Some(2));
}

/// Replies queued under `correlation_id`, as (id, bytes).
fn poll_http(url: &str, correlation_id: &str) -> Vec<(u64, Vec<u8>)> {
    let json = agent().get(format!("{url}/v1/mail/{correlation_id}")).call().unwrap().body_mut().read_to_vec().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    json["replies"]
        .as_array()
        .unwrap_or_else(|| panic!("{json}"))
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), BASE64.decode(r["mail"].as_str().unwrap()).unwrap()))
        .collect()
}

/// A client mail body: the request frame of a client that has seen nothing yet.
fn framed(body: &[u8]) -> Vec<u8> {
    RequestFrame { request_id: [1; 16], chain: ReplyChain::START, runs: Vec::new() }.wrap(body)
}

#[test]
fn sigkill_loses_no_committed_reply() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = HostProcess::start("reverse", &data);
    let enclave_key = *EnclaveInstanceInfo::decode(&attestation_bytes(&host.url)).unwrap().encryption_key();
    let mut post_office = PostOffice::new(PrivateKey::generate(&mut OsRng), enclave_key, "t").unwrap();

    // Three mails; their replies stay queued because nobody acknowledges them...
    let mut ids = Vec::new();
    for body in ["one", "two", "three"] {
        let mail = post_office.encrypt_mail(&framed(body.as_bytes()), &mut OsRng).unwrap();
        let mut response =
            agent().post(format!("{}/v1/mail", host.url)).header("Correlation-ID", "durable").send(&mail[..]).unwrap();
        assert_eq!(response.status(), 200);
        ids.push(response.headers()["reply-id"].to_str().unwrap().parse::<u64>().unwrap());
        response.body_mut().read_to_vec().unwrap();
    }
    // ...except the first.
    let acked = agent()
        .post(format!("{}/v1/mail/durable/ack", host.url))
        .send(serde_json::json!({ "ids": [ids[0]] }).to_string().as_bytes())
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let acked: serde_json::Value = serde_json::from_slice(&acked).unwrap();
    assert_eq!(acked["deleted"], 1);
    let before = poll_http(&host.url, "durable");
    assert_eq!(before.iter().map(|r| r.0).collect::<Vec<_>>(), ids[1..]);
    let secret = std::fs::read(data.join("platform.secret")).unwrap();

    host.sigkill();

    let host = HostProcess::start("reverse", &data);
    assert_eq!(std::fs::read(data.join("platform.secret")).unwrap(), secret, "the platform secret must persist");
    let after = poll_http(&host.url, "durable");
    assert_eq!(after, before, "unacknowledged replies must survive SIGKILL unchanged");
    let bodies: Vec<Vec<u8>> = after
        .iter()
        .map(|(_, bytes)| {
            let mail = post_office.decrypt_mail(bytes).unwrap();
            assert_eq!(&mail.sender, &enclave_key);
            ResponseFrame::unwrap(&mail.body).unwrap().1.to_vec()
        })
        .collect();
    assert_eq!(bodies, [b"owt".to_vec(), b"eerht".to_vec()]);

    // The restarted enclave serves new mail (with new keys).
    let new_key = *EnclaveInstanceInfo::decode(&attestation_bytes(&host.url)).unwrap().encryption_key();
    let mut fresh = PostOffice::new(PrivateKey::generate(&mut OsRng), new_key, "t").unwrap();
    let mail = fresh.encrypt_mail(&framed(b"after"), &mut OsRng).unwrap();
    let status = agent()
        .post(format!("{}/v1/mail", host.url))
        .header("Correlation-ID", "durable")
        .send(&mail[..])
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(poll_http(&host.url, "durable").len(), 3);
}

#[test]
fn sigkill_keeps_committed_enclave_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = HostProcess::start("stats", &data);
    let constraint = constraint(&host.url);
    let states: Vec<String> =
        (0..3).map(|i| dir.path().join(format!("party{i}.state")).to_str().unwrap().to_owned()).collect();
    let submit = |url: &str, state: &str, values: &str| {
        let body = format!(r#"{{"v": 1, "kind": "submit", "values": {values}}}"#);
        let sent = conclave(&["send", url, "--constraint", &constraint, "--state", state, &body]);
        assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
        assert!(stdout(&sent).contains("submitted"), "{}", stdout(&sent));
    };
    submit(&host.url, &states[0], "[10]");
    submit(&host.url, &states[1], "[20]");
    host.sigkill();

    // The two committed submissions are still inside the restarted enclave:
    // a third party completes the round.
    let host = HostProcess::start("stats", &data);
    submit(&host.url, &states[2], "[60]");
    let compute = r#"{"v": 1, "kind": "compute"}"#;
    let result = conclave(&["send", &host.url, "--constraint", &constraint, "--state", &states[2], compute]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let result: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(result["kind"], "result", "{result}");
    assert_eq!((result["parties"].as_u64(), result["count"].as_u64()), (Some(3), Some(3)));
    assert_eq!(
        (result["min"].as_f64(), result["max"].as_f64(), result["mean"].as_f64()),
        (Some(10.0), Some(60.0), Some(30.0))
    );
}

#[test]
fn attest_shows_the_simulated_attestation_key_and_simkey_pins_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = HostProcess::start_in("simulation", "reverse", &dir.path().join("data"));
    let json = attestation_json(&host.url);
    let key = json["simulated_attestation_key"].as_str().expect("simulation evidence names its key").to_owned();
    assert_eq!(key.len(), 64);
    let pinned = constraint(&host.url);

    let out = conclave(&["attest", &host.url, "--constraint", &pinned]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("simulation key:        {key}\n")), "{text}");
    assert!(text.contains(&format!("pin this host's simulated attestation key with SIMKEY:{key}\n")), "{text}");

    let out = conclave(&["attest", &host.url, "--constraint", &format!("{pinned} SIMKEY:{key}")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The Ed25519 base point: a valid key, but not this host's.
    let other = "5866666666666666666666666666666666666666666666666666666666666666";
    let out = conclave(&["attest", &host.url, "--constraint", &format!("{pinned} SIMKEY:{other}")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("SIMKEY: the evidence is signed by simulated attestation key {key}, not by")),
        "{}",
        stderr(&out)
    );

    host.child.kill().unwrap();
    host.child.wait().unwrap();
    let log = host.stderr_text();
    assert!(log.contains(&format!("simulated attestation key: {key}")), "{log}");
}

#[test]
fn host_help_documents_the_limits_and_transport_flags() {
    let text = stdout(&conclave(&["host", "--help"]));
    for flag in [
        "--tls-cert",
        "--tls-key",
        "--insecure-http",
        "--header-timeout",
        "--body-timeout",
        "--idle-timeout",
        "--max-connections",
        "--body-budget-bytes",
        "--max-stored-replies",
        "--correlation-id-max-idle-days",
        "--log-format",
    ] {
        assert!(text.contains(flag), "{flag} missing from conclave host --help:\n{text}");
    }
    for command in ["attest", "send", "poll"] {
        let text = stdout(&conclave(&[command, "--help"]));
        assert!(text.contains("--tls-ca") && text.contains("--insecure-http"), "{command}: {text}");
    }
    let soak = stdout(&conclave(&["soak", "--help"]));
    assert!(soak.contains("Exit codes:"), "{soak}");
}

#[test]
fn plain_http_off_loopback_is_refused_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = ["host", "--mode", "mock", "--example", "reverse", "--listen", "0.0.0.0:0", "--data-dir"];
    let output = conclave(&[&host[..], &[data.to_str().unwrap()]].concat());
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("--tls-cert") && text.contains("--insecure-http"), "{text}");

    // The client refuses before connecting (192.0.2.1 is a documentation address).
    let output =
        conclave(&["attest", "http://192.0.2.1:8080", "--constraint", &format!("C:{} SEC:INSECURE", "ab".repeat(32))]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("not a loopback address") && text.contains("--insecure-http"), "{text}");

    // A TLS certificate without its key is a usage error.
    let output = conclave(&[
        "host",
        "--example",
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        "x.pem",
    ]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn tls_host_and_clients_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let (cert_file, key_file, ca_file) =
        (dir.path().join("host.pem"), dir.path().join("host.key"), dir.path().join("ca.pem"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let extra =
        ["--tls-cert", cert_file.to_str().unwrap(), "--tls-key", key_file.to_str().unwrap(), "--log-format", "json"];
    let mut host = HostProcess::start_with("mock", "reverse", &dir.path().join("data"), &extra);
    assert!(host.url.starts_with("https://127.0.0.1:"), "{}", host.url);
    let ca = ca_file.to_str().unwrap();
    let state = dir.path().join("me.state");

    // Without the CA the client refuses the host's certificate.
    let constraint = format!("C:{} SEC:INSECURE", "ab".repeat(32));
    let untrusted = conclave(&["attest", &host.url, "--constraint", &constraint]);
    assert_eq!(untrusted.status.code(), Some(2));
    assert!(stderr(&untrusted).to_lowercase().contains("certificate"), "{}", stderr(&untrusted));

    // With it: attest (read the code hash from the summary), send and poll.
    let attested = conclave(&["attest", &host.url, "--constraint", &constraint, "--tls-ca", ca]);
    let summary = stdout(&attested);
    let code_hash = summary.lines().find_map(|l| l.strip_prefix("code hash:")).unwrap().trim().to_owned();
    let constraint = format!("C:{code_hash} SEC:INSECURE");
    let attested = conclave(&["attest", &host.url, "--constraint", &constraint, "--tls-ca", ca]);
    assert_eq!(attested.status.code(), Some(0), "{}", stderr(&attested));
    let state_arg = state.to_str().unwrap();
    let sent =
        conclave(&["send", &host.url, "--constraint", &constraint, "--state", state_arg, "--tls-ca", ca, "hello"]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    assert_eq!(stdout(&sent), "olleh");
    let polled = conclave(&["poll", &host.url, "--state", state_arg, "--tls-ca", ca]);
    assert_eq!(polled.status.code(), Some(0), "{}", stderr(&polled));

    // --log-format json: every log line on stderr is a JSON object.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(host.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(host.child.wait().unwrap().success());
    let log = host.stderr_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.iter().any(|e| e["fields"]["message"] == "web host serving"), "{log}");
    assert!(events.iter().all(|e| e["level"].is_string() && e["target"].is_string()), "{log}");
}
