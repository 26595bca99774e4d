//! Small helpers over `x509-cert`: loading certificates, naming them in errors and
//! checking validity windows at the caller's time.
//!
//! The parsing itself is `x509-cert`'s; this module only decides how to report.

use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use crate::error::{AttestationError, CertificateProblem, Timestamp};

/// Parses one certificate given as PEM or DER.
pub(crate) fn parse_one(bytes: &[u8], role: &str) -> Result<Certificate, AttestationError> {
    let parsed = if looks_like_pem(bytes) {
        use der::DecodePem;
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    };
    parsed.map_err(|e| AttestationError::Certificate {
        certificate: role.to_owned(),
        problem: CertificateProblem::Malformed(e.to_string()),
    })
}

/// Parses a PEM bundle (LF or CRLF line endings) into its certificates, in order.
pub(crate) fn parse_pem_chain(bytes: &[u8], what: &str) -> Result<Vec<Certificate>, AttestationError> {
    // `pem-rfc7468` under `x509-cert` is strict about line endings; CRLF bundles are
    // common (AMD's Turin chain uses them), so normalise before parsing. Intel's quote
    // generator also NUL-terminates the chain it embeds in the quote.
    let mut normalised: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\r').collect();
    while normalised.last().is_some_and(|&b| b == 0 || b.is_ascii_whitespace()) {
        normalised.pop();
    }
    normalised.push(b'\n');
    Certificate::load_pem_chain(&normalised).map_err(|e| AttestationError::Certificate {
        certificate: what.to_owned(),
        problem: CertificateProblem::Malformed(e.to_string()),
    })
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii_start();
    trimmed.starts_with(b"-----BEGIN")
}

/// The DER encoding of a certificate (for byte comparison with a pinned root).
pub(crate) fn to_der(cert: &Certificate) -> Vec<u8> {
    // Re-encoding a certificate we just decoded cannot fail short of a bug in der.
    cert.to_der().unwrap_or_default()
}

/// `role (CN=...)`, the way certificates are named in errors.
pub(crate) fn describe(cert: &Certificate, role: &str) -> String {
    match common_name(cert) {
        Some(cn) => format!("{role} (CN={cn})"),
        None => role.to_owned(),
    }
}

fn common_name(cert: &Certificate) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate.subject.0.iter().flat_map(|rdn| rdn.0.iter()).find(|atv| atv.oid == CN).and_then(|atv| {
        // Common names are PrintableString or UTF8String in every chain we see.
        atv.value
            .decode_as::<der::asn1::Utf8StringRef<'_>>()
            .map(|s| s.as_str().to_owned())
            .or_else(|_| atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>().map(|s| s.as_str().to_owned()))
            .ok()
    })
}

/// The validity window `[not_before, not_after]` in unix seconds.
pub(crate) fn window(cert: &Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    (v.not_before.to_unix_duration().as_secs(), v.not_after.to_unix_duration().as_secs())
}

/// Fails with [`AttestationError::OutsideValidity`] unless `now` is inside the window.
pub(crate) fn check_window(
    item: impl FnOnce() -> String,
    now: u64,
    not_before: u64,
    not_after: u64,
) -> Result<(), AttestationError> {
    if now < not_before || now > not_after {
        return Err(AttestationError::OutsideValidity {
            item: item(),
            now: Timestamp(now),
            not_before: Timestamp(not_before),
            not_after: Timestamp(not_after),
        });
    }
    Ok(())
}

/// Checks that `cert` is valid at `now`.
pub(crate) fn check_validity(cert: &Certificate, role: &str, now: u64) -> Result<(), AttestationError> {
    let (not_before, not_after) = window(cert);
    check_window(|| format!("certificate {}", describe(cert, role)), now, not_before, not_after)
}

/// Whether the certificate carries basicConstraints with cA = true.
pub(crate) fn is_ca(cert: &Certificate) -> bool {
    matches!(
        cert.tbs_certificate.get::<BasicConstraints>(),
        Ok(Some((_, bc))) if bc.ca
    )
}
