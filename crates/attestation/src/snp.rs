//! AMD SEV-SNP attestation reports, verified with the `sev` crate (`crypto_nossl`).
//!
//! `sev` verifies the RSA-PSS chain ARK → ASK → VCEK and the ECDSA P-384 report
//! signature. It checks no validity periods and trusts whatever ARK it is given, so
//! this module adds: the ARK must be one of the pinned AMD roots, every certificate
//! must be valid at the verification time, the VCEK's product must match the ASK's,
//! and the VCEK's hwID and TCB extensions must match the report's chip id and
//! reported TCB.
//!
//! The guest policy and the report's VMPL decide whether the guest can be trusted at
//! all: a policy that allows debugging (the host can read guest memory) or a migration
//! agent (which can export the guest's memory), or a report requested below VMPL 0, is
//! INSECURE. Otherwise the platform is genuine, but whether its TCB is current is a
//! question only AMD's KDS can answer (which TCB versions are the latest, which are
//! revoked); this crate has no such data, so it reports STALE and names the reported
//! TCB, and never SECURE.

use der::Decode;
use sev::certs::snp::{Certificate as SevCertificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use x509_cert::Certificate;

use crate::error::{AttestationError, CertificateProblem, SignedItem};
use crate::x509;
use crate::{EvidenceKind, SecuritySummary, SnpDetails, SnpTcb, TeeDetails, TrustRoots, VerifiedEvidence};

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
    let (security, security_reason) = summarise(&report);
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
        // An SNP report carries no creation time: its age cannot be known.
        timestamp_unix: None,
        details: TeeDetails::SevSnp(SnpDetails {
            measurement: report.measurement,
            host_data: report.host_data,
            id_key_digest: report.id_key_digest,
            policy: report.policy.0,
            vmpl: report.vmpl,
            reported_tcb: snp_tcb(&report.reported_tcb),
        }),
    })
}

fn snp_tcb(tcb: &TcbVersion) -> SnpTcb {
    SnpTcb { bootloader: tcb.bootloader, tee: tcb.tee, snp: tcb.snp, microcode: tcb.microcode, fmc: tcb.fmc }
}

/// The summary of a verified report: INSECURE for every reason that the guest's
/// memory or its key binding is open to someone else, all named; otherwise STALE,
/// because the reported TCB cannot be compared with AMD's latest without KDS data.
fn summarise(report: &AttestationReport) -> (SecuritySummary, String) {
    let mut insecure = Vec::new();
    if report.policy.debug_allowed() {
        insecure.push(
            "guest policy allows debugging (DEBUG, bit 19): the host can read and change guest memory".to_owned(),
        );
    }
    if report.policy.migrate_ma_allowed() {
        insecure.push(
            "guest policy allows a migration agent (MIGRATE_MA, bit 18): the agent can export the \
             guest's memory to another platform"
                .to_owned(),
        );
    }
    if report.vmpl != 0 {
        insecure.push(format!(
            "the report was requested at vmpl {}, not 0: software at a more privileged vmpl (0 to {}) \
             can request reports at that level with any report data, so the key binding does not prove \
             the guest's own code made it",
            report.vmpl,
            report.vmpl.saturating_sub(1),
        ));
    }
    let tcb_text = snp_tcb(&report.reported_tcb);
    if !insecure.is_empty() {
        return (SecuritySummary::Insecure, insecure.join("; "));
    }
    (
        SecuritySummary::Stale,
        format!(
            "vcek chain to the pinned amd ark and report signature are valid; guest policy forbids \
             debugging and migration agents; report requested at vmpl 0; reported tcb ({tcb_text}) \
             matches the vcek, but whether it is current cannot be evaluated without amd kds data, \
             so the platform is reported STALE, never SECURE"
        ),
    )
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

fn missing_extension(vcek: &Certificate, oid: &str, needed_for: &str) -> AttestationError {
    AttestationError::Certificate {
        certificate: x509::describe(vcek, "vcek"),
        problem: CertificateProblem::Malformed(format!("lacks extension {oid}, needed to check {needed_for}")),
    }
}

/// The VCEK is issued for one chip and one TCB; both must be the report's. A VCEK
/// always names both, so a missing extension is an error, not a skipped check.
fn check_vcek_matches_report(vcek: &Certificate, report: &AttestationReport) -> Result<(), AttestationError> {
    let hw_id = extension(vcek, OID_HW_ID).ok_or_else(|| missing_extension(vcek, OID_HW_ID, "the chip id"))?;
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
        // A VCEK is issued for one TCB and always names it; one that does not cannot
        // vouch for the report's TCB.
        let value = extension(vcek, oid).ok_or_else(|| missing_extension(vcek, oid, field))?;
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

#[cfg(test)]
mod tests {
    use sev::firmware::guest::GuestPolicy;

    use super::*;

    /// A report with the sample's policy (SMT allowed, reserved bit 17) at VMPL 0.
    fn report(policy: u64, vmpl: u32) -> AttestationReport {
        let mut report = AttestationReport { policy: GuestPolicy::from(policy), vmpl, ..Default::default() };
        report.reported_tcb = TcbVersion { fmc: None, bootloader: 3, tee: 0, snp: 8, microcode: 115 };
        report
    }

    const SAMPLE_POLICY: u64 = 0x30000;
    const DEBUG: u64 = 1 << 19;
    const MIGRATE_MA: u64 = 1 << 18;

    #[test]
    fn a_clean_guest_is_stale_and_names_its_tcb_never_secure() {
        let (summary, reason) = summarise(&report(SAMPLE_POLICY, 0));
        assert_eq!(summary, SecuritySummary::Stale);
        assert!(reason.contains("bootloader 3, tee 0, snp 8, microcode 115"), "{reason}");
        assert!(reason.contains("cannot be evaluated without amd kds data"), "{reason}");
    }

    #[test]
    fn debug_policy_is_insecure() {
        let (summary, reason) = summarise(&report(SAMPLE_POLICY | DEBUG, 0));
        assert_eq!(summary, SecuritySummary::Insecure);
        assert!(reason.starts_with("guest policy allows debugging (DEBUG, bit 19)"), "{reason}");
    }

    #[test]
    fn migration_agent_policy_is_insecure_and_says_why() {
        let (summary, reason) = summarise(&report(SAMPLE_POLICY | MIGRATE_MA, 0));
        assert_eq!(summary, SecuritySummary::Insecure);
        assert!(reason.starts_with("guest policy allows a migration agent (MIGRATE_MA, bit 18)"), "{reason}");
    }

    #[test]
    fn a_report_below_vmpl_0_is_insecure_and_says_why() {
        let (summary, reason) = summarise(&report(SAMPLE_POLICY, 2));
        assert_eq!(summary, SecuritySummary::Insecure);
        assert!(reason.starts_with("the report was requested at vmpl 2, not 0"), "{reason}");
        assert!(reason.contains("(0 to 1)"), "{reason}");
    }

    #[test]
    fn every_insecure_reason_is_named() {
        let (summary, reason) = summarise(&report(SAMPLE_POLICY | DEBUG | MIGRATE_MA, 1));
        assert_eq!(summary, SecuritySummary::Insecure);
        for part in ["DEBUG", "MIGRATE_MA", "vmpl 1"] {
            assert!(reason.contains(part), "{part} in {reason}");
        }
    }

    fn sample() -> (Certificate, AttestationReport) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let vcek = x509::parse_one(&std::fs::read(format!("{dir}vcek_milan.der")).unwrap(), "vcek").unwrap();
        let text = std::fs::read_to_string(format!("{dir}report_milan.hex")).unwrap();
        let report = AttestationReport::from_bytes(&hex::decode(text.trim()).unwrap()).unwrap();
        (vcek, report)
    }

    #[test]
    fn the_sample_vcek_matches_its_report() {
        let (vcek, report) = sample();
        check_vcek_matches_report(&vcek, &report).unwrap();
    }

    #[test]
    fn a_reported_tcb_the_vcek_was_not_issued_for_is_an_error() {
        let (vcek, mut report) = sample();
        report.reported_tcb.microcode += 1;
        let err = check_vcek_matches_report(&vcek, &report).unwrap_err();
        assert_eq!(err.to_string(), "vcek ucodeSPL vs report reported_tcb.microcode mismatch: expected 115, found 116");
    }

    #[test]
    fn a_vcek_without_a_tcb_extension_is_refused_not_skipped() {
        let (mut vcek, report) = sample();
        let extensions = vcek.tbs_certificate.extensions.as_mut().unwrap();
        extensions.retain(|ext| ext.extn_id.to_string() != OID_SNP_SPL);
        let err = check_vcek_matches_report(&vcek, &report).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "malformed: lacks extension 1.3.6.1.4.1.3704.1.3.3, needed to check vcek snpSPL vs report \
                 reported_tcb.snp"
            ),
            "{err}"
        );
        let (mut vcek, report) = sample();
        vcek.tbs_certificate.extensions.as_mut().unwrap().retain(|ext| ext.extn_id.to_string() != OID_HW_ID);
        assert!(check_vcek_matches_report(&vcek, &report).unwrap_err().to_string().contains("the chip id"));
    }
}
