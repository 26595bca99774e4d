//! Verification of real TEE attestation evidence: Intel SGX DCAP quotes, Intel TDX
//! quotes, AMD SEV-SNP reports and AWS Nitro Enclaves attestation documents.
//!
//! The crate owns no IO. It takes the evidence bytes, the vendor collateral or
//! certificates that come with them, and an explicit verification time in unix
//! seconds; it never reads a file, opens a socket or looks at the system clock. The
//! vendors' trust roots are pinned inside the crate ([`TrustRoots::pinned`]).
//!
//! ```text
//!   enclave / TEE                 host, client or CLI                 this crate
//!  ┌─────────────┐  quote+collat. ┌──────────────────┐  bytes + now   ┌───────────────────┐
//!  │ SGX / TDX   │───────────────>│ HardwareEvidence │───────────────>│ verify(now)       │
//!  │ SEV-SNP VM  │ report+VCEK+.. │  ::encode/decode │                │  dcap-qvl │ sev │ │
//!  │ Nitro encl. │ COSE document  └──────────────────┘                │  coset+p384+x509  │
//!  └─────────────┘                                                    └─────────┬─────────┘
//!                                                                               v
//!                     VerifiedEvidence { measurement, signer, report_data, security, .. }
//!                     or AttestationError naming the signature / certificate / window
//! ```
//!
//! The vendor's TCB status maps to a [`SecuritySummary`]: `UpToDate` is
//! [`SECURE`](SecuritySummary::Secure), the "needs configuration / software
//! hardening / out of date" family is [`STALE`](SecuritySummary::Stale), a debug
//! enclave is [`INSECURE`](SecuritySummary::Insecure), and anything revoked or broken
//! is an error. SEV-SNP is at best STALE (its TCB's currency needs AMD KDS data this
//! crate does not have) and INSECURE when its policy allows debugging or a migration
//! agent or its report is not from VMPL 0. Every TEE register is in
//! [`VerifiedEvidence::details`]; for TDX the code hash is a composite of all eight
//! identity registers ([`TdxDetails::composite_measurement`]). `docs/attestation.md` in the repository describes the mapping for each
//! TEE, the binary encoding and what is and is not checked.
//!
//! # Getting started
//!
//! ```
//! use conclave_attestation::{EvidenceKind, HardwareEvidence, SecuritySummary};
//!
//! // A real SGX DCAP quote and its Intel collateral, recorded in June 2025.
//! let quote = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sgx_quote"));
//! let collateral = include_bytes!(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/tests/data/sgx_quote_collateral.json"
//! ));
//! let evidence = HardwareEvidence::SgxDcap {
//!     quote: quote.to_vec(),
//!     collateral: collateral.to_vec(),
//! };
//!
//! // The evidence travels in its compact binary encoding ...
//! let bytes = evidence.encode();
//! let received = HardwareEvidence::decode(&bytes)?;
//! assert_eq!(received.kind(), EvidenceKind::SgxDcap);
//!
//! // ... and is verified at an explicit time inside the collateral's window.
//! let verified = received.verify(1_751_328_000)?; // 2025-07-01T00:00:00Z
//! assert_eq!(verified.tcb_status, "ConfigurationAndSWHardeningNeeded");
//! assert_eq!(verified.security, SecuritySummary::Stale);
//! assert_eq!(&verified.report_data[..13], b"Hello, world!");
//!
//! // A month later the collateral has expired, and verification says so.
//! let err = received.verify(1_754_006_400).unwrap_err();
//! assert!(err.to_string().contains("is not valid at 2025-08-01T00:00:00Z"));
//! # Ok::<(), conclave_attestation::AttestationError>(())
//! ```

#![deny(missing_docs)]

mod dcap;
mod details;
mod encoding;
mod error;
pub mod formats;
mod nitro;
mod roots;
mod snp;
mod x509;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use details::{NitroDetails, SgxDetails, SnpDetails, SnpTcb, TdxDetails, TeeDetails};
pub use encoding::{ENCODING_VERSION, EncodingError};
pub use error::{AttestationError, CertificateProblem, SignedItem, Timestamp};
pub use roots::TrustRoots;

// `ParseNameError` is defined below and public: the CLI names it in its clap parser.

/// How much a verified enclave can be trusted, from worst to best.
///
/// Ordered: `Insecure < Stale < Secure`, so a constraint's minimum is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SecuritySummary {
    /// No hardware protection can be relied on (debug enclave, mock, simulation).
    Insecure,
    /// Genuine hardware whose TCB needs an update or configuration change.
    Stale,
    /// Genuine hardware, up to date as far as the vendor's collateral says.
    Secure,
}

impl SecuritySummary {
    /// The uppercase name used in constraints, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SecuritySummary::Insecure => "INSECURE",
            SecuritySummary::Stale => "STALE",
            SecuritySummary::Secure => "SECURE",
        }
    }
}

impl fmt::Display for SecuritySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`SecuritySummary`] or an [`EvidenceKind`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {found:?}: expected one of {expected}")]
pub struct ParseNameError {
    what: &'static str,
    found: String,
    expected: &'static str,
}

impl FromStr for SecuritySummary {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "INSECURE" => Ok(SecuritySummary::Insecure),
            "STALE" => Ok(SecuritySummary::Stale),
            "SECURE" => Ok(SecuritySummary::Secure),
            _ => Err(ParseNameError {
                what: "security summary",
                found: s.to_owned(),
                expected: "INSECURE, STALE, SECURE",
            }),
        }
    }
}

/// The kinds of real hardware evidence this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// Intel SGX DCAP ECDSA quote (version 3).
    SgxDcap,
    /// Intel TDX ECDSA quote (version 4).
    Tdx,
    /// AMD SEV-SNP attestation report.
    SevSnp,
    /// AWS Nitro Enclaves attestation document.
    Nitro,
}

impl EvidenceKind {
    /// All kinds, in tag order.
    pub const ALL: [EvidenceKind; 4] =
        [EvidenceKind::SgxDcap, EvidenceKind::Tdx, EvidenceKind::SevSnp, EvidenceKind::Nitro];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::SgxDcap => "sgx-dcap",
            EvidenceKind::Tdx => "tdx",
            EvidenceKind::SevSnp => "sev-snp",
            EvidenceKind::Nitro => "nitro",
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EvidenceKind {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidenceKind::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| ParseNameError {
            what: "evidence kind",
            found: s.to_owned(),
            expected: "sgx-dcap, tdx, sev-snp, nitro",
        })
    }
}

/// Evidence produced by a TEE, with what a verifier needs beside it.
///
/// Every field is raw bytes as the vendor's tooling produces them; no field is
/// trusted until [`verify`](HardwareEvidence::verify) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HardwareEvidence {
    /// An Intel SGX DCAP quote.
    SgxDcap {
        /// The raw quote (version 3, ECDSA P-256, PCK chain embedded).
        quote: Vec<u8>,
        /// The Intel collateral as `QuoteCollateralV3` JSON bytes.
        collateral: Vec<u8>,
    },
    /// An Intel TDX quote.
    Tdx {
        /// The raw quote (version 4; trailing zero padding is tolerated).
        quote: Vec<u8>,
        /// The Intel collateral as `QuoteCollateralV3` JSON bytes.
        collateral: Vec<u8>,
    },
    /// An AMD SEV-SNP attestation report.
    SevSnp {
        /// The raw 1184-byte report.
        report: Vec<u8>,
        /// The VCEK certificate, DER.
        vcek: Vec<u8>,
        /// The ASK then the ARK, PEM.
        chain: Vec<u8>,
    },
    /// An AWS Nitro Enclaves attestation document.
    Nitro {
        /// The untagged COSE_Sign1 document, raw CBOR.
        document: Vec<u8>,
    },
}

impl HardwareEvidence {
    /// The kind of this evidence.
    pub fn kind(&self) -> EvidenceKind {
        match self {
            HardwareEvidence::SgxDcap { .. } => EvidenceKind::SgxDcap,
            HardwareEvidence::Tdx { .. } => EvidenceKind::Tdx,
            HardwareEvidence::SevSnp { .. } => EvidenceKind::SevSnp,
            HardwareEvidence::Nitro { .. } => EvidenceKind::Nitro,
        }
    }

    /// Verifies the evidence at `now_unix` (seconds) against the pinned vendor roots.
    pub fn verify(&self, now_unix: u64) -> Result<VerifiedEvidence, AttestationError> {
        self.verify_with_roots(now_unix, &TrustRoots::pinned())
    }

    /// Verifies the evidence at `now_unix` against the given roots instead of the
    /// pinned ones. Meant for tests and for deployments that pin roots themselves.
    pub fn verify_with_roots(&self, now_unix: u64, roots: &TrustRoots) -> Result<VerifiedEvidence, AttestationError> {
        match self {
            HardwareEvidence::SgxDcap { quote, collateral } => {
                dcap::verify(dcap::Tee::Sgx, quote, collateral, now_unix, roots)
            }
            HardwareEvidence::Tdx { quote, collateral } => {
                dcap::verify(dcap::Tee::Tdx, quote, collateral, now_unix, roots)
            }
            HardwareEvidence::SevSnp { report, vcek, chain } => snp::verify(report, vcek, chain, now_unix, roots),
            HardwareEvidence::Nitro { document } => nitro::verify(document, now_unix, roots),
        }
    }

    /// The versioned binary encoding (see `docs/attestation.md`).
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes the binary encoding produced by [`encode`](HardwareEvidence::encode).
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestationError> {
        Ok(encoding::decode(bytes)?)
    }
}

/// What verified evidence says about the enclave, in vendor-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedEvidence {
    /// Which kind of evidence this came from.
    pub kind: EvidenceKind,
    /// The code hash a `C:` token pins: SGX MRENCLAVE (32 bytes), for TDX the
    /// composite of all eight identity registers ([`TdxDetails::composite_measurement`],
    /// 48), SEV-SNP MEASUREMENT (48), Nitro PCR0 (48).
    #[serde(with = "hex_bytes")]
    pub measurement: Vec<u8>,
    /// Who signed the code: SGX MRSIGNER, SEV-SNP author key digest when one is
    /// present, Nitro PCR8 when it is not all zero.
    #[serde(with = "hex_option")]
    pub signer: Option<Vec<u8>>,
    /// SGX ISVPRODID.
    pub product_id: Option<u16>,
    /// SGX ISVSVN − 1, saturating at 0 (as R3 Conclave defined the revocation level).
    pub revocation_level: Option<u16>,
    /// The data the enclave bound into the evidence (SGX/TDX/SNP REPORTDATA, 64
    /// bytes; Nitro `user_data`, empty when absent).
    #[serde(with = "hex_bytes")]
    pub report_data: Vec<u8>,
    /// Whether the enclave runs in debug mode (its memory can be read by the host).
    pub debug: bool,
    /// The vendor's TCB status in the vendor's words, e.g. `UpToDate`.
    pub tcb_status: String,
    /// Security advisories the vendor lists for this TCB.
    pub advisory_ids: Vec<String>,
    /// The summary derived from the TCB status and the debug flag.
    pub security: SecuritySummary,
    /// Why the summary is what it is, including what was not checked.
    pub security_reason: String,
    /// When the evidence was made, in unix seconds, where the evidence says so:
    /// Nitro's signed document timestamp. `None` for SGX, TDX and SEV-SNP, whose
    /// evidence carries no creation time (their age cannot be known).
    pub timestamp_unix: Option<u64>,
    /// Every identity register of the TEE under its vendor's name.
    pub details: TeeDetails,
}

mod hex_bytes {
    pub(crate) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

mod hex_option {
    pub(crate) fn serialize<S: serde::Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_some(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_summary_orders_and_round_trips() {
        assert!(SecuritySummary::Insecure < SecuritySummary::Stale);
        assert!(SecuritySummary::Stale < SecuritySummary::Secure);
        for s in [SecuritySummary::Insecure, SecuritySummary::Stale, SecuritySummary::Secure] {
            assert_eq!(s.to_string().parse::<SecuritySummary>().unwrap(), s);
        }
        assert!("secure".parse::<SecuritySummary>().is_err());
    }

    #[test]
    fn evidence_kind_round_trips() {
        for kind in EvidenceKind::ALL {
            assert_eq!(kind.to_string().parse::<EvidenceKind>().unwrap(), kind);
        }
        let err = "sgx".parse::<EvidenceKind>().unwrap_err();
        assert!(err.to_string().contains("sgx-dcap, tdx, sev-snp, nitro"));
    }
}
