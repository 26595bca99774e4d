//! EnclaveInstanceInfo encoding and key binding, and the constraint language.

use conclave_core::{
    ConstraintError, EnclaveConstraint, EnclaveInstanceInfo, EnclaveMode, EnclaveReport, Evidence, InfoError,
    PrivateKey, SecuritySummary, StateCheckpoint, Unsatisfied, key_binding,
};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;

const CODE: [u8; 32] = [0xc0; 32];
const SIGNER: [u8; 32] = [0x51; 32];
const NOW: u64 = 1_800_000_000;

/// The run checkpoint these infos carry.
const RUN: StateCheckpoint = StateCheckpoint { counter: 1, id: [0x12; 32] };

fn info_with(evidence: impl FnOnce(EnclaveReport) -> Evidence) -> EnclaveInstanceInfo {
    let signing_key = SigningKey::generate(&mut OsRng);
    let signing = signing_key.verifying_key().to_bytes();
    let encryption = PrivateKey::generate(&mut OsRng).public_key();
    let report = EnclaveReport {
        code_hash: CODE,
        code_signing_key_hash: SIGNER,
        product_id: 3,
        revocation_level: 2,
        report_data: key_binding(&signing, &encryption),
        timestamp_unix: NOW - 60,
    };
    EnclaveInstanceInfo::signed(&signing_key, encryption, RUN, evidence(report))
}

/// The same info with another encryption key (and no valid run signature).
fn with_key(info: &EnclaveInstanceInfo, key: conclave_core::PublicKey) -> EnclaveInstanceInfo {
    EnclaveInstanceInfo::new(*info.data_signing_key(), key, *info.run(), [0; 64], info.evidence().clone())
}

fn mock_info() -> EnclaveInstanceInfo {
    info_with(Evidence::Mock)
}

fn simulated_info() -> EnclaveInstanceInfo {
    let key = SigningKey::generate(&mut OsRng);
    info_with(|r| Evidence::simulated_insecure(r, &key))
}

#[test]
fn encode_decode_round_trip() {
    for info in [mock_info(), simulated_info()] {
        let bytes = info.encode();
        assert_eq!(&bytes[..4], b"CEII");
        assert_eq!(EnclaveInstanceInfo::decode(&bytes).unwrap(), info);
    }
}

#[test]
fn decode_rejects_damage() {
    let bytes = mock_info().encode();
    for len in 0..bytes.len() {
        assert!(EnclaveInstanceInfo::decode(&bytes[..len]).is_err(), "prefix of {len} bytes accepted");
    }
    let mut bad = bytes.clone();
    bad[5] = 1;
    assert_eq!(EnclaveInstanceInfo::decode(&bad), Err(InfoError::UnsupportedVersion { found: 1, supported: 2 }));
    let mut long = bytes;
    long.push(0);
    assert!(EnclaveInstanceInfo::decode(&long).is_err());
}

#[test]
fn verify_reports_mode_identity_and_insecurity() {
    let v = mock_info().verify(NOW).unwrap();
    assert_eq!(v.mode, EnclaveMode::Mock);
    assert_eq!(v.identity.code_hash, CODE);
    assert_eq!(v.identity.signer.as_deref(), Some(&SIGNER[..]));
    assert_eq!(v.identity.security, SecuritySummary::Insecure);
    assert!(v.identity.security_reason.contains("mock"));
    let json = v.to_json();
    assert_eq!(json["code_hash"], hex::encode(CODE));
    assert_eq!(json["security"]["summary"], "INSECURE");
    assert_eq!(json["mode"], "MOCK");
    let s = simulated_info().verify(NOW).unwrap();
    assert_eq!(s.mode, EnclaveMode::Simulation);
    assert!(s.identity.security_reason.contains("simulat"));
}

#[test]
fn a_swapped_key_breaks_the_binding() {
    for info in [mock_info(), simulated_info()] {
        let other = PrivateKey::generate(&mut OsRng).public_key();
        let swapped = with_key(&info, other);
        assert!(matches!(swapped.verify(NOW), Err(InfoError::KeyBindingMismatch { .. })));
        // Tampering with the encoded key is caught the same way.
        let mut bytes = info.encode();
        bytes[6 + 32] ^= 1;
        let decoded = EnclaveInstanceInfo::decode(&bytes).unwrap();
        assert!(matches!(decoded.verify(NOW), Err(InfoError::KeyBindingMismatch { .. })));
    }
}

#[test]
fn the_run_checkpoint_is_signed_by_the_data_signing_key() {
    let info = mock_info();
    assert_eq!(info.verify(NOW).unwrap().run, RUN);
    // Any change to the checkpoint, or a signature by another key, is refused.
    let mut bytes = info.encode();
    bytes[4 + 2 + 64 + 7] ^= 1;
    assert_eq!(EnclaveInstanceInfo::decode(&bytes).unwrap().verify(NOW), Err(InfoError::BadRunSignature));
    let forged = EnclaveInstanceInfo::new(
        *info.data_signing_key(),
        *info.encryption_key(),
        RUN,
        [7; 64],
        info.evidence().clone(),
    );
    assert_eq!(forged.verify(NOW), Err(InfoError::BadRunSignature));
}

#[test]
fn a_low_order_encryption_key_is_refused() {
    let low = conclave_core::PublicKey::from_bytes([0; 32]);
    let signing_key = SigningKey::generate(&mut OsRng);
    let signing = signing_key.verifying_key().to_bytes();
    let report = EnclaveReport {
        code_hash: CODE,
        code_signing_key_hash: SIGNER,
        product_id: 3,
        revocation_level: 2,
        report_data: key_binding(&signing, &low),
        timestamp_unix: NOW,
    };
    let info = EnclaveInstanceInfo::signed(&signing_key, low, RUN, Evidence::Mock(report));
    assert!(matches!(info.verify(NOW), Err(InfoError::LowOrderEncryptionKey { .. })));
}

#[test]
fn simulated_evidence_signature_covers_the_report() {
    let info = simulated_info();
    let mut bytes = info.encode();
    // Flip a bit of the code hash inside the evidence.
    let evidence_start = 4 + 2 + 32 + 32 + 40 + 64 + 1 + 4;
    bytes[evidence_start] ^= 1;
    let decoded = EnclaveInstanceInfo::decode(&bytes).unwrap();
    assert_eq!(decoded.verify(NOW), Err(InfoError::BadSimulationSignature));
}

fn c() -> String {
    format!("C:{}", hex::encode(CODE))
}
fn s() -> String {
    format!("S:{}", hex::encode(SIGNER))
}

fn check(text: &str) -> Result<(), ConstraintError> {
    EnclaveConstraint::parse(text)?.check(&mock_info(), NOW).map(|_| ())
}

fn unsatisfied(text: &str) -> Unsatisfied {
    match check(text) {
        Err(ConstraintError::NotSatisfied(u)) => u,
        other => panic!("{text}: expected unsatisfied, got {other:?}"),
    }
}

fn invalid_token(text: &str) -> String {
    match EnclaveConstraint::parse(text) {
        Err(ConstraintError::InvalidToken { token, .. }) => token,
        other => panic!("{text}: expected an invalid token, got {other:?}"),
    }
}

#[test]
fn code_hash_rule() {
    check(&format!("{} SEC:INSECURE", c())).unwrap();
    check(&format!("C:{} {} SEC:INSECURE", hex::encode([1u8; 32]), c())).unwrap();
    let u = unsatisfied(&format!("C:{} SEC:INSECURE", hex::encode([1u8; 32])));
    assert!(
        matches!(u, Unsatisfied::Identity { accepted_code_hashes: 1, ref code_hash, .. } if code_hash == &hex::encode(CODE))
    );
    assert!(u.to_string().contains(&hex::encode(CODE)));
}

#[test]
fn signer_and_product_rules() {
    check(&format!("{} PROD:3 SEC:INSECURE", s())).unwrap();
    assert!(matches!(
        unsatisfied(&format!("S:{} PROD:3 SEC:INSECURE", hex::encode([2u8; 32]))),
        Unsatisfied::Identity { accepted_signers: 1, .. }
    ));
    assert_eq!(
        unsatisfied(&format!("{} PROD:4 SEC:INSECURE", s())),
        Unsatisfied::ProductId { expected: 4, actual: "3".into() }
    );
    assert_eq!(EnclaveConstraint::parse(&s()), Err(ConstraintError::MissingProductId));
    assert_eq!(invalid_token(&format!("{} PROD:3", c())), "PROD:3");
}

#[test]
fn revocation_rule() {
    check(&format!("{} REVOKE:2 SEC:INSECURE", c())).unwrap();
    assert_eq!(
        unsatisfied(&format!("{} REVOKE:3 SEC:INSECURE", c())),
        Unsatisfied::RevocationLevel { minimum: 3, actual: "2".into() }
    );
}

#[test]
fn security_rule_defaults_to_stale_and_insecure_must_be_asked_for() {
    let u = unsatisfied(&c());
    assert!(matches!(
        u,
        Unsatisfied::Security { minimum: SecuritySummary::Stale, actual: SecuritySummary::Insecure, .. }
    ));
    assert!(u.to_string().contains("mock"), "reason missing: {u}");
    assert!(matches!(unsatisfied(&format!("{} SEC:SECURE", c())), Unsatisfied::Security { .. }));
    check(&format!("{} SEC:INSECURE", c())).unwrap();
}

#[test]
fn expiry_rule() {
    check(&format!("{} SEC:INSECURE EXPIRE:PT2M", c())).unwrap();
    assert_eq!(
        unsatisfied(&format!("{} SEC:INSECURE EXPIRE:PT30S", c())),
        Unsatisfied::Expired { period: "PT30S".into(), max_age_seconds: 30, age_seconds: 60 }
    );
    check(&format!("{} SEC:INSECURE EXPIRE:P1W", c())).unwrap();
    assert_eq!(invalid_token(&format!("{} EXPIRE:30d", c())), "EXPIRE:30d");
}

#[test]
fn at_least_one_identity_is_required() {
    assert_eq!(EnclaveConstraint::parse("SEC:INSECURE"), Err(ConstraintError::NoIdentity));
    assert_eq!(EnclaveConstraint::parse(""), Err(ConstraintError::NoIdentity));
}

#[test]
fn duplicates_only_for_c_and_s() {
    let twice = EnclaveConstraint::parse(&format!("{} {} C:{}", c(), c(), hex::encode([3u8; 32]))).unwrap();
    assert_eq!(twice.to_string(), format!("{} C:{} SEC:STALE", c(), hex::encode([3u8; 32])));
    EnclaveConstraint::parse(&format!("{} S:{} PROD:1", s(), hex::encode([4u8; 32]))).unwrap();
    for dup in ["PROD:1 PROD:1", "REVOKE:1 REVOKE:2", "SEC:STALE SEC:STALE", "EXPIRE:P1D EXPIRE:P2D"] {
        let text = format!("{} {dup}", s());
        let token = invalid_token(&text);
        assert_eq!(token, dup.split(' ').nth(1).unwrap(), "{text}");
    }
}

#[test]
fn malformed_tokens_are_named() {
    for (text, token) in [
        (format!("{} X:1", c()), "X:1"),
        (format!("{} nocolon", c()), "nocolon"),
        ("C:xyz".to_owned(), "C:xyz"),
        (format!("C:{}", hex::encode([1u8; 20])), ""),
        (format!("{} SEC:MEDIUM", c()), "SEC:MEDIUM"),
        (format!("{} REVOKE:-1", c()), "REVOKE:-1"),
        (format!("{} PROD:70000", s()), "PROD:70000"),
        (format!("{} C:", c()), "C:"),
    ] {
        let got = invalid_token(&text);
        if !token.is_empty() {
            assert_eq!(got, token, "{text}");
        }
    }
}

#[test]
fn canonical_form_parses_back_to_the_same_constraint() {
    let text =
        format!("  EXPIRE:P30D  SEC:INSECURE REVOKE:1 PROD:3 {} C:{}  ", s(), hex::encode([0xABu8; 48]).to_uppercase());
    let parsed = EnclaveConstraint::parse(&text).unwrap();
    let canonical = parsed.to_string();
    assert_eq!(canonical, format!("C:{} {} PROD:3 REVOKE:1 SEC:INSECURE EXPIRE:P30D", hex::encode([0xABu8; 48]), s()));
    assert_eq!(EnclaveConstraint::parse(&canonical).unwrap(), parsed);
}

#[test]
fn a_tampered_binding_fails_the_constraint_check() {
    let info = mock_info();
    let other = PrivateKey::generate(&mut OsRng).public_key();
    let swapped = with_key(&info, other);
    let c = EnclaveConstraint::parse(&format!("{} SEC:INSECURE", c())).unwrap();
    assert!(matches!(c.check(&swapped, NOW), Err(ConstraintError::Attestation(InfoError::KeyBindingMismatch { .. }))));
}

/// Real SGX evidence inside an EnclaveInstanceInfo: it travels in the
/// encoding, is verified at the caller's time, and the key binding is still
/// checked (the sample's report data belongs to someone else's keys, so an
/// info built around our keys must be refused).
#[test]
fn hardware_evidence_is_verified_and_bound_to_the_keys() {
    use conclave_attestation::HardwareEvidence;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../attestation/tests/data");
    let evidence = Evidence::Hardware(HardwareEvidence::SgxDcap {
        quote: std::fs::read(data.join("sgx_quote")).unwrap(),
        collateral: std::fs::read(data.join("sgx_quote_collateral.json")).unwrap(),
    });
    let info = EnclaveInstanceInfo::signed(
        &SigningKey::generate(&mut OsRng),
        PrivateKey::generate(&mut OsRng).public_key(),
        RUN,
        evidence,
    );
    let decoded = EnclaveInstanceInfo::decode(&info.encode()).unwrap();
    assert_eq!(decoded, info);

    // At a time inside the collateral's window the quote verifies, but it
    // does not commit to these keys.
    const JULY_2025: u64 = 1_751_328_000;
    assert!(matches!(decoded.verify(JULY_2025), Err(InfoError::KeyBindingMismatch { .. })));
    // Years later the collateral has expired: a verification error naming the kind.
    let err = decoded.verify(2_000_000_000).unwrap_err();
    assert!(matches!(&err, InfoError::Hardware { kind, .. } if kind == "sgx-dcap"), "{err}");
    // A constraint check surfaces the same refusal.
    let c =
        EnclaveConstraint::parse("S:815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6 PROD:0").unwrap();
    assert!(matches!(c.check(&decoded, JULY_2025), Err(ConstraintError::Attestation(_))));
}

#[test]
fn json_view_names_the_simulation_key_and_a_missing_timestamp_is_null() {
    let mock = mock_info().verify(NOW).unwrap().to_json();
    assert_eq!(mock["simulated_attestation_key"], serde_json::Value::Null);
    assert_eq!(mock["security"]["timestamp"], NOW - 60);

    let key = SigningKey::generate(&mut OsRng);
    let simulated = info_with(|r| Evidence::simulated_insecure(r, &key)).verify(NOW).unwrap();
    assert_eq!(simulated.identity.simulated_attestation_key, Some(key.verifying_key().to_bytes()));
    assert_eq!(simulated.identity.tee_details, None);
    assert_eq!(simulated.to_json()["simulated_attestation_key"], hex::encode(key.verifying_key().as_bytes()));

    // Hardware evidence: its registers under the TEE's name, and no creation time.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../attestation/tests/data/");
    let read = |name: &str| std::fs::read(format!("{dir}{name}")).unwrap();
    let tdx = conclave_attestation::HardwareEvidence::Tdx {
        quote: read("tdx_quote"),
        collateral: read("tdx_quote_collateral.json"),
    };
    let identity = conclave_core::AttestedIdentity::from_hardware(&tdx.verify(1_751_328_000).unwrap());
    let hardware = conclave_core::VerifiedEnclaveInfo {
        mode: EnclaveMode::Release,
        identity,
        data_signing_key: [0; 32],
        encryption_key: PrivateKey::generate(&mut OsRng).public_key(),
        run: RUN,
    };
    let json = hardware.to_json();
    assert_eq!(json["security"]["timestamp"], serde_json::Value::Null);
    assert_eq!(json["simulated_attestation_key"], serde_json::Value::Null);
    assert_eq!(
        json["tdx"]["mrtd"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(json["tdx"]["rtmr3"], "00".repeat(48));
    assert_eq!(
        json["code_hash"],
        "ea7e4523802457c49c41902cc133000079f37756577546851d4e6cea3fcac1cd0c1982c69bf32f79a7df3c5f880ab352"
    );
}
