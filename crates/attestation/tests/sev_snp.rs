//! AMD SEV-SNP report, VCEKs and ASK/ARK chains from virtee/sev.

mod common;

use common::{JULY_2025, data, snp_milan, snp_report_milan};
use conclave_attestation::{
    AttestationError, CertificateProblem, EvidenceKind, HardwareEvidence, SecuritySummary, SignedItem, SnpTcb,
    TeeDetails, TrustRoots,
};

fn milan_with(report: Vec<u8>, vcek: Vec<u8>, chain: Vec<u8>) -> HardwareEvidence {
    HardwareEvidence::SevSnp { report, vcek, chain }
}

#[test]
fn milan_report_verifies_with_its_measurement_and_report_data() {
    let v = snp_milan().verify(JULY_2025).unwrap();
    assert_eq!(v.kind, EvidenceKind::SevSnp);
    assert_eq!(
        hex::encode(&v.measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        hex::encode(&v.report_data),
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    // author_key_digest is all zero in this report.
    assert_eq!(v.signer, None);
    assert!(!v.debug);
    assert_eq!(v.timestamp_unix, None, "an snp report carries no creation time");
}

#[test]
fn milan_report_is_stale_because_its_tcb_currency_cannot_be_evaluated() {
    // Policy 0x30000 (no DEBUG, no MIGRATE_MA) at VMPL 0: genuine and not open to the
    // host, but without AMD KDS data nobody here knows whether TCB 3/0/8/115 is current.
    let v = snp_milan().verify(JULY_2025).unwrap();
    assert_eq!(v.security, SecuritySummary::Stale);
    assert_eq!(v.tcb_status, "NotEvaluated");
    let reason = &v.security_reason;
    assert!(reason.contains("reported tcb (bootloader 3, tee 0, snp 8, microcode 115)"), "{reason}");
    assert!(reason.contains("cannot be evaluated without amd kds data"), "{reason}");
    assert!(reason.contains("never SECURE"), "{reason}");
}

#[test]
fn milan_report_exposes_policy_vmpl_host_data_and_tcb() {
    let v = snp_milan().verify(JULY_2025).unwrap();
    let TeeDetails::SevSnp(d) = &v.details else { panic!("sev-snp details expected, got {:?}", v.details) };
    assert_eq!(d.measurement.to_vec(), v.measurement);
    assert_eq!(d.policy, 0x30000);
    assert_eq!(d.vmpl, 0);
    assert_eq!(d.host_data, [0; 32]);
    assert_eq!(d.reported_tcb, SnpTcb { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: None });
    let json = v.details.to_json();
    assert_eq!(v.details.json_key(), "sev_snp");
    assert_eq!(json["policy"], "0x0000000000030000");
    assert_eq!(json["vmpl"], 0);
    assert_eq!(json["host_data"], "00".repeat(32));
    assert_eq!(json["reported_tcb"]["snp"], 8);
}

#[test]
fn a_host_cannot_flip_the_policy_or_vmpl_of_a_signed_report() {
    // Policy (0x08, DEBUG is bit 19 = byte 0x0A bit 3; MIGRATE_MA bit 18 = bit 2) and
    // VMPL (0x30) are signed: setting them to look better, or worse, breaks the signature.
    for (offset, bit) in [(0x0A, 0x08), (0x0A, 0x04), (0x30, 0x01)] {
        let mut report = snp_report_milan();
        report[offset] ^= bit;
        let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
        assert!(matches!(err, AttestationError::Signature(SignedItem::SnpReport)), "{offset:#x}/{bit:#x}: {err}");
    }
}

#[test]
fn a_reported_tcb_that_is_not_the_vceks_is_a_verification_error() {
    // REPORTED_TCB at 0x180: bootloader byte 0, microcode byte 7. The VCEK was
    // issued for 3/0/8/115; a report claiming another TCB is refused by name.
    let mut report = snp_report_milan();
    report[0x180] = 4;
    let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert_eq!(err.to_string(), "vcek blSPL vs report reported_tcb.bootloader mismatch: expected 3, found 4");
    let mut report = snp_report_milan();
    report[0x187] = 200;
    let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Mismatch { field: "vcek ucodeSPL vs report reported_tcb.microcode", .. }));
}

#[test]
fn flipped_family_id_bit_breaks_the_report_signature() {
    // The same tamper as virtee/sev's `milan_report_invalid`.
    let mut report = snp_report_milan();
    report[21] ^= 0x80;
    let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::SnpReport)), "{err}");
    assert_eq!(err.to_string(), "invalid signature over the sev-snp report (vcek signature)");
}

#[test]
fn flipped_measurement_byte_breaks_the_report_signature() {
    let mut report = snp_report_milan();
    report[0x90] ^= 0x01;
    let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::SnpReport)), "{err}");
}

#[test]
fn non_zero_reserved_byte_is_refused_rather_than_ignored() {
    // 0x4C..0x50 is reserved; the parser drops it, so it must not pass unnoticed.
    let mut report = snp_report_milan();
    report[0x4D] = 0x5A;
    let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Malformed { what: "sev-snp report", .. }), "{err}");
}

#[test]
fn tampered_vcek_fails_its_chain_signature() {
    // virtee/sev's `milan_chain_invalid` flips byte 40, inside the TBS certificate.
    let mut vcek = data("vcek_milan.der");
    vcek[40] ^= 0xff;
    let err = milan_with(snp_report_milan(), vcek, data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    let AttestationError::Certificate { certificate, problem: CertificateProblem::BadSignature { issuer } } = &err
    else {
        panic!("expected a certificate signature error, got {err}");
    };
    assert_eq!(certificate, "vcek (CN=SEV-VCEK)");
    assert_eq!(issuer, "ask (CN=SEV-Milan)");
}

#[test]
fn turin_vcek_with_milan_report_and_chain_is_refused() {
    let err =
        milan_with(snp_report_milan(), data("vcek_turin.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert!(err.to_string().starts_with("vcek productName vs ask product line mismatch"), "{err}");
}

#[test]
fn turin_vcek_and_chain_with_milan_report_is_refused() {
    // The Turin chain itself is valid (CRLF PEM), so the failure is the chip id.
    let err =
        milan_with(snp_report_milan(), data("vcek_turin.der"), data("cert_chain_turin")).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Mismatch { field: "vcek hwID vs report chip_id", .. }), "{err}");
}

#[test]
fn milan_vcek_with_turin_chain_fails_the_chain() {
    let err =
        milan_with(snp_report_milan(), data("vcek_milan.der"), data("cert_chain_turin")).verify(JULY_2025).unwrap_err();
    assert!(err.to_string().contains("Milan-B0"), "{err}");
}

#[test]
fn after_the_vcek_expires_the_certificate_window_is_named() {
    // VCEK valid 2023-04-03T19:23:43Z to 2030-04-03T19:23:43Z.
    let err = snp_milan().verify(1_901_474_624).unwrap_err();
    let AttestationError::OutsideValidity { item, not_before, not_after, .. } = &err else {
        panic!("expected a validity error, got {err}");
    };
    assert_eq!(item, "certificate vcek (CN=SEV-VCEK)");
    assert_eq!((not_before.0, not_after.0), (1_680_549_823, 1_901_474_623));
    snp_milan().verify(1_901_474_623).unwrap();
}

#[test]
fn before_the_vcek_was_issued_is_refused() {
    let err = snp_milan().verify(1_680_549_822).unwrap_err();
    assert!(err.to_string().starts_with("certificate vcek"), "{err}");
}

#[test]
fn an_ark_that_is_not_pinned_is_refused() {
    let roots = TrustRoots {
        amd_arks: vec![std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/roots/amd_ark_turin.pem")).unwrap()],
        ..TrustRoots::pinned()
    };
    let err = snp_milan().verify_with_roots(JULY_2025, &roots).unwrap_err();
    assert!(matches!(err, AttestationError::UntrustedRoot { kind: EvidenceKind::SevSnp, .. }), "{err}");
    assert!(err.to_string().contains("ARK-Milan"), "{err}");
}

#[test]
fn chain_in_the_wrong_order_is_refused() {
    let pem = String::from_utf8(data("cert_chain_milan")).unwrap();
    let split = pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    let swapped = format!("{}{}", &pem[split..], &pem[..split]);
    let err =
        milan_with(snp_report_milan(), data("vcek_milan.der"), swapped.into_bytes()).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn short_report_is_malformed() {
    let report = snp_report_milan()[..1000].to_vec();
    let err = milan_with(report, data("vcek_milan.der"), data("cert_chain_milan")).verify(JULY_2025).unwrap_err();
    assert!(matches!(err, AttestationError::Malformed { .. }), "{err}");
}
