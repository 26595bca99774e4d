//! `conclave evidence verify`: verify real TEE evidence from files.
//!
//! ```text
//! conclave evidence verify --kind sgx-dcap --quote Q --collateral C.json --at 2025-07-01T00:00:00Z
//! conclave evidence verify --kind tdx      --quote Q --collateral C.json --at 1751328000
//! conclave evidence verify --kind sev-snp  --report R(.hex) --vcek V.der --chain ASK+ARK.pem --at ...
//! conclave evidence verify --kind nitro    --document D(.b64) [--root ROOT.pem] --at ...
//!                          [--constraint "S:<hex> PROD:0 SEC:STALE"]
//! ```
//!
//! On success the verified result is printed as JSON on stdout. Exit codes:
//!
//! * 0: the evidence verifies (and satisfies `--constraint`, when given);
//! * 1: it does not: a bad signature, certificate, time window, malformed evidence,
//!   or an unsatisfied constraint token. The reason is on stderr; when the evidence
//!   itself verified, its JSON is still printed so the reason can be compared with it;
//! * 2: usage error: a missing or unexpected flag for the kind, an unparsable `--at`
//!   or `--constraint`, or an unreadable file.
//!
//! All verification happens in `conclave-attestation`; this module reads the files,
//! parses the time and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use conclave_attestation::{EvidenceKind, HardwareEvidence, TrustRoots, VerifiedEvidence, formats};
use conclave_core::constraint::EnclaveConstraint;
use conclave_core::info::AttestedIdentity;

/// Arguments of `conclave evidence verify`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Prints the verified result as JSON on stdout (kind, code_hash, signer, report_data, debug,
tcb_status, advisory_ids, security, timestamp_unix, ...), and every register of the TEE
under its name: sgx (mrenclave, mrsigner, isvprodid, isvsvn), tdx (mrtd, rtmr0-3,
mrconfigid, mrowner, mrownerconfig), sev_snp (measurement, host_data, policy, vmpl,
reported_tcb) or nitro (pcr0-2, pcr8). The TDX code_hash is SHA-384 over
MRTD||RTMR0-3||MRCONFIGID||MROWNER||MROWNERCONFIG.

Exit codes:
  0  the evidence verifies (and satisfies --constraint, if given)
  1  it does not, malformed evidence included; the reason on stderr names the signature,
     certificate, time window or constraint token that failed
  2  usage error, or a file that cannot be read")]
pub struct VerifyArgs {
    /// Evidence kind: sgx-dcap, tdx, sev-snp or nitro.
    #[arg(long, value_parser = parse_kind)]
    pub kind: EvidenceKind,
    /// Verification time: RFC 3339 (2025-07-01T00:00:00Z) or unix seconds.
    #[arg(long)]
    pub at: String,
    /// An enclave constraint the evidence must satisfy, e.g. "S:<hex> PROD:0 SEC:STALE".
    #[arg(long)]
    pub constraint: Option<String>,
    /// sgx-dcap, tdx: the raw quote.
    #[arg(long, value_name = "FILE")]
    pub quote: Option<PathBuf>,
    /// sgx-dcap, tdx: the collateral, QuoteCollateralV3 JSON.
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,
    /// sev-snp: the attestation report, raw or hex.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// sev-snp: the VCEK certificate, DER.
    #[arg(long, value_name = "FILE")]
    pub vcek: Option<PathBuf>,
    /// sev-snp: the ASK then the ARK, PEM.
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// nitro: the attestation document, raw CBOR or base64.
    #[arg(long, value_name = "FILE")]
    pub document: Option<PathBuf>,
    /// nitro: a root certificate (PEM or DER) to use instead of the pinned AWS Nitro
    /// Enclaves Root-G1.
    #[arg(long, value_name = "FILE")]
    pub root: Option<PathBuf>,
}

fn parse_kind(text: &str) -> Result<EvidenceKind, conclave_attestation::ParseNameError> {
    text.parse()
}

/// A failure, sorted by the exit code it maps to.
enum Failure {
    /// Exit 2.
    Usage(anyhow::Error),
    /// Exit 1.
    Rejected(anyhow::Error),
}

/// Runs `conclave evidence verify`; see the module docs for the exit codes.
pub fn run(args: &VerifyArgs) -> ExitCode {
    match verify(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected(e)) => {
            eprintln!("error: evidence rejected: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn verify(args: &VerifyArgs) -> Result<(), Failure> {
    let now = parse_time(&args.at).map_err(Failure::Usage)?;
    let constraint = args
        .constraint
        .as_deref()
        .map(|text| EnclaveConstraint::parse(text).with_context(|| format!("parsing --constraint {text:?}")))
        .transpose()
        .map_err(Failure::Usage)?;
    let (evidence, roots) = load(args)?;

    let verified = evidence
        .verify_with_roots(now, &roots)
        .with_context(|| format!("verifying {} evidence at {}", args.kind, args.at))
        .map_err(Failure::Rejected)?;

    let verdict = constraint.as_ref().map(|c| check(c, &verified, now));
    let mut json = to_json(&verified);
    if let (Some(c), Some(verdict)) = (&constraint, &verdict) {
        json["constraint"] = serde_json::json!({
            "text": c.to_string(),
            "satisfied": verdict.is_ok(),
        });
    }
    // Printing to a closed stdout is not worth a panic; the exit code still tells.
    println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
    match verdict {
        Some(Err(e)) => Err(Failure::Rejected(e)),
        _ => Ok(()),
    }
}

fn check(constraint: &EnclaveConstraint, v: &VerifiedEvidence, now: u64) -> anyhow::Result<()> {
    let identity = AttestedIdentity::from_hardware(v);
    constraint.check_identity(&identity, now).with_context(|| format!("checking constraint {constraint}"))
}

fn to_json(v: &VerifiedEvidence) -> serde_json::Value {
    let mut json = serde_json::json!({
        "kind": v.kind.as_str(),
        "code_hash": hex::encode(&v.measurement),
        "signer": v.signer.as_ref().map(hex::encode),
        "product_id": v.product_id,
        "revocation_level": v.revocation_level,
        "report_data": hex::encode(&v.report_data),
        "debug": v.debug,
        "tcb_status": v.tcb_status,
        "advisory_ids": v.advisory_ids,
        "security": v.security.as_str(),
        "security_reason": v.security_reason,
        // null for SGX, TDX and SEV-SNP: their evidence has no creation time.
        "timestamp_unix": v.timestamp_unix,
    });
    // Every register under the TEE's name: "sgx", "tdx", "sev_snp" or "nitro".
    json[v.details.json_key()] = v.details.to_json();
    json
}

/// RFC 3339 or unix seconds.
fn parse_time(text: &str) -> anyhow::Result<u64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().with_context(|| format!("--at {text:?} is too large"));
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at {text:?} is neither RFC 3339 nor unix seconds"))?;
    u64::try_from(t.unix_timestamp()).with_context(|| format!("--at {text:?} is before 1970"))
}

fn read(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
}

/// Reads the files for `--kind`. Missing, extra or unreadable files are usage errors;
/// a file in an unknown format is malformed evidence.
fn load(args: &VerifyArgs) -> Result<(HardwareEvidence, TrustRoots), Failure> {
    let kind = args.kind;
    let given: Vec<(&str, &Option<PathBuf>)> = vec![
        ("--quote", &args.quote),
        ("--collateral", &args.collateral),
        ("--report", &args.report),
        ("--vcek", &args.vcek),
        ("--chain", &args.chain),
        ("--document", &args.document),
        ("--root", &args.root),
    ];
    let (required, optional): (&[&str], &[&str]) = match kind {
        EvidenceKind::SgxDcap | EvidenceKind::Tdx => (&["--quote", "--collateral"], &[]),
        EvidenceKind::SevSnp => (&["--report", "--vcek", "--chain"], &[]),
        EvidenceKind::Nitro => (&["--document"], &["--root"]),
    };
    for (flag, value) in &given {
        let wanted = required.contains(flag) || optional.contains(flag);
        if value.is_some() && !wanted {
            return Err(Failure::Usage(anyhow!("{flag} does not apply to --kind {kind}")));
        }
        if value.is_none() && required.contains(flag) {
            return Err(Failure::Usage(anyhow!("--kind {kind} needs {}", required.join(" "))));
        }
    }
    let file = |flag: &str| -> Result<Vec<u8>, Failure> {
        // Every flag looked up here is in `required`, checked above.
        let path = given.iter().find(|(f, _)| *f == flag).and_then(|(_, p)| p.as_deref());
        let path = path.ok_or_else(|| Failure::Usage(anyhow!("{flag} is missing (a bug: it was checked)")))?;
        read(path, flag).map_err(Failure::Usage)
    };
    let malformed = |e: conclave_attestation::AttestationError| Failure::Rejected(e.into());
    let mut roots = TrustRoots::pinned();
    let evidence = match kind {
        EvidenceKind::SgxDcap => {
            HardwareEvidence::SgxDcap { quote: file("--quote")?, collateral: file("--collateral")? }
        }
        EvidenceKind::Tdx => HardwareEvidence::Tdx { quote: file("--quote")?, collateral: file("--collateral")? },
        EvidenceKind::SevSnp => HardwareEvidence::SevSnp {
            report: formats::snp_report(&file("--report")?).map_err(malformed)?,
            vcek: file("--vcek")?,
            chain: file("--chain")?,
        },
        EvidenceKind::Nitro => {
            if let Some(root) = &args.root {
                roots.aws_nitro_root = read(root, "--root").map_err(Failure::Usage)?;
            }
            HardwareEvidence::Nitro { document: formats::nitro_document(&file("--document")?).map_err(malformed)? }
        }
    };
    Ok((evidence, roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_accepts_rfc3339_and_unix_seconds() {
        assert_eq!(parse_time("1751328000").unwrap(), 1_751_328_000);
        assert_eq!(parse_time("2025-07-01T00:00:00Z").unwrap(), 1_751_328_000);
        assert_eq!(parse_time("2025-07-01T02:00:00+02:00").unwrap(), 1_751_328_000);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
    }
}
