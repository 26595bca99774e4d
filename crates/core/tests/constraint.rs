//! The constraint language against evidence of every kind: ISO 8601 periods with
//! weeks, EXPIRE on evidence that has no creation time, and SIMKEY pinning of the
//! simulated attestation key.

use conclave_attestation::{HardwareEvidence, formats};
use conclave_core::{
    AttestedIdentity, ConstraintError, EnclaveConstraint, EnclaveInstanceInfo, EnclaveReport, Evidence, PrivateKey,
    Unsatisfied, key_binding,
};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;

const CODE: [u8; 32] = [0xc0; 32];
const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
/// 2025-07-01T00:00:00Z, inside the recorded Intel collateral's window.
const JULY_2025: u64 = 1_751_328_000;
/// The recorded Nitro document's own timestamp.
const NITRO_TIME: u64 = 1_725_719_859;
const SGX_MRSIGNER: &str = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6";

fn code() -> String {
    format!("C:{}", hex::encode(CODE))
}

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/../attestation/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// An info whose evidence says it was made at `made_at`.
fn info_made_at(made_at: u64, evidence: impl FnOnce(EnclaveReport) -> Evidence) -> EnclaveInstanceInfo {
    let signing_key = SigningKey::generate(&mut OsRng);
    let signing = signing_key.verifying_key().to_bytes();
    let encryption = PrivateKey::generate(&mut OsRng).public_key();
    let report = EnclaveReport {
        code_hash: CODE,
        code_signing_key_hash: [0x51; 32],
        product_id: 3,
        revocation_level: 2,
        report_data: key_binding(&signing, &encryption),
        timestamp_unix: made_at,
    };
    let run = conclave_core::StateCheckpoint { counter: 1, id: [1; 32] };
    EnclaveInstanceInfo::signed(&signing_key, encryption, run, evidence(report))
}

fn mock_made_at(made_at: u64) -> EnclaveInstanceInfo {
    info_made_at(made_at, Evidence::Mock)
}

fn simulated_by(key: &SigningKey) -> EnclaveInstanceInfo {
    info_made_at(NOW - 60, |r| Evidence::simulated_insecure(r, key))
}

fn unsatisfied(result: Result<impl std::fmt::Debug, ConstraintError>) -> Unsatisfied {
    match result {
        Err(ConstraintError::NotSatisfied(u)) => u,
        other => panic!("expected an unsatisfied constraint, got {other:?}"),
    }
}

fn parse(text: &str) -> EnclaveConstraint {
    EnclaveConstraint::parse(text).unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
}

fn invalid(text: &str) -> (String, String) {
    match EnclaveConstraint::parse(text) {
        Err(ConstraintError::InvalidToken { token, reason }) => (token, reason),
        other => panic!("{text:?}: expected an invalid token, got {other:?}"),
    }
}

// ---- EXPIRE: ISO 8601 periods --------------------------------------------------

#[test]
fn weeks_combine_with_other_units() {
    // P6M2W5D is the example in R3 Conclave's own constraint documentation.
    for (period, seconds) in [
        ("P6M2W5D", (6 * 30 + 2 * 7 + 5) * DAY),
        ("P1W1D", 8 * DAY),
        ("P1W2D", 9 * DAY), // once silently 7 days
        ("P2W", 14 * DAY),
        ("PT36H", 36 * 3_600),
        ("P1Y2M3W4DT5H6M7S", (365 + 60 + 21 + 4) * DAY + 5 * 3_600 + 6 * 60 + 7),
        ("P1WT1S", 7 * DAY + 1),
        ("PT1.5H", 5_400),
    ] {
        let constraint = parse(&format!("{} SEC:INSECURE EXPIRE:{period}", code()));
        constraint.check(&mock_made_at(NOW - seconds), NOW).unwrap_or_else(|e| panic!("{period}: {e}"));
        let too_old = unsatisfied(constraint.check(&mock_made_at(NOW - seconds - 1), NOW));
        assert_eq!(
            too_old,
            Unsatisfied::Expired { period: period.to_owned(), max_age_seconds: seconds, age_seconds: seconds + 1 },
            "{period}"
        );
        assert!(constraint.to_string().ends_with(&format!("EXPIRE:{period}")), "{constraint}");
    }
}

#[test]
fn malformed_periods_are_refused_naming_the_token() {
    for period in [
        "P1D1Y",   // units out of order
        "P1W1W",   // a unit twice
        "PT1H30",  // a number without its unit
        "P30Dxyz", // trailing text
        "P1DT",    // T without a time unit
        "PT",
        "P",
        "PT1H2D", // a date unit after T
        "p1d",    // lowercase
        "P1d",
        "-P1D", // signed
        "+P1D",
        "P1.5D", // a fraction on a date unit
        "30D",
        "P0001-02-03T04:05", // the alternative format is not accepted
        "P99999Y",           // beyond any sensible age (and jiff's span limits)
    ] {
        let token = format!("EXPIRE:{period}");
        let (named, reason) = invalid(&format!("{} {token}", code()));
        assert_eq!(named, token);
        assert_eq!(reason, "value must be an ISO 8601 duration such as P30D, PT12H or P6M2W5D", "{period}");
    }
}

#[test]
fn zero_periods_are_refused() {
    for period in ["P0D", "PT0S", "P0Y0M0W0DT0H0M0S", "PT0.5S"] {
        let (token, reason) = invalid(&format!("{} EXPIRE:{period}", code()));
        assert_eq!(token, format!("EXPIRE:{period}"));
        assert_eq!(reason, "the period must be at least one second");
    }
}

// ---- EXPIRE where the evidence has no timestamp --------------------------------

fn hardware_identity(evidence: HardwareEvidence, at: u64) -> AttestedIdentity {
    AttestedIdentity::from_hardware(&evidence.verify(at).unwrap())
}

fn sgx_identity() -> AttestedIdentity {
    hardware_identity(
        HardwareEvidence::SgxDcap { quote: data("sgx_quote"), collateral: data("sgx_quote_collateral.json") },
        JULY_2025,
    )
}

#[test]
fn expire_refuses_sgx_evidence_because_it_has_no_creation_time() {
    let id = sgx_identity();
    assert_eq!(id.timestamp_unix, None);
    let without = parse(&format!("S:{SGX_MRSIGNER} PROD:0"));
    without.check_identity(&id, JULY_2025).unwrap();

    let with = parse(&format!("S:{SGX_MRSIGNER} PROD:0 EXPIRE:P1D"));
    let err = with.check_identity(&id, JULY_2025).unwrap_err();
    assert_eq!(
        err,
        ConstraintError::NotSatisfied(Unsatisfied::NoTimestamp { period: "P1D".into(), evidence: "sgx-dcap".into() })
    );
    assert_eq!(
        err.to_string(),
        "constraint not satisfied: EXPIRE:P1D: sgx-dcap evidence carries no creation time, so its age cannot be \
         checked; drop EXPIRE for sgx-dcap enclaves"
    );
}

#[test]
fn expire_refuses_tdx_and_snp_evidence_too() {
    let tdx = hardware_identity(
        HardwareEvidence::Tdx { quote: data("tdx_quote"), collateral: data("tdx_quote_collateral.json") },
        JULY_2025,
    );
    let report = formats::snp_report(&data("report_milan.hex")).unwrap();
    let snp = hardware_identity(
        HardwareEvidence::SevSnp { report, vcek: data("vcek_milan.der"), chain: data("cert_chain_milan") },
        JULY_2025,
    );
    for (id, kind) in [(tdx, "tdx"), (snp, "sev-snp")] {
        let pinned = format!("C:{}", hex::encode(&id.code_hash));
        parse(&pinned).check_identity(&id, JULY_2025).unwrap();
        // An hour after verification, or the same second: the age is unknown either way.
        let err = parse(&format!("{pinned} EXPIRE:P30D")).check_identity(&id, JULY_2025).unwrap_err();
        assert_eq!(
            err,
            ConstraintError::NotSatisfied(Unsatisfied::NoTimestamp { period: "P30D".into(), evidence: kind.into() })
        );
    }
}

#[test]
fn expire_measures_nitro_evidence_from_its_signed_timestamp() {
    let id = hardware_identity(
        HardwareEvidence::Nitro { document: formats::nitro_document(&data("nitro_attestation.b64")).unwrap() },
        NITRO_TIME,
    );
    assert_eq!(id.timestamp_unix, Some(NITRO_TIME));
    let constraint = parse(&format!("C:{} EXPIRE:PT1H", hex::encode(&id.code_hash)));
    constraint.check_identity(&id, NITRO_TIME + 3_600).unwrap();
    assert_eq!(
        unsatisfied(constraint.check_identity(&id, NITRO_TIME + 3_601)),
        Unsatisfied::Expired { period: "PT1H".into(), max_age_seconds: 3_600, age_seconds: 3_601 }
    );
}

// ---- SIMKEY --------------------------------------------------------------------

#[test]
fn without_simkey_anyone_can_sign_simulation_evidence() {
    // The hole SIMKEY closes: a key nobody pinned vouches for the code hash.
    let stranger = SigningKey::generate(&mut OsRng);
    parse(&format!("{} SEC:INSECURE", code())).check(&simulated_by(&stranger), NOW).unwrap();
}

#[test]
fn simkey_accepts_simulation_evidence_signed_by_a_pinned_key() {
    let host = SigningKey::generate(&mut OsRng);
    let other = SigningKey::generate(&mut OsRng);
    let constraint = parse(&format!(
        "{} SEC:INSECURE SIMKEY:{} SIMKEY:{}",
        code(),
        hex::encode(other.verifying_key().as_bytes()),
        hex::encode(host.verifying_key().as_bytes()),
    ));
    let verified = constraint.check(&simulated_by(&host), NOW).unwrap();
    assert_eq!(verified.identity.simulated_attestation_key, Some(host.verifying_key().to_bytes()));
    let json = verified.to_json();
    assert_eq!(json["simulated_attestation_key"], hex::encode(host.verifying_key().as_bytes()));
}

#[test]
fn simkey_refuses_simulation_evidence_signed_by_another_key() {
    let host = SigningKey::generate(&mut OsRng);
    let forger = SigningKey::generate(&mut OsRng);
    let pinned = hex::encode(host.verifying_key().as_bytes());
    let constraint = parse(&format!("{} SEC:INSECURE SIMKEY:{pinned}", code()));
    let err = constraint.check(&simulated_by(&forger), NOW).unwrap_err();
    let forged = hex::encode(forger.verifying_key().as_bytes());
    assert_eq!(
        err,
        ConstraintError::NotSatisfied(Unsatisfied::SimulationKey {
            actual: format!("simulated attestation key {forged}"),
            accepted: vec![pinned.clone()],
        })
    );
    assert_eq!(
        err.to_string(),
        format!(
            "constraint not satisfied: SIMKEY: the evidence is signed by simulated attestation key {forged}, not by \
             one of the pinned simulated attestation keys ({pinned})"
        )
    );
}

#[test]
fn simkey_refuses_mock_evidence_which_is_unsigned() {
    let host = SigningKey::generate(&mut OsRng);
    let pinned = hex::encode(host.verifying_key().as_bytes());
    let constraint = parse(&format!("{} SEC:INSECURE SIMKEY:{pinned}", code()));
    let err = unsatisfied(constraint.check(&mock_made_at(NOW), NOW));
    assert_eq!(
        err,
        Unsatisfied::SimulationKey { actual: "no key (mock evidence is unsigned)".into(), accepted: vec![pinned] }
    );
    // Without SIMKEY the same mock evidence passes.
    parse(&format!("{} SEC:INSECURE", code())).check(&mock_made_at(NOW), NOW).unwrap();
}

#[test]
fn simkey_has_no_effect_on_hardware_evidence() {
    let host = SigningKey::generate(&mut OsRng);
    let constraint = parse(&format!("S:{SGX_MRSIGNER} PROD:0 SIMKEY:{}", hex::encode(host.verifying_key().as_bytes())));
    constraint.check_identity(&sgx_identity(), JULY_2025).unwrap();
}

#[test]
fn simkey_values_are_checked_when_parsed() {
    let (token, reason) = invalid(&format!("{} SIMKEY:abc", code()));
    assert_eq!((token.as_str(), reason.as_str()), ("SIMKEY:abc", "value is not hex"));
    let (_, reason) = invalid(&format!("{} SIMKEY:{}", code(), "ab".repeat(48)));
    assert_eq!(reason, "key is 48 bytes; expected a 32-byte ed25519 public key (64 hex digits)");
    // y = 2: (y² - 1) / (d·y² + 1) is not a square mod 2^255 - 19, so no point has it.
    let mut not_a_point = [0; 32];
    not_a_point[0] = 2;
    let (_, reason) = invalid(&format!("{} SIMKEY:{}", code(), hex::encode(not_a_point)));
    assert_eq!(reason, "value is not an ed25519 public key");
    // SIMKEY says who may vouch, not what runs: it is no identity on its own.
    let key = hex::encode(SigningKey::generate(&mut OsRng).verifying_key().as_bytes());
    assert_eq!(EnclaveConstraint::parse(&format!("SIMKEY:{key} SEC:INSECURE")), Err(ConstraintError::NoIdentity));
}

#[test]
fn unknown_keys_list_simkey() {
    let (_, reason) = invalid(&format!("{} SIMKEYS:00", code()));
    assert_eq!(reason, "unknown key \"SIMKEYS\"; keys are C, S, PROD, REVOKE, SEC, EXPIRE, SIMKEY");
}

#[test]
fn canonical_form_lists_simkeys_last_deduplicated_in_lowercase() {
    let a = hex::encode(SigningKey::generate(&mut OsRng).verifying_key().as_bytes());
    let b = hex::encode(SigningKey::generate(&mut OsRng).verifying_key().as_bytes());
    let text = format!("SIMKEY:{} EXPIRE:P1W1D SIMKEY:{b} {} SEC:INSECURE SIMKEY:{a}", a.to_ascii_uppercase(), code());
    let constraint = parse(&text);
    let canonical = format!("{} SEC:INSECURE EXPIRE:P1W1D SIMKEY:{a} SIMKEY:{b}", code());
    assert_eq!(constraint.to_string(), canonical);
    assert_eq!(parse(&canonical), constraint);
}
