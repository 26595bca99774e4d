//! Known-answer vectors: the exact bytes of mail, frames and attestations,
//! and the verdicts of the freshness rules, kept as data files so that every
//! client (Rust, TypeScript, Python) and `docs/wire-format.md` can be
//! checked against the same bytes.
//!
//! Regenerate with `CONCLAVE_REGENERATE_VECTORS=1 cargo test -p conclave-core --test vectors`
//! only when a format's version changes; the files are then reviewed by hand.

use std::path::PathBuf;

use conclave_core::{
    Answer, ChainLink, ChainVerdict, EnclaveInstanceInfo, EnclaveReport, Evidence, MailHeader, PrivateKey, Rejection,
    RejectionDetail, ReplyChain, ReplyChainVerifier, RequestFrame, ResponseFrame, ResponseKind, StateCheckpoint,
    decrypt_mail, encrypt_mail,
    freshness::{FreshnessRefusal, check_request, state_id},
    key_binding,
};
use ed25519_dalek::SigningKey;
use rand_core::{CryptoRng, RngCore};
use serde_json::{Value, json};

/// Hands out fixed bytes: a test-only stand-in for a random source, so the
/// ephemeral key (and so the whole mail) is reproducible.
struct FixedBytes(Vec<u8>);

impl RngCore for FixedBytes {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("mail encryption only fills bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("mail encryption only fills bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let taken: Vec<u8> = self.0.drain(..dest.len()).collect();
        dest.copy_from_slice(&taken);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedBytes {}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name)
}

fn key(byte: u8) -> PrivateKey {
    PrivateKey::from_bytes([byte; 32])
}

fn checkpoint_json(c: &StateCheckpoint) -> Value {
    json!({ "counter": c.counter, "id": hex::encode(c.id) })
}

fn chain_json(c: &ReplyChain) -> Value {
    json!({ "index": c.index, "digest": hex::encode(c.digest) })
}

fn mail_vector() -> Value {
    let sender = key(0x11);
    let recipient = key(0x22);
    let ephemeral_seed = [0x33u8; 32];
    let header = MailHeader::new("greetings", 5).unwrap().with_envelope(vec![0xE0, 0xE1]).unwrap();
    let body = b"hello, enclave";
    let mail =
        encrypt_mail(&sender, &recipient.public_key(), &header, body, 20, &mut FixedBytes(ephemeral_seed.to_vec()))
            .unwrap();
    json!({
        "description": "one mail, version 2: topic 'greetings', sequence number 5, envelope e0e1, body 'hello, enclave' padded to 20 bytes (the body here is raw: clients put a request frame in front, see exchange-v2.json)",
        "noise_protocol": "Noise_X_25519_AESGCM_SHA256",
        "sender_private_key": hex::encode(sender.secret_bytes()),
        "sender_public_key": sender.public_key().to_hex(),
        "recipient_private_key": hex::encode(recipient.secret_bytes()),
        "recipient_public_key": recipient.public_key().to_hex(),
        "ephemeral_private_key": hex::encode(ephemeral_seed),
        "topic": "greetings",
        "sequence_number": 5,
        "envelope": "e0e1",
        "body": hex::encode(body),
        "min_size": 20,
        "prologue": hex::encode(header.encode_prefix()),
        "mail": hex::encode(&mail),
    })
}

/// The run checkpoint every attestation vector uses.
fn run() -> StateCheckpoint {
    StateCheckpoint::GENESIS.next(&[0x77; 16]).unwrap()
}

fn report(signing_public: &[u8; 32], encryption: &conclave_core::PublicKey) -> EnclaveReport {
    EnclaveReport {
        code_hash: [0xC0; 32],
        code_signing_key_hash: [0x5E; 32],
        product_id: 1,
        revocation_level: 2,
        report_data: key_binding(signing_public, encryption),
        timestamp_unix: 1_800_000_000,
    }
}

fn info_vector() -> Value {
    let signing = SigningKey::from_bytes(&[0x44; 32]);
    let signing_public = signing.verifying_key().to_bytes();
    let encryption = key(0x55).public_key();
    let info =
        EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::Mock(report(&signing_public, &encryption)));
    let attestation_key = SigningKey::from_bytes(&[0x66; 32]);
    let simulated = EnclaveInstanceInfo::signed(
        &signing,
        encryption,
        run(),
        Evidence::simulated_insecure(report(&signing_public, &encryption), &attestation_key),
    );
    json!({
        "description": "EnclaveInstanceInfo version 2 with mock and with simulation evidence; the run checkpoint is signed by the data-signing key (secret 44..44)",
        "data_signing_secret": hex::encode([0x44; 32]),
        "data_signing_key": hex::encode(signing_public),
        "encryption_key": encryption.to_hex(),
        "report_data": hex::encode(key_binding(&signing_public, &encryption)),
        "run": checkpoint_json(&run()),
        "run_message": hex::encode(conclave_core::info::run_message(&encryption, &run())),
        "encoded": hex::encode(info.encode()),
        "simulated_attestation_secret": hex::encode([0x66; 32]),
        "simulated_attestation_key": hex::encode(attestation_key.verifying_key().to_bytes()),
        "simulated_encoded": hex::encode(simulated.encode()),
    })
}

/// Attestations with the verdict a client must reach (verified at 1800000000).
fn attestations_vector() -> Value {
    let signing = SigningKey::from_bytes(&[0x44; 32]);
    let signing_public = signing.verifying_key().to_bytes();
    let encryption = key(0x55).public_key();
    let good = report(&signing_public, &encryption);
    let sim_key = SigningKey::from_bytes(&[0x66; 32]);
    let mut cases = Vec::new();
    let mut case = |name: &str, info: &EnclaveInstanceInfo, expected: &str| {
        let verdict = match info.verify(1_800_000_000) {
            Ok(v) => json!({ "ok": v.to_json() }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        cases.push(
            json!({ "name": name, "encoded": hex::encode(info.encode()), "expected": expected, "verdict": verdict }),
        );
    };
    let mock = EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::Mock(good.clone()));
    case("mock", &mock, "valid");
    let sim =
        EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::simulated_insecure(good.clone(), &sim_key));
    case("simulation", &sim, "valid");
    let other = key(0x56).public_key();
    let swapped = EnclaveInstanceInfo::signed(&signing, other, run(), Evidence::Mock(good.clone()));
    case("encryption key swapped after the evidence was made", &swapped, "key_binding");
    let mut bad_run = EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::Mock(good.clone())).encode();
    // The run counter sits after magic (4), version (2) and the two keys (64).
    bad_run[4 + 2 + 64 + 7] ^= 1;
    case("run checkpoint altered", &EnclaveInstanceInfo::decode(&bad_run).unwrap(), "run_signature");
    let mut tampered_sim = sim.encode();
    let last = tampered_sim.len() - 1;
    tampered_sim[last] ^= 1;
    case("simulation signature altered", &EnclaveInstanceInfo::decode(&tampered_sim).unwrap(), "simulation_signature");
    let low = conclave_core::PublicKey::from_bytes([0; 32]);
    let low_report = report(&signing_public, &low);
    let low_order = EnclaveInstanceInfo::signed(&signing, low, run(), Evidence::Mock(low_report));
    case("low-order encryption key", &low_order, "low_order_key");
    json!({
        "description": "EnclaveInstanceInfo version 2 cases, verified at unix time 1800000000; 'expected' names the check that decides",
        "verified_at": 1_800_000_000u64,
        "cases": cases,
    })
}

fn answer() -> Answer {
    Answer { topic: "bids".to_owned(), sequence_number: 7, request_id: [0xA1; 16] }
}

fn frames_vector() -> Value {
    let run_a = StateCheckpoint::GENESIS.next(&[1; 16]).unwrap();
    let run_b = run_a.next(&[2; 16]).unwrap();
    let head = ReplyChain::START.extend(&run_b).unwrap();
    let requests = [
        (
            "first mail of a new client",
            RequestFrame { request_id: [0xA0; 16], chain: ReplyChain::START, runs: vec![run_a] },
        ),
        (
            "a client that verified one reply and attested two runs",
            RequestFrame { request_id: [0xA1; 16], chain: head, runs: vec![run_a, run_b] },
        ),
    ];
    let requests: Vec<Value> = requests
        .iter()
        .map(|(name, f)| {
            json!({
                "name": name,
                "request_id": hex::encode(f.request_id),
                "chain": chain_json(&f.chain),
                "runs": f.runs.iter().map(checkpoint_json).collect::<Vec<_>>(),
                "body": hex::encode(b"payload"),
                "encoded": hex::encode(f.wrap(b"payload")),
            })
        })
        .collect();
    let state = run_b.next(&[3; 16]).unwrap();
    let link = head.link().unwrap();
    let detail = RejectionDetail { expected: 7, received: 9, chain_index: 1 };
    let responses = [
        (
            "application reply answering a mail",
            ResponseFrame { kind: ResponseKind::Reply, state, link: Some(link), answers: Some(answer()) },
            &b"result"[..],
        ),
        (
            "application mail answering nothing",
            ResponseFrame { kind: ResponseKind::Reply, state, link: Some(link), answers: None },
            &b"broadcast"[..],
        ),
        (
            "receipt",
            ResponseFrame { kind: ResponseKind::Receipt, state, link: Some(link), answers: Some(answer()) },
            &b""[..],
        ),
        (
            "application refusal",
            ResponseFrame { kind: ResponseKind::Refused, state, link: Some(link), answers: Some(answer()) },
            &b"bid too low"[..],
        ),
        (
            "rejection: gap",
            ResponseFrame {
                kind: ResponseKind::Rejected(Rejection::Gap, detail),
                state,
                link: None,
                answers: Some(answer()),
            },
            &b""[..],
        ),
        (
            "rejection: rollback",
            ResponseFrame {
                kind: ResponseKind::Rejected(Rejection::Rollback, detail),
                state,
                link: None,
                answers: Some(answer()),
            },
            &b""[..],
        ),
    ];
    let responses: Vec<Value> = responses
        .iter()
        .map(|(name, f, body)| {
            let (kind, rejection) = match f.kind {
                ResponseKind::Reply => ("reply", Value::Null),
                ResponseKind::Receipt => ("receipt", Value::Null),
                ResponseKind::Refused => ("refused", Value::Null),
                ResponseKind::Rejected(r, d) => (
                    "rejected",
                    json!({
                        "code": r.code(), "expected": d.expected, "received": d.received, "chain_index": d.chain_index,
                    }),
                ),
            };
            json!({
                "name": name,
                "kind": kind,
                "rejection": rejection,
                "state": checkpoint_json(&f.state),
                "link": f.link.map(|l| json!({ "index": l.index, "previous": hex::encode(l.previous) })),
                "answers": f.answers.as_ref().map(|a| json!({
                    "topic": a.topic, "sequence_number": a.sequence_number, "request_id": hex::encode(a.request_id),
                })),
                "body": hex::encode(body),
                "encoded": hex::encode(f.wrap(body)),
            })
        })
        .collect();
    // Invalid frames and what is wrong with them.
    let good_request = requests[1]["encoded"].as_str().unwrap().to_owned();
    let good_receipt = responses[2]["encoded"].as_str().unwrap().to_owned();
    let mut invalid = Vec::new();
    let mut bad = |name: &str, frame: &str, hex_bytes: String, error: &str| {
        let bytes = hex::decode(&hex_bytes).unwrap();
        let got = if frame == "request" {
            RequestFrame::unwrap(&bytes).err().map(|e| e.to_string())
        } else {
            ResponseFrame::unwrap(&bytes).err().map(|e| e.to_string())
        };
        assert!(got.is_some(), "{name} parsed");
        invalid.push(json!({ "name": name, "frame": frame, "encoded": hex_bytes, "error": error, "message": got }));
    };
    bad("request version 2", "request", format!("02{}", &good_request[2..]), "unsupported_version");
    bad("request cut inside the chain digest", "request", good_request[..2 * 40].to_owned(), "truncated");
    bad("request with 65 runs", "request", format!("{}41", &good_request[..2 * 57]), "malformed");
    bad(
        "empty chain with a digest",
        "request",
        format!("01{}{}{}00", "a0".repeat(16), "00".repeat(8), "11".repeat(32)),
        "malformed",
    );
    bad("response of unknown kind 9", "response", format!("0109{}", &good_receipt[4..]), "malformed");
    bad("receipt that names no mail", "response", format!("{}00", &good_receipt[..2 * (2 + 40 + 40)]), "malformed");
    bad(
        "in-chain response at index 0",
        "response",
        format!("0101{}{}{}00", "00".repeat(40), "00".repeat(8), "00".repeat(32)),
        "malformed",
    );
    bad("answer flag 2", "response", format!("{}02", &good_receipt[..2 * (2 + 40 + 40)]), "malformed");
    bad("response cut inside the state", "response", good_receipt[..2 * 20].to_owned(), "truncated");
    json!({
        "description": "request and response frames, version 1 (inside mail version 2); 'error' is the class of error a reader must report",
        "requests": requests,
        "responses": responses,
        "invalid": invalid,
    })
}

fn verdict_json(v: ChainVerdict) -> Value {
    match v {
        ChainVerdict::Next => json!("next"),
        ChainVerdict::Held { missing } => json!({ "held": { "missing": missing } }),
        ChainVerdict::Duplicate => json!("duplicate"),
        ChainVerdict::Stale => json!("stale"),
        ChainVerdict::Fork { index } => json!({ "fork": { "index": index } }),
        ChainVerdict::Regressed { previous, received } => {
            json!({ "regressed": { "previous": previous, "received": received } })
        }
    }
}

/// A branch of states and the replies an enclave on it sends one client, one per state.
fn branch(from: StateCheckpoint, chain: ReplyChain, n: u64, nonce: u8) -> Vec<(ChainLink, StateCheckpoint)> {
    let mut out = Vec::new();
    let (mut state, mut chain) = (from, chain);
    for _ in 0..n {
        state = state.next(&[nonce; 16]).unwrap();
        out.push((chain.link().unwrap(), state));
        chain = chain.extend(&state).unwrap();
    }
    out
}

fn freshness_vector() -> Value {
    // State ids and chain digests, worked.
    let s1 = StateCheckpoint::GENESIS.next(&[0x01; 16]).unwrap();
    let s2 = s1.next(&[0x02; 16]).unwrap();
    let c1 = ReplyChain::START.extend(&s1).unwrap();
    let c2 = c1.extend(&s2).unwrap();
    assert_eq!(s2.id, state_id(&s1.id, 2, &[0x02; 16]));

    // Client-side scenarios: replies arrive; each gets a verdict; accepted ones advance.
    let main = branch(StateCheckpoint::GENESIS, ReplyChain::START, 40, 0xAA);
    let fork_at_2 = branch(main[0].1, ReplyChain::START.extend(&main[0].1).unwrap(), 2, 0xBB);
    let mut scenarios = Vec::new();
    let mut scenario = |name: &str, steps: Vec<(ChainLink, StateCheckpoint)>| {
        let mut verifier = ReplyChainVerifier::default();
        let steps: Vec<Value> = steps
            .iter()
            .map(|(link, state)| {
                let verdict = verifier.check(link, state);
                if verdict == ChainVerdict::Next {
                    verifier.advance(link, state);
                }
                json!({
                    "link": { "index": link.index, "previous": hex::encode(link.previous) },
                    "state": checkpoint_json(state),
                    "verdict": verdict_json(verdict),
                })
            })
            .collect();
        scenarios.push(json!({ "name": name, "steps": steps, "head": chain_json(&verifier.head) }));
    };
    scenario("three replies in order", main[..3].to_vec());
    scenario("a reply ahead waits for the one before it", vec![main[1], main[0], main[1]]);
    scenario("a reply delivered twice", vec![main[0], main[0]]);
    scenario("two replies at one position: a fork", vec![main[0], main[1], fork_at_2[0]]);
    scenario("a reply that does not link to the one before: a fork", vec![main[0], main[1], fork_at_2[1]]);
    let older = (main[1].0, StateCheckpoint { counter: 0, id: [9; 32] });
    scenario("a reply from an older state than the one before: regressed", vec![main[0], older]);
    let mut long = main.clone();
    long.push((main[0].0, StateCheckpoint { counter: 1, id: [0xEE; 32] }));
    scenario("a reply too old to remember: stale", long);

    // Enclave-side checks of a client's request frame.
    let history = vec![s1];
    let mut checks = Vec::new();
    let mut check = |name: &str, recorded: ReplyChain, claimed: ReplyChain, runs: Vec<StateCheckpoint>| {
        let verdict = match check_request(&recorded, &claimed, &runs, &history) {
            Ok(()) => json!("accept"),
            Err(FreshnessRefusal::Rollback { .. }) => json!("rollback"),
            Err(FreshnessRefusal::Fork { .. }) => json!("fork"),
        };
        checks.push(json!({
            "name": name,
            "recorded": chain_json(&recorded),
            "claimed": chain_json(&claimed),
            "runs": runs.iter().map(checkpoint_json).collect::<Vec<_>>(),
            "history": history.iter().map(checkpoint_json).collect::<Vec<_>>(),
            "verdict": verdict,
        }));
    };
    check("a client level with the enclave", c2, c2, vec![s1]);
    check("a client behind the enclave (replies in flight)", c2, c1, vec![]);
    check("a client ahead of the enclave: rollback", c1, c2, vec![]);
    let sibling = ReplyChain::START.extend(&StateCheckpoint { counter: 1, id: [0x5B; 32] }).unwrap();
    check("the same position, another digest: fork", c1, sibling, vec![]);
    check("a run the enclave's history lacks: fork", c2, c2, vec![s2]);
    json!({
        "description": "the freshness rules: state ids, reply-chain digests, what a client does with each reply, and what the enclave does with each request",
        "state_ids": [
            { "previous": hex::encode([0u8; 32]), "counter": 1, "nonce": hex::encode([0x01; 16]), "id": hex::encode(s1.id) },
            { "previous": hex::encode(s1.id), "counter": 2, "nonce": hex::encode([0x02; 16]), "id": hex::encode(s2.id) },
        ],
        "chain_digests": [
            { "previous": hex::encode([0u8; 32]), "index": 1, "state": checkpoint_json(&s1), "digest": hex::encode(c1.digest) },
            { "previous": hex::encode(c1.digest), "index": 2, "state": checkpoint_json(&s2), "digest": hex::encode(c2.digest) },
        ],
        "recent_links": conclave_core::freshness::RECENT_LINKS,
        "client_scenarios": scenarios,
        "enclave_checks": checks,
    })
}

/// One exchange, end to end: a client mail with its request frame, and the
/// enclave's answer with its response frame, all with fixed keys.
fn exchange_vector() -> Value {
    let client = key(0x11);
    let enclave = key(0x22);
    let run = StateCheckpoint::GENESIS.next(&[0x03; 16]).unwrap();
    let request = RequestFrame { request_id: [0xAB; 16], chain: ReplyChain::START, runs: vec![run] };
    let header = MailHeader::new("bids", 0).unwrap();
    let body = b"{\"bid\":100}";
    let mail =
        encrypt_mail(&client, &enclave.public_key(), &header, &request.wrap(body), 64, &mut FixedBytes(vec![0x33; 32]))
            .unwrap();
    let state = run.next(&[0x04; 16]).unwrap();
    let link = ReplyChain::START.link().unwrap();
    let response = ResponseFrame {
        kind: ResponseKind::Reply,
        state,
        link: Some(link),
        answers: Some(Answer { topic: "bids".into(), sequence_number: 0, request_id: [0xAB; 16] }),
    };
    let reply_header = MailHeader::new("bids", link.index).unwrap();
    let reply = encrypt_mail(
        &enclave,
        &client.public_key(),
        &reply_header,
        &response.wrap(b"{\"accepted\":true}"),
        0,
        &mut FixedBytes(vec![0x44; 32]),
    )
    .unwrap();
    // What the enclave learns, and what the client must conclude.
    let opened = decrypt_mail(&enclave, &mail).unwrap();
    assert_eq!(opened.sender, client.public_key());
    let after = ReplyChain::START.extend(&state).unwrap();
    json!({
        "description": "a client mail (request frame + body, padded to 64) and the enclave's reply (response frame + body); the client must accept the reply as the answer to its mail 0 and move its chain head to 'chain_after'",
        "client_private_key": hex::encode(client.secret_bytes()),
        "client_public_key": client.public_key().to_hex(),
        "enclave_private_key": hex::encode(enclave.secret_bytes()),
        "enclave_public_key": enclave.public_key().to_hex(),
        "mail_ephemeral_private_key": hex::encode([0x33; 32]),
        "reply_ephemeral_private_key": hex::encode([0x44; 32]),
        "request_id": hex::encode([0xAB; 16]),
        "run": checkpoint_json(&run),
        "body": hex::encode(body),
        "mail": hex::encode(&mail),
        "reply_state": checkpoint_json(&state),
        "reply_body": hex::encode(b"{\"accepted\":true}"),
        "reply": hex::encode(&reply),
        "chain_after": chain_json(&after),
    })
}

/// Constraint cases: valid ones with their canonical form, invalid ones with
/// the message a client must give (it names the bad token).
fn constraints_vector() -> Value {
    use conclave_core::EnclaveConstraint;
    let c = "c0".repeat(32);
    let s = "5e".repeat(32);
    let long = "ab".repeat(48);
    let simkey = "34b4d9043156cb6dcf0beb0a2949b7559c940d2bcb6dbe8c53a9b30278e3a746";
    let valid = [
        format!("C:{c}"),
        format!("C:{c} SEC:INSECURE"),
        format!("  SEC:SECURE   C:{}  ", c.to_uppercase()),
        format!("S:{s} PROD:3"),
        format!("S:{s} PROD:3 REVOKE:2 SEC:STALE EXPIRE:P30D"),
        format!("C:{long} C:{c} C:{c} EXPIRE:PT12H"),
        format!("C:{c} EXPIRE:P6M2W5D"),
        format!("C:{c} EXPIRE:P1W"),
        format!("C:{c} SEC:INSECURE SIMKEY:{simkey}"),
    ];
    let valid: Vec<Value> = valid
        .iter()
        .map(|text| json!({ "input": text, "canonical": EnclaveConstraint::parse(text).unwrap().to_string() }))
        .collect();
    let invalid = [
        "".to_owned(),
        "SEC:STALE".to_owned(),
        format!("C:{c} FOO:1"),
        format!("C:{c} SEC:MAYBE"),
        format!("C:{c} PROD:1"),
        format!("S:{s}"),
        format!("C:{c} EXPIRE:soon"),
        format!("C:{c} EXPIRE:P0D"),
        format!("C:{c} EXPIRE:P1DT"),
        format!("C:{c} SEC:STALE SEC:SECURE"),
        format!("C:{}", "c0".repeat(31)),
        "C:xyz".to_owned(),
        format!("C:{c} REVOKE:70000"),
        format!("C:{c} SIMKEY:{}", "00".repeat(31)),
        format!("C:{c} C"),
        format!("C:{c} C:"),
    ];
    let invalid: Vec<Value> = invalid
        .iter()
        .map(|text| {
            let err = EnclaveConstraint::parse(text).unwrap_err();
            let token = match &err {
                conclave_core::ConstraintError::InvalidToken { token, .. } => Value::String(token.clone()),
                _ => Value::Null,
            };
            json!({ "input": text, "message": err.to_string(), "token": token })
        })
        .collect();
    json!({
        "description": "constraint texts: valid ones with the canonical form a client must print, invalid ones with the message it must give and the token it names (null when the error is about the whole constraint)",
        "valid": valid,
        "invalid": invalid,
    })
}

/// Constraint checks against verified attestations: the verdict a client must
/// reach (and the exact message of a failure) for each constraint, info and time.
fn constraint_checks_vector() -> Value {
    use conclave_core::EnclaveConstraint;
    let signing = SigningKey::from_bytes(&[0x44; 32]);
    let signing_public = signing.verifying_key().to_bytes();
    let encryption = key(0x55).public_key();
    let good = report(&signing_public, &encryption);
    let sim_key = SigningKey::from_bytes(&[0x66; 32]);
    let other_key = hex::encode(SigningKey::from_bytes(&[0x67; 32]).verifying_key().to_bytes());
    let pinned = hex::encode(sim_key.verifying_key().to_bytes());
    let mock = EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::Mock(good.clone()));
    let sim = EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::simulated_insecure(good, &sim_key));
    let mut tampered = sim.encode();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = EnclaveInstanceInfo::decode(&tampered).unwrap();
    let (c, s) = ("c0".repeat(32), "5e".repeat(32));
    let made = 1_800_000_000u64;
    let cases: Vec<(&str, &EnclaveInstanceInfo, String, u64)> = vec![
        ("mock accepted on purpose", &mock, format!("C:{c} SEC:INSECURE"), made),
        ("mock refused by the default SEC:STALE", &mock, format!("C:{c}"), made),
        ("simulation by signer and product", &sim, format!("S:{s} PROD:1 SEC:INSECURE"), made),
        ("another product id", &sim, format!("S:{s} PROD:2 SEC:INSECURE"), made),
        ("revocation level too low", &sim, format!("C:{c} REVOKE:3 SEC:INSECURE"), made),
        ("revocation level high enough", &sim, format!("C:{c} REVOKE:2 SEC:INSECURE"), made),
        (
            "neither code hash nor signer",
            &sim,
            format!("C:{} S:{} PROD:1 SEC:INSECURE", "ab".repeat(32), "cd".repeat(48)),
            made,
        ),
        ("young enough", &sim, format!("C:{c} SEC:INSECURE EXPIRE:PT1H"), made + 3600),
        ("too old", &sim, format!("C:{c} SEC:INSECURE EXPIRE:PT1H"), made + 3601),
        ("made in the future counts as new", &sim, format!("C:{c} SEC:INSECURE EXPIRE:PT1S"), made - 100),
        (
            "the pinned simulated attestation key",
            &sim,
            format!("C:{c} SEC:INSECURE SIMKEY:{other_key} SIMKEY:{pinned}"),
            made,
        ),
        ("another simulated attestation key", &sim, format!("C:{c} SEC:INSECURE SIMKEY:{other_key}"), made),
        ("SIMKEY refuses unsigned mock evidence", &mock, format!("C:{c} SEC:INSECURE SIMKEY:{pinned}"), made),
        (
            "SIMKEY is checked before the identity",
            &sim,
            format!("C:{} SEC:INSECURE SIMKEY:{other_key}", "ab".repeat(32)),
            made,
        ),
        ("a tampered attestation fails before any constraint", &tampered, format!("C:{c} SEC:INSECURE"), made),
    ];
    let cases: Vec<Value> = cases
        .into_iter()
        .map(|(name, info, constraint, now)| {
            let result = match EnclaveConstraint::parse(&constraint).unwrap().check(info, now) {
                Ok(_) => json!("ok"),
                Err(e) => json!({ "error": e.to_string() }),
            };
            json!({ "name": name, "constraint": constraint, "encoded": hex::encode(info.encode()), "now": now, "result": result })
        })
        .collect();
    // EXPIRE periods: each is parsed, then checked 10^12 s after the evidence
    // was made, so the error names the period's length in seconds.
    let periods = [
        "P1Y",
        "P1M",
        "P1W",
        "P1D",
        "PT1H",
        "PT1M",
        "PT1S",
        "PT1.5H",
        "PT0,5M",
        "PT1.999999999S",
        "P1Y2M3W4DT5H6M7S",
        "P6M2W5D",
        "P19998Y",
        "P19999Y",
        "PT0.5S",
        "P1.5D",
        "PT1.5H30M",
        "P",
        "PT",
        "P1DT1H1H",
        "p1d",
        "P-1D",
        "PT1.1234567891S",
        "P1M1Y",
        "P0001D",
        "PT36H",
        "P1DT",
        "PT1H1S",
    ];
    let periods: Vec<Value> = periods
        .iter()
        .map(|period| {
            let text = format!("C:{c} SEC:INSECURE EXPIRE:{period}");
            let result = match EnclaveConstraint::parse(&text) {
                Err(e) => json!({ "error": e.to_string() }),
                Ok(constraint) => match constraint.check(&sim, made + 1_000_000_000_000) {
                    Ok(_) => json!("ok"),
                    Err(e) => json!({ "expired": e.to_string() }),
                },
            };
            json!({ "period": period, "result": result })
        })
        .collect();
    json!({
        "description": "constraints checked against mock and simulation attestations at a given unix time ('now'); 'result' is \"ok\" or the exact error a client must give. 'periods': EXPIRE values, each either refused when parsed ('error') or checked 10^12 s after the evidence was made ('expired' names its length in seconds)",
        "cases": cases,
        "periods": periods,
    })
}

/// Hardware evidence (the recorded SGX and TDX samples of crates/attestation)
/// inside an EnclaveInstanceInfo: what verifying the evidence proves, and the
/// verdict on the info at a time inside, and one after, the collateral's window.
/// The samples' report data is not our keys' binding, so every info fails the
/// key binding once its evidence verifies.
fn hardware_vector() -> Value {
    use conclave_attestation::HardwareEvidence;
    use conclave_core::info::AttestedIdentity;
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../attestation/tests/data");
    let read = |name: &str| std::fs::read(data.join(name)).unwrap();
    let signing = SigningKey::from_bytes(&[0x44; 32]);
    let encryption = key(0x55).public_key();
    let within = 1_751_328_000u64;
    let after = 1_760_000_000u64;
    let samples = [
        (
            "sgx-dcap",
            HardwareEvidence::SgxDcap { quote: read("sgx_quote"), collateral: read("sgx_quote_collateral.json") },
        ),
        ("tdx", HardwareEvidence::Tdx { quote: read("tdx_quote"), collateral: read("tdx_quote_collateral.json") }),
    ];
    let cases: Vec<Value> = samples
        .into_iter()
        .map(|(kind, evidence)| {
            let verified = evidence.verify(within).unwrap();
            let identity = serde_json::to_value(AttestedIdentity::from_hardware(&verified)).unwrap();
            let info = EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::Hardware(evidence.clone()));
            let verdict = |now| match info.verify(now) {
                Ok(_) => json!("ok"),
                Err(e) => json!({ "error": e.to_string() }),
            };
            let mut tampered = evidence;
            if let HardwareEvidence::SgxDcap { quote, .. } | HardwareEvidence::Tdx { quote, .. } = &mut tampered {
                // A byte of the report body, which the quoting enclave signed.
                quote[100] ^= 1;
            }
            let tampered = EnclaveInstanceInfo::signed(&signing, encryption, run(), Evidence::Hardware(tampered));
            json!({
                "kind": kind,
                "encoded": hex::encode(info.encode()),
                "tampered_encoded": hex::encode(tampered.encode()),
                "report_data": hex::encode(&verified.report_data),
                "debug": verified.debug,
                "tcb_status": verified.tcb_status,
                "identity": identity,
                "within": within,
                "verdict_within": verdict(within),
                "after": after,
                "verdict_after": verdict(after),
                "verdict_tampered": match tampered.verify(within) {
                    Ok(_) => json!("ok"),
                    Err(e) => json!({ "error": e.to_string() }),
                },
            })
        })
        .collect();
    json!({
        "description": "SGX DCAP and TDX evidence (crates/attestation/tests/data) in EnclaveInstanceInfo version 2: the identity the evidence proves at 'within', and the verdicts at 'within' (key binding: the samples bind other keys), 'after' (collateral expired) and on a quote with one report byte flipped",
        "cases": cases,
    })
}

/// Compares two JSON values; on a difference, names the path and shows
/// where the hex parts.
fn compare(name: &str, at: &str, want: &Value, got: &Value) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let keys: std::collections::BTreeSet<_> = w.keys().chain(g.keys()).collect();
            for key in keys {
                compare(
                    name,
                    &format!("{at}.{key}"),
                    w.get(key).unwrap_or(&Value::Null),
                    g.get(key).unwrap_or(&Value::Null),
                );
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{name}: {at} has {} items stored, {} now", w.len(), g.len());
            for (i, (w, g)) in w.iter().zip(g).enumerate() {
                compare(name, &format!("{at}[{i}]"), w, g);
            }
        }
        (Value::String(w), Value::String(g)) if w != g => {
            let from = w.chars().zip(g.chars()).take_while(|(a, b)| a == b).count();
            panic!(
                "{name}: {at} differs at character {from}\n  stored: ...{}\n  now:    ...{}",
                &w[from.saturating_sub(8)..(from + 40).min(w.len())],
                &g[from.saturating_sub(8)..(from + 40).min(g.len())]
            );
        }
        (w, g) => assert_eq!(w, g, "{name}: {at} differs"),
    }
}

fn check(name: &str, fresh: Value) {
    let file = path(name);
    if std::env::var_os("CONCLAVE_REGENERATE_VECTORS").is_some() {
        std::fs::write(&file, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    compare(name, "$", &stored, &fresh);
}

#[test]
fn mail_known_answer() {
    check("mail-v2.json", mail_vector());
}

#[test]
fn stored_mail_decrypts_with_the_stored_key() {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(path("mail-v2.json")).unwrap()).unwrap();
    let recipient: [u8; 32] =
        hex::decode(stored["recipient_private_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let mail = hex::decode(stored["mail"].as_str().unwrap()).unwrap();
    let got = decrypt_mail(&PrivateKey::from_bytes(recipient), &mail).unwrap();
    assert_eq!(got.body, b"hello, enclave");
    assert_eq!(got.sender.to_hex(), stored["sender_public_key"].as_str().unwrap());
}

#[test]
fn a_version_1_mail_is_refused_by_name() {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(path("mail-v2.json")).unwrap()).unwrap();
    let mut mail = hex::decode(stored["mail"].as_str().unwrap()).unwrap();
    mail[2] = 1;
    let err = decrypt_mail(&key(0x22), &mail).unwrap_err();
    assert_eq!(err.to_string(), "unsupported mail version 1 (this code reads version 2)");
}

#[test]
fn info_known_answer() {
    check("info-v2.json", info_vector());
}

#[test]
fn attestation_verdicts() {
    check("attestations-v2.json", attestations_vector());
}

#[test]
fn frames_known_answer() {
    check("frames-v1.json", frames_vector());
}

#[test]
fn freshness_known_answer() {
    check("freshness-v1.json", freshness_vector());
}

#[test]
fn exchange_known_answer() {
    check("exchange-v2.json", exchange_vector());
}

#[test]
fn constraints_known_answer() {
    check("constraints-v1.json", constraints_vector());
}

#[test]
fn constraint_checks_known_answer() {
    check("constraint-checks-v1.json", constraint_checks_vector());
}

#[test]
fn hardware_known_answer() {
    check("hardware-v1.json", hardware_vector());
}
