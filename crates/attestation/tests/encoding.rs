//! The binary encoding carries real evidence unchanged.

mod common;

use conclave_attestation::{AttestationError, EncodingError, HardwareEvidence};

#[test]
fn real_evidence_of_every_kind_round_trips_and_still_verifies() {
    for (evidence, now) in [
        (common::sgx(), common::JULY_2025),
        (common::tdx(), common::JULY_2025),
        (common::snp_milan(), common::JULY_2025),
        (common::nitro(), common::NITRO_TIME),
    ] {
        let bytes = evidence.encode();
        let decoded = HardwareEvidence::decode(&bytes).unwrap();
        assert_eq!(decoded, evidence);
        assert_eq!(decoded.verify(now).unwrap(), evidence.verify(now).unwrap(), "{}", evidence.kind());
    }
}

#[test]
fn a_truncated_encoding_says_which_field_is_short() {
    let bytes = common::snp_milan().encode();
    let err = HardwareEvidence::decode(&bytes[..bytes.len() - 10]).unwrap_err();
    assert!(
        matches!(err, AttestationError::Encoding(EncodingError::Truncated { what: "sev-snp chain", needed: 10, .. })),
        "{err}"
    );
    assert!(err.to_string().contains("sev-snp chain"));
}
