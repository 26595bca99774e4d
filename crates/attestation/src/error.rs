//! The one error type of this crate and the nested causes it groups.
//!
//! Every failure names what failed: which signature, which certificate, which time
//! window (with the verification time and both ends of the window), which field. A
//! verification never turns a failure into a weaker [`SecuritySummary`]: revoked or
//! broken evidence is always an `Err`.
//!
//! [`SecuritySummary`]: crate::SecuritySummary

use std::fmt;

use crate::{EncodingError, EvidenceKind};

/// Why evidence could not be decoded or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The [`HardwareEvidence`](crate::HardwareEvidence) binary encoding is malformed.
    #[error("evidence encoding: {0}")]
    Encoding(#[from] EncodingError),

    /// A structure inside the evidence could not be parsed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The structure, e.g. "sev-snp report", "nitro cose_sign1".
        what: &'static str,
        /// What the parser said.
        reason: String,
    },

    /// A signature over the evidence or its collateral does not verify.
    #[error("invalid signature over the {0}")]
    Signature(SignedItem),

    /// A certificate in a chain is unacceptable.
    #[error("certificate {certificate}: {problem}")]
    Certificate {
        /// Which certificate: its role and subject common name, e.g. "vcek (CN=SEV-VCEK)".
        certificate: String,
        /// What is wrong with it.
        problem: CertificateProblem,
    },

    /// The verification time lies outside the validity window of a certificate,
    /// a CRL or a collateral document.
    #[error("{item} is not valid at {now}: valid from {not_before} to {not_after}")]
    OutsideValidity {
        /// What has the window, e.g. "tcb info", "pck crl", "certificate vcek (CN=SEV-VCEK)".
        item: String,
        /// The verification time.
        now: Timestamp,
        /// Start of the window.
        not_before: Timestamp,
        /// End of the window.
        not_after: Timestamp,
    },

    /// The chain does not end in the pinned vendor root.
    #[error("untrusted root for {kind} evidence: {detail}")]
    UntrustedRoot {
        /// The evidence kind whose root did not match.
        kind: EvidenceKind,
        /// What did not match.
        detail: String,
    },

    /// Two values that must agree do not.
    #[error("{field} mismatch: expected {expected}, found {found}")]
    Mismatch {
        /// The field, e.g. "vcek hwID vs report chip_id".
        field: &'static str,
        /// What was required.
        expected: String,
        /// What the evidence holds.
        found: String,
    },

    /// The vendor's TCB evaluation says the platform is revoked.
    #[error("tcb status is revoked: {detail}")]
    Revoked {
        /// The vendor's words.
        detail: String,
    },

    /// The evidence is well formed but uses something this crate does not support.
    #[error("unsupported {what}")]
    Unsupported {
        /// What is unsupported.
        what: String,
    },

    /// A failure reported by the vendor verification library that this crate does not
    /// classify more precisely; the message is the library's own chain of causes.
    #[error("{kind} verification failed: {message}")]
    Vendor {
        /// The evidence kind.
        kind: EvidenceKind,
        /// The library's message.
        message: String,
    },
}

/// A signed object whose signature failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedItem {
    /// The SGX ISV enclave report (quote header and body) signed by the attestation key.
    SgxQuoteBody,
    /// The TDX TD report (quote header and body) signed by the attestation key.
    TdxQuoteBody,
    /// The quoting enclave's report, signed by the PCK certificate.
    QeReport,
    /// The TCB info JSON of the collateral, signed by the TCB signing certificate.
    TcbInfo,
    /// The QE identity JSON of the collateral, signed by the TCB signing certificate.
    QeIdentity,
    /// A CRL of the collateral.
    Crl,
    /// The SEV-SNP attestation report, signed by the VCEK.
    SnpReport,
    /// The Nitro attestation document (COSE_Sign1 payload), signed by the leaf certificate.
    NitroDocument,
}

impl fmt::Display for SignedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignedItem::SgxQuoteBody => "sgx quote body (isv enclave report)",
            SignedItem::TdxQuoteBody => "tdx quote body (td report)",
            SignedItem::QeReport => "quoting enclave report (pck signature)",
            SignedItem::TcbInfo => "tcb info collateral",
            SignedItem::QeIdentity => "qe identity collateral",
            SignedItem::Crl => "collateral crl",
            SignedItem::SnpReport => "sev-snp report (vcek signature)",
            SignedItem::NitroDocument => "nitro attestation document (cose_sign1 es384)",
        })
    }
}

/// What is wrong with one certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// The certificate is not valid DER/PEM X.509.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Its signature does not verify under the issuer's key.
    #[error("signature does not verify under the key of {issuer}")]
    BadSignature {
        /// The issuer whose key was used.
        issuer: String,
    },
    /// Its issuer name is not the subject of the next certificate up.
    #[error("issuer name does not match the subject of {issuer}")]
    IssuerMismatch {
        /// The expected issuer.
        issuer: String,
    },
    /// An issuing certificate is not marked as a CA.
    #[error("is not a ca certificate but issues another certificate")]
    NotCa,
    /// It uses an algorithm this verifier does not accept.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The chain has the wrong shape (missing or extra certificates).
    #[error("{0}")]
    Chain(String),
}

/// A unix time in seconds that displays as RFC 3339 followed by the raw number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = i64::try_from(self.0)
            .ok()
            .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
        match formatted {
            Some(text) => write!(f, "{text} ({})", self.0),
            None => write!(f, "unix {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_message_names_both_ends_of_the_window() {
        let err = AttestationError::OutsideValidity {
            item: "tcb info".into(),
            now: Timestamp(1_754_006_400),
            not_before: Timestamp(1_750_330_571),
            not_after: Timestamp(1_752_922_571),
        };
        assert_eq!(
            err.to_string(),
            "tcb info is not valid at 2025-08-01T00:00:00Z (1754006400): valid from \
             2025-06-19T10:56:11Z (1750330571) to 2025-07-19T10:56:11Z (1752922571)"
        );
    }
}
