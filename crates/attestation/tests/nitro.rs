//! AWS Nitro Enclaves attestation document from blocky/nitrite.

mod common;

use common::{NITRO_TIME, find, nitro, nitro_document};
use conclave_attestation::{
    AttestationError, EvidenceKind, HardwareEvidence, SecuritySummary, SignedItem, TeeDetails, TrustRoots,
};

const PCR0: &str = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a";

#[test]
fn document_verifies_at_its_own_time() {
    let document = nitro_document();
    assert_eq!(document.len(), 7539);
    // Untagged COSE_Sign1: a bare 4-element array (0x84), no tag 18 (0xD2).
    assert_eq!(document[0], 0x84);
    let v = nitro().verify(NITRO_TIME).unwrap();
    assert_eq!(v.kind, EvidenceKind::Nitro);
    assert_eq!(hex::encode(&v.measurement), PCR0);
    assert!(!v.debug);
    assert_eq!(v.signer, None, "PCR8 is all zero");
    assert_eq!(v.report_data, vec![0x01; 1024], "user_data");
    // The document's own signed creation time, not the verification time.
    assert_eq!(v.timestamp_unix, Some(1_725_719_859));
    assert_eq!(v.security, SecuritySummary::Secure);
    assert!(v.security_reason.contains("nitro has no tcb version to check"), "{}", v.security_reason);
    assert!(v.security_reason.contains("not checked: pcr3"), "{}", v.security_reason);
}

#[test]
fn document_exposes_pcrs_0_to_2_and_8() {
    let v = nitro().verify(NITRO_TIME).unwrap();
    let TeeDetails::Nitro(d) = &v.details else { panic!("nitro details expected, got {:?}", v.details) };
    assert_eq!(hex::encode(d.pcr0), PCR0);
    assert_eq!(
        hex::encode(d.pcr1),
        "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa"
    );
    assert_eq!(
        hex::encode(d.pcr2),
        "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c"
    );
    assert_eq!(d.pcr8, Some([0; 48]));
    let json = v.details.to_json();
    assert_eq!(v.details.json_key(), "nitro");
    assert_eq!(json["pcr0"], PCR0);
    assert_eq!(json["pcr8"], "00".repeat(48));
}

#[test]
fn flipped_pcr0_byte_breaks_the_cose_signature() {
    let mut document = nitro_document();
    let at = find(&document, &hex::decode(PCR0).unwrap());
    document[at + 5] ^= 0x01;
    let err = HardwareEvidence::Nitro { document }.verify(NITRO_TIME).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::NitroDocument)), "{err}");
}

#[test]
fn flipped_signature_byte_fails_too() {
    let mut document = nitro_document();
    let last = document.len() - 1;
    document[last] ^= 0x01;
    let err = HardwareEvidence::Nitro { document }.verify(NITRO_TIME).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(SignedItem::NitroDocument)), "{err}");
}

#[test]
fn after_the_leaf_expires_the_window_is_named() {
    // The leaf is valid 2024-09-07T14:37:36Z to 17:37:39Z.
    nitro().verify(1_725_730_659).unwrap();
    let err = nitro().verify(1_725_730_660).unwrap_err();
    let AttestationError::OutsideValidity { item, not_before, not_after, .. } = &err else {
        panic!("expected a validity error, got {err}");
    };
    assert!(item.starts_with("certificate leaf (CN=i-0a22e5c5f24d22174-enc"), "{item}");
    assert_eq!((not_before.0, not_after.0), (1_725_719_856, 1_725_730_659));
    assert!(err.to_string().contains("2024-09-07T17:37:39Z"), "{err}");
}

#[test]
fn the_wall_clock_today_is_far_past_the_chain() {
    // 2025-07-01: the zonal and instance certificates expired in September 2024.
    let err = nitro().verify(1_751_328_000).unwrap_err();
    assert!(matches!(err, AttestationError::OutsideValidity { .. }), "{err}");
}

#[test]
fn another_root_is_refused() {
    let roots = TrustRoots {
        aws_nitro_root: std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/roots/intel_sgx_root_ca.der")).unwrap(),
        ..TrustRoots::pinned()
    };
    let err = nitro().verify_with_roots(NITRO_TIME, &roots).unwrap_err();
    assert!(matches!(err, AttestationError::UntrustedRoot { kind: EvidenceKind::Nitro, .. }), "{err}");
}

#[test]
fn truncated_or_tagged_documents_are_malformed() {
    let document = nitro_document();
    let err = HardwareEvidence::Nitro { document: document[..3000].to_vec() }.verify(NITRO_TIME).unwrap_err();
    assert!(matches!(err, AttestationError::Malformed { what: "nitro cose_sign1", .. }), "{err}");
    // The Nitro hypervisor emits the untagged form; a tag-18 wrapper is not accepted.
    let mut tagged = vec![0xD2];
    tagged.extend_from_slice(&document);
    let err = HardwareEvidence::Nitro { document: tagged }.verify(NITRO_TIME).unwrap_err();
    assert!(matches!(err, AttestationError::Malformed { .. }), "{err}");
}

#[test]
fn flipped_byte_in_an_intermediate_certificate_fails_the_chain() {
    // The zonal certificate's subject names it; flip a byte of its common name so
    // the DER still parses but its issuer's signature no longer matches.
    let mut document = nitro_document();
    let at = find(&document, b"68a8a693dd2153f6.zonal");
    document[at] ^= 0x01;
    let err = HardwareEvidence::Nitro { document }.verify(NITRO_TIME).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "certificate cabundle[2] (CN=78a8a693dd2153f6.zonal.us-east-1.aws.nitro-enclaves): \
             signature does not verify under the key of cabundle[1]"
        ),
        "{err}"
    );
}
