//! Intel SGX and TDX DCAP quotes from Phala-Network/dcap-qvl, with their collateral.

mod common;

use common::{AUGUST_2025, JULY_2025, data, sgx, tdx};
use conclave_attestation::{
    AttestationError, EvidenceKind, HardwareEvidence, SecuritySummary, SignedItem, TeeDetails, TrustRoots,
};

/// The TDX sample's registers, as the testdata README lists them (quote offsets 184..568).
const TDX_MRTD: &str =
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
const TDX_RTMR: [&str; 4] = [
    "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0",
    "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378",
    "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];
/// SHA-384(MRTD ‖ RTMR0..3 ‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG) of the TDX sample,
/// computed apart from this crate (Python hashlib over the raw quote bytes).
const TDX_CODE_HASH: &str =
    "ea7e4523802457c49c41902cc133000079f37756577546851d4e6cea3fcac1cd0c1982c69bf32f79a7df3c5f880ab352";

fn with_collateral_edit(
    evidence: HardwareEvidence,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> HardwareEvidence {
    let edited = |collateral: &[u8]| {
        let mut json: serde_json::Value = serde_json::from_slice(collateral).unwrap();
        edit(json.as_object_mut().unwrap());
        serde_json::to_vec(&json).unwrap()
    };
    match evidence {
        HardwareEvidence::SgxDcap { quote, collateral } => {
            HardwareEvidence::SgxDcap { quote, collateral: edited(&collateral) }
        }
        HardwareEvidence::Tdx { quote, collateral } => HardwareEvidence::Tdx { quote, collateral: edited(&collateral) },
        _ => unreachable!(),
    }
}

fn with_quote_byte_flipped(evidence: HardwareEvidence, offset: usize) -> HardwareEvidence {
    match evidence {
        HardwareEvidence::SgxDcap { mut quote, collateral } => {
            quote[offset] ^= 0x01;
            HardwareEvidence::SgxDcap { quote, collateral }
        }
        HardwareEvidence::Tdx { mut quote, collateral } => {
            quote[offset] ^= 0x01;
            HardwareEvidence::Tdx { quote, collateral }
        }
        _ => unreachable!(),
    }
}

#[test]
fn sgx_sample_verifies_with_the_published_tcb_status() {
    let v = sgx().verify(JULY_2025).unwrap();
    assert_eq!(v.kind, EvidenceKind::SgxDcap);
    assert_eq!(hex::encode(&v.measurement), "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
    assert_eq!(
        hex::encode(v.signer.as_deref().unwrap()),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(v.product_id, Some(0));
    // ISVSVN 0: the revocation level saturates at 0.
    assert_eq!(v.revocation_level, Some(0));
    let mut expected_report_data = b"Hello, world!".to_vec();
    expected_report_data.resize(64, 0);
    assert_eq!(v.report_data, expected_report_data);
    assert!(!v.debug);
    assert_eq!(v.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(v.security, SecuritySummary::Stale);
    assert!(v.security_reason.contains("ConfigurationAndSWHardeningNeeded"));
    // A DCAP quote carries no creation time; the verification time is not one.
    assert_eq!(v.timestamp_unix, None);
    let TeeDetails::Sgx(d) = &v.details else { panic!("sgx details expected, got {:?}", v.details) };
    assert_eq!(d.mr_enclave.to_vec(), v.measurement);
    assert_eq!(d.mr_signer.to_vec(), v.signer.unwrap());
    assert_eq!((d.isv_prod_id, d.isv_svn), (0, 0));
    assert_eq!(hex::encode(d.attributes), "0500000000000000e700000000000000");
    let json = v.details.to_json();
    assert_eq!(json["mrenclave"], "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
    assert_eq!(json["isvsvn"], 0);
}

#[test]
fn sgx_sample_verifies_at_the_source_tests_time() {
    // dcap-qvl's own tests use the earliest nextUpdate minus one second.
    let v = sgx().verify(1_752_919_277).unwrap();
    assert_eq!(v.tcb_status, "ConfigurationAndSWHardeningNeeded");
}

#[test]
fn tdx_sample_with_trailing_padding_verifies_up_to_date() {
    let quote = data("tdx_quote");
    assert_eq!(quote.len(), 5006);
    assert!(quote[4936..].iter().all(|&b| b == 0), "70 bytes of padding");
    let v = tdx().verify(JULY_2025).unwrap();
    assert_eq!(v.kind, EvidenceKind::Tdx);
    assert_eq!(hex::encode(&v.measurement), TDX_CODE_HASH);
    assert_eq!(
        hex::encode(&v.report_data),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    assert_eq!(v.signer, None);
    assert!(!v.debug);
    assert_eq!(v.tcb_status, "UpToDate");
    assert!(v.advisory_ids.is_empty());
    assert_eq!(v.security, SecuritySummary::Secure);
    assert_eq!(v.timestamp_unix, None);
}

#[test]
fn tdx_code_hash_is_the_composite_and_every_register_is_exposed() {
    let v = tdx().verify(JULY_2025).unwrap();
    // MRTD alone pins only the firmware: it must not be the code hash any more.
    assert_ne!(hex::encode(&v.measurement), TDX_MRTD);
    let TeeDetails::Tdx(d) = &v.details else { panic!("tdx details expected, got {:?}", v.details) };
    assert_eq!(hex::encode(d.mr_td), TDX_MRTD);
    for (i, expected) in TDX_RTMR.iter().enumerate() {
        assert_eq!(hex::encode(d.rtmr[i]), *expected, "rtmr{i}");
    }
    for zero in [d.mr_config_id, d.mr_owner, d.mr_owner_config] {
        assert_eq!(zero, [0; 48]);
    }
    assert_eq!(hex::encode(d.composite_measurement()), TDX_CODE_HASH);
    let json = v.details.to_json();
    assert_eq!(v.details.json_key(), "tdx");
    assert_eq!(json["mrtd"], TDX_MRTD);
    for (i, expected) in TDX_RTMR.iter().enumerate() {
        assert_eq!(json[format!("rtmr{i}")], *expected);
    }
    assert_eq!(json["mrconfigid"], "00".repeat(48));
    assert_eq!(json["mrowner"], "00".repeat(48));
    assert_eq!(json["mrownerconfig"], "00".repeat(48));
}

#[test]
fn flipped_byte_in_a_tdx_rtmr_or_mrowner_breaks_the_quote_signature() {
    // RTMR3 at 520..568 and MROWNER at 280..328 are in the signed td report, so a
    // host cannot swap the registers the composite code hash covers.
    for offset in [530, 290] {
        let err = with_quote_byte_flipped(tdx(), offset).verify(JULY_2025).unwrap_err();
        assert!(matches!(err, AttestationError::Signature(SignedItem::TdxQuoteBody)), "offset {offset}: {err}");
    }
}

#[test]
fn flipped_byte_in_sgx_mrenclave_breaks_the_quote_signature() {
    // MRENCLAVE is at 112..144, inside the signed header+body.
    let err = with_quote_byte_flipped(sgx(), 120).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::SgxQuoteBody)), "{err}");
    assert!(err.to_string().contains("isv enclave report"), "{err}");
}

#[test]
fn flipped_byte_in_tdx_mrtd_breaks_the_quote_signature() {
    // MRTD is at 184..232.
    let err = with_quote_byte_flipped(tdx(), 200).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::TdxQuoteBody)), "{err}");
}

#[test]
fn flipped_byte_in_the_qe_report_breaks_the_pck_signature() {
    // The SGX QE report follows the 64-byte ECDSA signature and 64-byte attestation
    // key after the 432+4 byte header/body: 436 + 128 = 564; flip inside its MRENCLAVE.
    let err = with_quote_byte_flipped(sgx(), 564 + 70).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::QeReport)), "{err}");
}

#[test]
fn tcb_info_edited_to_claim_up_to_date_fails_its_signature() {
    let edited = with_collateral_edit(sgx(), |c| {
        let tcb_info = c["tcb_info"].as_str().unwrap();
        assert!(tcb_info.contains("ConfigurationAndSWHardeningNeeded"));
        let better = tcb_info.replace("ConfigurationAndSWHardeningNeeded", "UpToDate");
        c.insert("tcb_info".into(), better.into());
    });
    let err = edited.verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::TcbInfo)), "{err}");
    assert_eq!(err.to_string(), "invalid signature over the tcb info collateral");
}

#[test]
fn qe_identity_edited_to_claim_a_better_status_fails_its_signature() {
    let edited = with_collateral_edit(sgx(), |c| {
        let qe = c["qe_identity"].as_str().unwrap();
        assert!(qe.contains("OutOfDate"));
        let better = qe.replace("OutOfDate", "UpToDate");
        c.insert("qe_identity".into(), better.into());
    });
    let err = edited.verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::QeIdentity)), "{err}");
}

#[test]
fn expired_collateral_names_the_item_and_its_window() {
    let err = sgx().verify(AUGUST_2025).unwrap_err();
    let AttestationError::OutsideValidity { item, now, not_before, not_after } = &err else {
        panic!("expected a validity error, got {err}");
    };
    assert_eq!(item, "tcb info collateral");
    assert_eq!(now.0, AUGUST_2025);
    assert_eq!(not_before.0, 1_750_330_571); // 2025-06-19T10:56:11Z
    assert_eq!(not_after.0, 1_752_922_571); // 2025-07-19T10:56:11Z
    let text = err.to_string();
    assert!(text.contains("2025-06-19T10:56:11Z") && text.contains("2025-07-19T10:56:11Z"));
}

#[test]
fn the_first_second_after_the_window_fails_and_the_last_one_passes() {
    // The QE identity expires at 2025-07-19T10:01:18Z (1752919278), before the TCB info.
    tdx().verify(1_752_919_234).unwrap();
    let err = sgx().verify(1_752_919_279).unwrap_err();
    assert!(err.to_string().starts_with("qe identity collateral is not valid"), "{err}");
}

#[test]
fn collateral_not_yet_valid_is_refused() {
    let err = tdx().verify(1_750_000_000).unwrap_err();
    assert!(matches!(&err, AttestationError::OutsideValidity { item, .. } if item == "tcb info collateral"), "{err}");
}

#[test]
fn another_root_is_refused() {
    // The AMD Milan ARK is a real root, just not Intel's.
    let mut roots = TrustRoots::pinned();
    let ark = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/roots/amd_ark_milan.pem")).unwrap();
    let pem = String::from_utf8(ark).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    roots.intel_sgx_root = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    let err = sgx().verify_with_roots(JULY_2025, &roots).unwrap_err();
    assert!(matches!(err, AttestationError::UntrustedRoot { kind: EvidenceKind::SgxDcap, .. }), "{err}");
}

#[test]
fn sgx_quote_presented_as_tdx_is_refused() {
    let HardwareEvidence::SgxDcap { quote, collateral } = sgx() else { unreachable!() };
    let err = HardwareEvidence::Tdx { quote, collateral }.verify(JULY_2025).unwrap_err();
    assert!(err.to_string().starts_with("quote tee_type mismatch"), "{err}");
}

#[test]
fn truncated_quote_and_broken_json_are_malformed() {
    let HardwareEvidence::SgxDcap { quote, collateral } = sgx() else { unreachable!() };
    let err = HardwareEvidence::SgxDcap { quote: quote[..400].to_vec(), collateral: collateral.clone() }
        .verify(JULY_2025)
        .unwrap_err();
    assert!(matches!(err, AttestationError::Malformed { what: "sgx quote", .. }), "{err}");
    let err =
        HardwareEvidence::SgxDcap { quote, collateral: collateral[..100].to_vec() }.verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Malformed { what: "dcap collateral json", .. }), "{err}");
}
