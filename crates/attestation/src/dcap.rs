//! Intel SGX and TDX DCAP quotes, verified with `dcap-qvl`.
//!
//! `dcap-qvl` does the cryptographic work: the quote signature under the attestation
//! key, the QE report signature under the PCK certificate, the QE report-data binding,
//! the PCK chain to the Intel SGX Root CA with both CRLs, the TCB info and QE identity
//! signatures and windows, and the TCB level match. Its errors are `anyhow` strings,
//! so before calling it we check every time window ourselves (collateral documents,
//! CRLs, certificates) to report both ends of the window, and afterwards we classify
//! its messages into [`SignedItem`]s. The classification is pinned to dcap-qvl 0.7 by
//! the tests in `tests/dcap.rs`, which would fail if its wording changed.

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::Quote;
use dcap_qvl::verify::QuoteVerifier;
use der::Decode;
use x509_cert::crl::CertificateList;

use crate::error::{AttestationError, SignedItem};
use crate::x509;
use crate::{EvidenceKind, SecuritySummary, SgxDetails, TdxDetails, TeeDetails, TrustRoots, VerifiedEvidence};

/// Which Intel TEE a quote must come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tee {
    Sgx,
    Tdx,
}

impl Tee {
    fn kind(self) -> EvidenceKind {
        match self {
            Tee::Sgx => EvidenceKind::SgxDcap,
            Tee::Tdx => EvidenceKind::Tdx,
        }
    }

    fn tee_type(self) -> u32 {
        match self {
            Tee::Sgx => 0x0000_0000,
            Tee::Tdx => 0x0000_0081,
        }
    }
}

pub(crate) fn verify(
    tee: Tee,
    raw_quote: &[u8],
    collateral_json: &[u8],
    now: u64,
    roots: &TrustRoots,
) -> Result<VerifiedEvidence, AttestationError> {
    let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral_json)
        .map_err(|e| AttestationError::Malformed { what: "dcap collateral json", reason: e.to_string() })?;
    let quote = Quote::parse(raw_quote).map_err(|e| AttestationError::Malformed {
        what: match tee {
            Tee::Sgx => "sgx quote",
            Tee::Tdx => "tdx quote",
        },
        reason: format!("{e:#}"),
    })?;
    if quote.header.tee_type != tee.tee_type() {
        return Err(AttestationError::Mismatch {
            field: "quote tee_type",
            expected: format!("{:#x} ({})", tee.tee_type(), tee.kind()),
            found: format!("{:#x}", quote.header.tee_type),
        });
    }

    check_collateral_windows(&collateral, &quote, now, roots)?;

    // Debug enclaves are not an error: they verify and are summarised as INSECURE,
    // so a developer can still see their measurement. `allow_debug` only lifts
    // dcap-qvl's own refusal; everything else stays strict.
    let verifier = QuoteVerifier::new(roots.intel_sgx_root.clone()).allow_debug(true);
    let report = verifier.verify(raw_quote, &collateral, now).map_err(|e| classify(tee, &e))?;

    let mut out = match (tee, &report.report) {
        (Tee::Sgx, dcap_qvl::quote::Report::SgxEnclave(r)) => VerifiedEvidence {
            kind: EvidenceKind::SgxDcap,
            measurement: r.mr_enclave.to_vec(),
            signer: Some(r.mr_signer.to_vec()),
            product_id: Some(r.isv_prod_id),
            // R3 Conclave defined the revocation level as ISVSVN - 1. ISVSVN 0 has no
            // lower level, so it saturates at 0: REVOKE:0 accepts ISVSVN 0 and 1.
            revocation_level: Some(r.isv_svn.saturating_sub(1)),
            report_data: r.report_data.to_vec(),
            // SGX ATTRIBUTES.FLAGS bit 1 is DEBUG.
            debug: r.attributes[0] & 0x02 != 0,
            tcb_status: report.status.clone(),
            advisory_ids: report.advisory_ids.clone(),
            security: SecuritySummary::Insecure,
            security_reason: String::new(),
            // A DCAP quote carries no creation time: its age cannot be known.
            timestamp_unix: None,
            details: TeeDetails::Sgx(SgxDetails {
                mr_enclave: r.mr_enclave,
                mr_signer: r.mr_signer,
                isv_prod_id: r.isv_prod_id,
                isv_svn: r.isv_svn,
                attributes: r.attributes,
            }),
        },
        (Tee::Tdx, r) => {
            let td = r
                .as_td10()
                .ok_or_else(|| AttestationError::Unsupported { what: "tdx quote without a td report body".into() })?;
            let details = TdxDetails {
                mr_td: td.mr_td,
                rtmr: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
                mr_config_id: td.mr_config_id,
                mr_owner: td.mr_owner,
                mr_owner_config: td.mr_owner_config,
                td_attributes: td.td_attributes,
            };
            VerifiedEvidence {
                kind: EvidenceKind::Tdx,
                // MRTD alone pins only the firmware: the code hash covers every
                // register that says what runs in the TD and how it was configured.
                measurement: details.composite_measurement().to_vec(),
                signer: None,
                product_id: None,
                revocation_level: None,
                report_data: td.report_data.to_vec(),
                // TDATTRIBUTES bits 7:0 are the TUD ("TD under debug") group: any bit
                // set means the host can inspect the TD.
                debug: td.td_attributes[0] != 0,
                tcb_status: report.status.clone(),
                advisory_ids: report.advisory_ids.clone(),
                security: SecuritySummary::Insecure,
                security_reason: String::new(),
                timestamp_unix: None,
                details: TeeDetails::Tdx(details),
            }
        }
        (Tee::Sgx, _) => {
            return Err(AttestationError::Mismatch {
                field: "quote body",
                expected: "sgx enclave report".into(),
                found: "td report".into(),
            });
        }
    };
    let (security, reason) = summarise(&out.tcb_status, &out.advisory_ids, out.debug, tee)?;
    out.security = security;
    out.security_reason = reason;
    Ok(out)
}

/// Maps Intel's TCB status to a summary. Revoked never gets here (dcap-qvl fails
/// first) but is refused again so the mapping stands on its own.
fn summarise(
    status: &str,
    advisories: &[String],
    debug: bool,
    tee: Tee,
) -> Result<(SecuritySummary, String), AttestationError> {
    let advisories = if advisories.is_empty() {
        String::from("no advisories")
    } else {
        format!("advisories {}", advisories.join(", "))
    };
    let meaning = match status {
        "UpToDate" => "platform is up to date",
        "SWHardeningNeeded" => "platform is up to date but software hardening is needed",
        "ConfigurationNeeded" => "platform is up to date but its configuration needs changing",
        "ConfigurationAndSWHardeningNeeded" => "platform needs configuration changes and software hardening",
        "OutOfDate" => "platform tcb is out of date",
        "OutOfDateConfigurationNeeded" => "platform tcb is out of date and its configuration needs changing",
        "TDRelaunchAdvised" | "TDRelaunchAdvisedConfigurationNeeded" => {
            "td launched on an out-of-date tcb; a relaunch is advised"
        }
        "Revoked" => {
            return Err(AttestationError::Revoked { detail: format!("intel tcb status Revoked, {advisories}") });
        }
        other => {
            return Err(AttestationError::Unsupported { what: format!("intel tcb status {other:?}") });
        }
    };
    if debug {
        let what = match tee {
            Tee::Sgx => "sgx enclave has the DEBUG attribute",
            Tee::Tdx => "td has a TUD (debug) attribute set",
        };
        return Ok((
            SecuritySummary::Insecure,
            format!("{what}: the host can read its memory (intel tcb status {status})"),
        ));
    }
    let security = if status == "UpToDate" { SecuritySummary::Secure } else { SecuritySummary::Stale };
    Ok((security, format!("intel tcb status {status}: {meaning}; {advisories}")))
}

/// Checks every dated item against `now`, so that an expired or not-yet-valid item is
/// reported with its name and both ends of its window.
fn check_collateral_windows(
    collateral: &QuoteCollateralV3,
    quote: &Quote,
    now: u64,
    roots: &TrustRoots,
) -> Result<(), AttestationError> {
    let tcb_info: dcap_qvl::TcbInfo = serde_json::from_str(&collateral.tcb_info)
        .map_err(|e| AttestationError::Malformed { what: "tcb info json", reason: e.to_string() })?;
    let (from, to) =
        (rfc3339("tcb info issueDate", &tcb_info.issue_date)?, rfc3339("tcb info nextUpdate", &tcb_info.next_update)?);
    x509::check_window(|| "tcb info collateral".into(), now, from, to)?;

    let qe_identity: dcap_qvl::QeIdentity = serde_json::from_str(&collateral.qe_identity)
        .map_err(|e| AttestationError::Malformed { what: "qe identity json", reason: e.to_string() })?;
    let (from, to) = (
        rfc3339("qe identity issueDate", &qe_identity.issue_date)?,
        rfc3339("qe identity nextUpdate", &qe_identity.next_update)?,
    );
    x509::check_window(|| "qe identity collateral".into(), now, from, to)?;

    for (name, der) in [("root ca crl", &collateral.root_ca_crl), ("pck crl", &collateral.pck_crl)] {
        let crl = CertificateList::from_der(der)
            .map_err(|e| AttestationError::Malformed { what: "collateral crl", reason: format!("{name}: {e}") })?;
        let from = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
        // A CRL without nextUpdate never expires by itself.
        let to = crl.tbs_cert_list.next_update.map_or(u64::MAX, |t| t.to_unix_duration().as_secs());
        x509::check_window(|| name.to_owned(), now, from, to)?;
    }

    let root = x509::parse_one(&roots.intel_sgx_root, "intel sgx root ca")?;
    x509::check_validity(&root, "intel sgx root ca", now)?;
    // Intel's issuer chains end with the root itself. Comparing it with the pinned
    // root names the problem precisely; dcap-qvl would only report that the root CA
    // CRL does not verify under the pinned key.
    let tcb_chain = x509::parse_pem_chain(collateral.tcb_info_issuer_chain.as_bytes(), "tcb info issuer chain")?;
    if let Some(top) = tcb_chain.last() {
        let self_signed = top.tbs_certificate.issuer == top.tbs_certificate.subject;
        if self_signed && x509::to_der(top) != x509::to_der(&root) {
            return Err(AttestationError::UntrustedRoot {
                kind: if quote.header.tee_type == 0 { EvidenceKind::SgxDcap } else { EvidenceKind::Tdx },
                detail: format!(
                    "collateral chains end in {}, which is not the pinned {}",
                    x509::describe(top, "root"),
                    x509::describe(&root, "root"),
                ),
            });
        }
    }
    for (what, pem) in [
        ("tcb info issuer chain", collateral.tcb_info_issuer_chain.as_bytes()),
        ("qe identity issuer chain", collateral.qe_identity_issuer_chain.as_bytes()),
        ("pck crl issuer chain", collateral.pck_crl_issuer_chain.as_bytes()),
    ] {
        for cert in x509::parse_pem_chain(pem, what)? {
            x509::check_validity(&cert, what, now)?;
        }
    }
    // The PCK chain usually travels inside the quote (certification data type 5).
    // Other types are left to dcap-qvl, which refuses what it cannot use.
    if let Ok(pem) = quote.raw_cert_chain() {
        let certs = x509::parse_pem_chain(pem, "pck certificate chain")?;
        for (i, cert) in certs.iter().enumerate() {
            let role = if i == 0 { "pck leaf" } else { "pck chain" };
            x509::check_validity(cert, role, now)?;
        }
    }
    Ok(())
}

fn rfc3339(what: &'static str, text: &str) -> Result<u64, AttestationError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .ok_or_else(|| AttestationError::Malformed {
            what,
            reason: format!("{text:?} is not an RFC 3339 time after 1970"),
        })
}

/// Turns a dcap-qvl failure into our error, by the wording dcap-qvl 0.7 uses.
fn classify(tee: Tee, err: &dyn std::fmt::Display) -> AttestationError {
    // dcap-qvl's errors are `anyhow::Error`s, whose alternate form prints the whole
    // chain of causes on one line.
    let message = format!("{err:#}");
    let signature = |item| AttestationError::Signature(item);
    if message.contains("Signature is invalid for tcb_info") {
        signature(SignedItem::TcbInfo)
    } else if message.contains("Signature is invalid for qe_identity") {
        signature(SignedItem::QeIdentity)
    } else if message.contains("Signature is invalid for qe_report") {
        signature(SignedItem::QeReport)
    } else if message.contains("ISV enclave report signature is invalid") {
        signature(match tee {
            Tee::Sgx => SignedItem::SgxQuoteBody,
            Tee::Tdx => SignedItem::TdxQuoteBody,
        })
    } else if message.contains("QE report hash mismatch") {
        AttestationError::Mismatch {
            field: "qe report data",
            expected: "sha-256(attestation key || qe auth data)".into(),
            found: "a different value".into(),
        }
    } else if message.contains("Revoked") {
        AttestationError::Revoked { detail: message }
    } else if message.contains("UnknownIssuer") || message.contains("Failed to load root ca") {
        AttestationError::UntrustedRoot {
            kind: tee.kind(),
            detail: format!("chain does not lead to the pinned intel sgx root ca ({message})"),
        }
    } else {
        AttestationError::Vendor { kind: tee.kind(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_statuses_map_to_summaries() {
        let none: &[String] = &[];
        let map = |status| summarise(status, none, false, Tee::Sgx).map(|(s, _)| s);
        assert_eq!(map("UpToDate").unwrap(), SecuritySummary::Secure);
        for stale in [
            "SWHardeningNeeded",
            "ConfigurationNeeded",
            "ConfigurationAndSWHardeningNeeded",
            "OutOfDate",
            "OutOfDateConfigurationNeeded",
            "TDRelaunchAdvised",
        ] {
            assert_eq!(map(stale).unwrap(), SecuritySummary::Stale, "{stale}");
        }
        assert!(matches!(map("Revoked"), Err(AttestationError::Revoked { .. })));
        assert!(matches!(map("Whatever"), Err(AttestationError::Unsupported { .. })));
    }

    #[test]
    fn a_debug_enclave_is_insecure_whatever_its_tcb() {
        let (summary, reason) = summarise("UpToDate", &[], true, Tee::Tdx).unwrap();
        assert_eq!(summary, SecuritySummary::Insecure);
        assert!(reason.contains("debug"), "{reason}");
        // Revoked stays an error even for a debug enclave.
        assert!(summarise("Revoked", &[], true, Tee::Sgx).is_err());
    }
}
