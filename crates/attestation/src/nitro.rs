//! AWS Nitro Enclaves attestation documents.
//!
//! The document is an untagged COSE_Sign1 (a bare 4-element CBOR array) whose payload
//! is a CBOR map; `coset` parses the envelope and builds the Sig_structure, `ciborium`
//! the payload, `p384` checks the ES384 signatures and `x509-cert` parses the chain.
//! The chain check follows AWS's "Verifying the root of trust" steps: `cabundle[0]`
//! must be the pinned AWS Nitro Enclaves Root-G1, each next certificate (and finally
//! the leaf `certificate`) must be issued by the one before it with ECDSA P-384 /
//! SHA-384, every issuer must be a CA, and every certificate must be valid at the
//! verification time.
//!
//! A debug-mode enclave (PCR0, PCR1 and PCR2 all zero, as the hypervisor reports
//! them in debug mode) is INSECURE. Otherwise a valid document is SECURE: Nitro has
//! no TCB version a verifier could find out of date (the hypervisor is AWS's and is
//! patched by AWS, the document names no version of it), so there is nothing a
//! STALE could point at or an operator could fix. The reason says what was and was
//! not checked; `docs/attestation.md` explains the choice.

use ciborium::Value;
use coset::{CborSerializable, CoseSign1, iana};
use der::Encode;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use x509_cert::Certificate;

use crate::error::{AttestationError, CertificateProblem, SignedItem};
use crate::snp::SNP_TCB_STATUS as NO_VENDOR_TCB_STATUS;
use crate::x509;
use crate::{EvidenceKind, NitroDetails, SecuritySummary, TeeDetails, TrustRoots, VerifiedEvidence};

const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";

/// The fields of the payload this verifier uses.
struct Payload {
    timestamp_ms: u64,
    pcrs: Vec<(u64, Vec<u8>)>,
    certificate: Vec<u8>,
    cabundle: Vec<Vec<u8>>,
    user_data: Option<Vec<u8>>,
}

pub(crate) fn verify(document: &[u8], now: u64, roots: &TrustRoots) -> Result<VerifiedEvidence, AttestationError> {
    // `from_slice` reads the untagged form; a tagged (18) document is not what the
    // Nitro hypervisor produces.
    let sign1 = CoseSign1::from_slice(document)
        .map_err(|e| AttestationError::Malformed { what: "nitro cose_sign1", reason: e.to_string() })?;
    let alg = sign1.protected.header.alg.clone();
    if alg != Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)) {
        return Err(AttestationError::Unsupported { what: format!("nitro cose algorithm {alg:?} (expected ES384)") });
    }
    let payload_bytes = sign1
        .payload
        .as_deref()
        .ok_or_else(|| AttestationError::Malformed { what: "nitro cose_sign1", reason: "detached payload".into() })?;
    let payload = parse_payload(payload_bytes)?;

    let chain = verify_chain(&payload, now, roots)?;
    let leaf = chain.last().ok_or_else(|| AttestationError::Certificate {
        certificate: "nitro chain".into(),
        problem: CertificateProblem::Chain("empty".into()),
    })?;
    let leaf_key = verifying_key(leaf, "nitro leaf")?;
    sign1
        .verify_signature(b"", |sig, data| {
            let sig = Signature::from_slice(sig).map_err(|_| ())?;
            leaf_key.verify(data, &sig).map_err(|_| ())
        })
        .map_err(|()| AttestationError::Signature(SignedItem::NitroDocument))?;

    let pcr = |index: u64| -> Result<[u8; 48], AttestationError> {
        let value = payload.pcrs.iter().find(|(i, _)| *i == index).map(|(_, v)| v.as_slice());
        let value = value.ok_or_else(|| malformed(format!("pcrs has no PCR{index}")))?;
        // `parse_payload` checked that every PCR is 48 bytes.
        value.try_into().map_err(|_| malformed(format!("pcr{index} is not 48 bytes")))
    };
    let details = NitroDetails { pcr0: pcr(0)?, pcr1: pcr(1)?, pcr2: pcr(2)?, pcr8: pcr(8).ok() };
    let debug = debug_mode(&details);
    let signer = details.pcr8.filter(|v| v.iter().any(|&b| b != 0)).map(|v| v.to_vec());
    let (security, security_reason) = summarise(debug);
    Ok(VerifiedEvidence {
        kind: EvidenceKind::Nitro,
        measurement: details.pcr0.to_vec(),
        signer,
        product_id: None,
        revocation_level: None,
        report_data: payload.user_data.unwrap_or_default(),
        debug,
        tcb_status: NO_VENDOR_TCB_STATUS.to_owned(),
        advisory_ids: Vec::new(),
        security,
        security_reason,
        // The document's own signed creation time, so EXPIRE can measure its age.
        timestamp_unix: Some(payload.timestamp_ms / 1000),
        details: TeeDetails::Nitro(details),
    })
}

/// The hypervisor reports PCR0, PCR1 and PCR2 as all zero for an enclave started in
/// debug mode. A measured enclave never has an all-zero hash in any of them, so one
/// zero register is enough to treat the enclave as debug: failing safe costs nothing.
fn debug_mode(d: &NitroDetails) -> bool {
    [d.pcr0, d.pcr1, d.pcr2].iter().any(|pcr| pcr.iter().all(|&b| b == 0))
}

fn summarise(debug: bool) -> (SecuritySummary, String) {
    if debug {
        return (
            SecuritySummary::Insecure,
            "enclave runs in debug mode (PCR0, PCR1 and PCR2 are all zero): its console and memory are \
             visible to the parent instance"
                .to_owned(),
        );
    }
    (
        SecuritySummary::Secure,
        "cose_sign1 es384 signature and certificate chain to the pinned aws nitro enclaves root-g1 are \
         valid, and PCR0-2 show a non-debug enclave; nitro has no tcb version to check (aws patches the \
         hypervisor and the document names no version of it); not checked: pcr3 (parent instance role), \
         pcr4 (parent instance id), nonce, public_key, and revocation (nitro certificates have none)"
            .to_owned(),
    )
}

fn malformed(reason: impl Into<String>) -> AttestationError {
    AttestationError::Malformed { what: "nitro payload", reason: reason.into() }
}

fn parse_payload(bytes: &[u8]) -> Result<Payload, AttestationError> {
    let value: Value = ciborium::de::from_reader(bytes).map_err(|e| malformed(e.to_string()))?;
    let Value::Map(entries) = value else {
        return Err(malformed("not a cbor map"));
    };
    let get = |key: &str| entries.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v);
    let bytes_field = |key: &'static str| -> Result<Vec<u8>, AttestationError> {
        match get(key) {
            Some(Value::Bytes(b)) => Ok(b.clone()),
            Some(_) => Err(malformed(format!("{key} is not a byte string"))),
            None => Err(malformed(format!("{key} is missing"))),
        }
    };
    let optional_bytes = |key: &'static str| -> Result<Option<Vec<u8>>, AttestationError> {
        match get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b.clone())),
            Some(_) => Err(malformed(format!("{key} is not a byte string or null"))),
        }
    };

    match get("module_id") {
        Some(Value::Text(id)) if !id.is_empty() => {}
        _ => return Err(malformed("module_id is missing or empty")),
    }
    match get("digest") {
        Some(Value::Text(d)) if d == "SHA384" => {}
        other => {
            return Err(AttestationError::Unsupported {
                what: format!("nitro pcr digest {other:?} (expected \"SHA384\")"),
            });
        }
    }
    let timestamp_ms = get("timestamp")
        .and_then(Value::as_integer)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| malformed("timestamp is missing or not an unsigned integer"))?;
    let Some(Value::Map(pcr_entries)) = get("pcrs") else {
        return Err(malformed("pcrs is missing or not a map"));
    };
    let mut pcrs = Vec::with_capacity(pcr_entries.len());
    for (k, v) in pcr_entries {
        let index = k
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| malformed("pcr index is not an unsigned integer"))?;
        let Value::Bytes(value) = v else {
            return Err(malformed(format!("pcr{index} is not a byte string")));
        };
        if value.len() != 48 {
            return Err(malformed(format!("pcr{index} has {} bytes, expected 48 for SHA384", value.len())));
        }
        pcrs.push((index, value.clone()));
    }
    let certificate = bytes_field("certificate")?;
    let cabundle = match get("cabundle") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Bytes(b) => Ok(b.clone()),
                _ => Err(malformed("cabundle entry is not a byte string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(malformed("cabundle is missing or not an array")),
    };
    Ok(Payload { timestamp_ms, pcrs, certificate, cabundle, user_data: optional_bytes("user_data")? })
}

/// Verifies `cabundle` (root first) and the leaf; returns the chain, root first.
fn verify_chain(payload: &Payload, now: u64, roots: &TrustRoots) -> Result<Vec<Certificate>, AttestationError> {
    let pinned = x509::parse_one(&roots.aws_nitro_root, "pinned aws nitro root")?;
    let Some(first) = payload.cabundle.first() else {
        return Err(AttestationError::Certificate {
            certificate: "nitro cabundle".into(),
            problem: CertificateProblem::Chain("cabundle is empty".into()),
        });
    };
    if x509::to_der(&pinned) != first.as_slice() {
        return Err(AttestationError::UntrustedRoot {
            kind: EvidenceKind::Nitro,
            detail: "cabundle[0] is not the pinned aws nitro enclaves root-g1".into(),
        });
    }

    let mut chain = Vec::with_capacity(payload.cabundle.len() + 1);
    for (i, der) in payload.cabundle.iter().enumerate() {
        chain.push((x509::parse_one(der, "nitro cabundle")?, format!("cabundle[{i}]")));
    }
    chain.push((x509::parse_one(&payload.certificate, "nitro leaf")?, "leaf".to_owned()));

    for (cert, role) in &chain {
        x509::check_validity(cert, role, now)?;
    }
    for pair in chain.windows(2) {
        let [(issuer, issuer_role), (subject, subject_role)] = pair else {
            continue;
        };
        check_issued_by(subject, subject_role, issuer, issuer_role)?;
    }
    Ok(chain.into_iter().map(|(cert, _)| cert).collect())
}

fn check_issued_by(
    subject: &Certificate,
    subject_role: &str,
    issuer: &Certificate,
    issuer_role: &str,
) -> Result<(), AttestationError> {
    let fail = |problem| AttestationError::Certificate { certificate: x509::describe(subject, subject_role), problem };
    let issuer_name = x509::describe(issuer, issuer_role);
    if !x509::is_ca(issuer) {
        return Err(AttestationError::Certificate { certificate: issuer_name, problem: CertificateProblem::NotCa });
    }
    if subject.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(fail(CertificateProblem::IssuerMismatch { issuer: issuer_name }));
    }
    let alg = subject.signature_algorithm.oid.to_string();
    if alg != ECDSA_WITH_SHA384 {
        return Err(fail(CertificateProblem::UnsupportedAlgorithm(alg)));
    }
    let key = verifying_key(issuer, issuer_role)?;
    let tbs = subject.tbs_certificate.to_der().map_err(|e| fail(CertificateProblem::Malformed(e.to_string())))?;
    let signature = subject
        .signature
        .as_bytes()
        .and_then(|der| Signature::from_der(der).ok())
        .ok_or_else(|| fail(CertificateProblem::Malformed("bad ecdsa signature".into())))?;
    key.verify(&tbs, &signature).map_err(|_| fail(CertificateProblem::BadSignature { issuer: issuer_name }))
}

fn verifying_key(cert: &Certificate, role: &str) -> Result<VerifyingKey, AttestationError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()).map_err(|_| AttestationError::Certificate {
        certificate: x509::describe(cert, role),
        problem: CertificateProblem::UnsupportedAlgorithm("public key is not ecdsa p-384".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pcrs_mean_debug_mode() {
        let measured = NitroDetails { pcr0: [1; 48], pcr1: [2; 48], pcr2: [3; 48], pcr8: None };
        assert!(!debug_mode(&measured));
        assert!(debug_mode(&NitroDetails { pcr0: [0; 48], pcr1: [0; 48], pcr2: [0; 48], ..measured }));
        for i in 0..3 {
            let mut one = measured.clone();
            [&mut one.pcr0, &mut one.pcr1, &mut one.pcr2][i].fill(0);
            assert!(debug_mode(&one), "pcr{i} zero");
        }
    }

    #[test]
    fn debug_mode_is_insecure_and_a_normal_enclave_says_what_was_not_checked() {
        let (summary, reason) = summarise(true);
        assert_eq!(summary, SecuritySummary::Insecure);
        assert!(reason.contains("debug mode (PCR0, PCR1 and PCR2 are all zero)"), "{reason}");
        let (summary, reason) = summarise(false);
        assert_eq!(summary, SecuritySummary::Secure);
        assert!(reason.contains("no tcb version"), "{reason}");
        assert!(reason.contains("not checked"), "{reason}");
    }
}
