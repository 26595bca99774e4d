//! AMD SEV-SNP attestation reports, verified with the `sev` crate (`crypto_nossl`).
//!
//! `sev` verifies the RSA-PSS chain ARK → ASK → VCEK and the ECDSA P-384 report
//! signature. It checks no validity periods and trusts whatever ARK it is given, so
//! this module adds: the ARK must be one of the pinned AMD roots, every certificate
//! must be valid at the verification time, the VCEK's product must match the ASK's,
//! and the VCEK's hwID and TCB extensions must match the report's chip id and
//! reported TCB.
//!
//! There is no vendor TCB status for SNP in the sense of Intel's: the VCEK is issued
//! for the exact TCB in the report, and AMD's KDS does not say whether that TCB is
//! the latest. A valid chain and report signature on a non-debug guest is therefore
//! SECURE, and the reason says that the reported TCB was not compared against a
//! published minimum.

use der::Decode;
use sev::certs::snp::{Certificate as SevCertificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use x509_cert::Certificate;

use crate::error::{AttestationError, CertificateProblem, SignedItem};
use crate::x509;
use crate::{EvidenceKind, SecuritySummary, TrustRoots, VerifiedEvidence};

/// The report is signed over bytes 0x000..0x2A0.
const SIGNED_LEN: usize = 0x2A0;

/// What goes in `tcb_status` for SNP, where AMD publishes no status.
pub(crate) const SNP_TCB_STATUS: &str = "NotEvaluated";

pub(crate) fn verify(
    raw_report: &[u8],
    vcek_der: &[u8],
    chain_pem: &[u8],
    now: u64,
    roots: &TrustRoots,
) -> Result<VerifiedEvidence, AttestationError> {
    let report = AttestationReport::from_bytes(raw_report)
        .map_err(|e| AttestationError::Malformed { what: "sev-snp report", reason: e.to_string() })?;
    // `sev` verifies the signature over its own re-encoding of the parsed report. If
    // the raw bytes hold anything the parser does not model (non-zero reserved bytes),
    // those bytes would escape the signature; refuse such a report outright.
    let reencoded = report.to_bytes().map_err(|e| AttestationError::Malformed {
        what: "sev-snp report",
        reason: format!("cannot re-encode: {e}"),
    })?;
    if let Some(offset) = (0..SIGNED_LEN).find(|&i| raw_report[i] != reencoded[i]) {
        return Err(AttestationError::Malformed {
            what: "sev-snp report",
            reason: format!("byte {offset:#x} is outside every field the parser knows"),
        });
    }

    let vcek = x509::parse_one(vcek_der, "vcek")?;
    let chain = x509::parse_pem_chain(chain_pem, "sev-snp ask/ark chain")?;
    let [ask, ark] = <[Certificate; 2]>::try_from(chain).map_err(|chain| AttestationError::Certificate {
        certificate: "sev-snp ask/ark chain".into(),
        problem: CertificateProblem::Chain(format!("expected 2 certificates (ask, then ark), found {}", chain.len())),
    })?;

    pin_ark(&ark, roots)?;
    for (cert, role) in [(&ark, "ark"), (&ask, "ask"), (&vcek, "vcek")] {
        x509::check_validity(cert, role, now)?;
    }
    check_product(&vcek, &ask)?;

    let (sev_ark, sev_ask, sev_vcek) =
        (SevCertificate::from(ark.clone()), SevCertificate::from(ask.clone()), SevCertificate::from(vcek.clone()));
    for (issuer, issuer_role, subject, subject_role, cert) in [
        (&sev_ark, "ark", &sev_ark, "ark", &ark),
        (&sev_ark, "ark", &sev_ask, "ask", &ask),
        (&sev_ask, "ask", &sev_vcek, "vcek", &vcek),
    ] {
        (issuer, subject).verify().map_err(|_| AttestationError::Certificate {
            certificate: x509::describe(cert, subject_role),
            problem: CertificateProblem::BadSignature {
                issuer: x509::describe(if issuer_role == "ark" { &ark } else { &ask }, issuer_role),
            },
        })?;
    }

    check_vcek_matches_report(&vcek, &report)?;

    (&sev_vcek, &report).verify().map_err(|_| AttestationError::Signature(SignedItem::SnpReport))?;

    let debug = report.policy.debug_allowed();
    let tcb = &report.reported_tcb;
    let tcb_text =
        format!("bootloader {}, tee {}, snp {}, microcode {}", tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode);
    let (security, security_reason) = if debug {
        (SecuritySummary::Insecure, "guest policy allows debugging: the host can read guest memory".to_owned())
    } else {
        (
            SecuritySummary::Secure,
            format!(
                "vcek chain to the pinned amd ark and report signature are valid; reported \
                 tcb ({tcb_text}) matches the vcek but was not compared against a \
                 kds-published minimum"
            ),
        )
    };
    let signer = (report.author_key_digest != [0u8; 48]).then(|| report.author_key_digest.to_vec());
    Ok(VerifiedEvidence {
        kind: EvidenceKind::SevSnp,
        measurement: report.measurement.to_vec(),
        signer,
        product_id: None,
        revocation_level: None,
        report_data: report.report_data.to_vec(),
        debug,
        tcb_status: SNP_TCB_STATUS.to_owned(),
        advisory_ids: Vec::new(),
        security,
        security_reason,
        timestamp_unix: now,
    })
}

/// The supplied ARK must be byte-identical to a pinned one: `sev` would accept any
/// self-signed RSA key as the root.
fn pin_ark(ark: &Certificate, roots: &TrustRoots) -> Result<(), AttestationError> {
    let ark_der = x509::to_der(ark);
    for pinned in &roots.amd_arks {
        let pinned = x509::parse_one(pinned, "pinned amd ark")?;
        if x509::to_der(&pinned) == ark_der {
            return Ok(());
        }
    }
    Err(AttestationError::UntrustedRoot {
        kind: EvidenceKind::SevSnp,
        detail: format!("{} is not a pinned amd ark", x509::describe(ark, "ark")),
    })
}

const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

fn extension<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions
        .as_deref()?
        .iter()
        .find(|ext| ext.extn_id.to_string() == oid)
        .map(|ext| ext.extn_value.as_bytes())
}

/// The VCEK's productName ("Milan-B0", "Turin", ...) must name the same product line
/// as the ASK ("SEV-Milan", "SEV-Turin"). Catches a VCEK from another chip family
/// before any signature is checked, with a message that says so.
fn check_product(vcek: &Certificate, ask: &Certificate) -> Result<(), AttestationError> {
    let Some(value) = extension(vcek, OID_PRODUCT_NAME) else {
        return Ok(());
    };
    let product = der::asn1::Ia5StringRef::from_der(value).map(|s| s.as_str().to_owned()).map_err(|e| {
        AttestationError::Certificate {
            certificate: "vcek".into(),
            problem: CertificateProblem::Malformed(format!("productName: {e}")),
        }
    })?;
    let family = product.split('-').next().unwrap_or_default().to_owned();
    let ask_name = x509::describe(ask, "ask");
    if !ask_name.contains(&format!("CN=SEV-{family})")) {
        return Err(AttestationError::Mismatch {
            field: "vcek productName vs ask product line",
            expected: ask_name,
            found: product,
        });
    }
    Ok(())
}

/// The VCEK is issued for one chip and one TCB; both must be the report's.
fn check_vcek_matches_report(vcek: &Certificate, report: &AttestationReport) -> Result<(), AttestationError> {
    if let Some(hw_id) = extension(vcek, OID_HW_ID) {
        // Milan/Genoa hwIDs are the full 64-byte chip id; Turin's are its first 8 bytes
        // and the report zero-fills the rest.
        let n = hw_id.len().min(64);
        let matches = report.chip_id[..n] == hw_id[..n] && report.chip_id[n..].iter().all(|&b| b == 0);
        if !matches {
            return Err(AttestationError::Mismatch {
                field: "vcek hwID vs report chip_id",
                expected: hex::encode(hw_id),
                found: hex::encode(report.chip_id),
            });
        }
    }
    let tcb = &report.reported_tcb;
    let mut spls = vec![
        (OID_BL_SPL, "vcek blSPL vs report reported_tcb.bootloader", tcb.bootloader),
        (OID_TEE_SPL, "vcek teeSPL vs report reported_tcb.tee", tcb.tee),
        (OID_SNP_SPL, "vcek snpSPL vs report reported_tcb.snp", tcb.snp),
        (OID_UCODE_SPL, "vcek ucodeSPL vs report reported_tcb.microcode", tcb.microcode),
    ];
    if let Some(fmc) = tcb.fmc {
        spls.push((OID_FMC_SPL, "vcek fmcSPL vs report reported_tcb.fmc", fmc));
    }
    for (oid, field, reported) in spls {
        let Some(value) = extension(vcek, oid) else {
            continue;
        };
        let spl = u8::from_der(value).map_err(|e| AttestationError::Certificate {
            certificate: "vcek".into(),
            problem: CertificateProblem::Malformed(format!("{field}: {e}")),
        })?;
        if spl != reported {
            return Err(AttestationError::Mismatch { field, expected: spl.to_string(), found: reported.to_string() });
        }
    }
    Ok(())
}
