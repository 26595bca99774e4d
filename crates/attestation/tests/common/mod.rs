//! Loading the recorded evidence in `tests/data` (see its README for provenance).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use base64::Engine;
use conclave_attestation::HardwareEvidence;

/// 2025-07-01T00:00:00Z: inside the SGX and TDX collateral windows and every SNP
/// certificate's window (testdata README, "Suggested fixed verification times").
pub const JULY_2025: u64 = 1_751_328_000;
/// 2025-08-01T00:00:00Z: after the Intel collateral's nextUpdate.
pub const AUGUST_2025: u64 = 1_754_006_400;
/// The Nitro document's own timestamp, 2024-09-07T14:37:39Z.
pub const NITRO_TIME: u64 = 1_725_719_859;

pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn sgx() -> HardwareEvidence {
    HardwareEvidence::SgxDcap { quote: data("sgx_quote"), collateral: data("sgx_quote_collateral.json") }
}

pub fn tdx() -> HardwareEvidence {
    HardwareEvidence::Tdx { quote: data("tdx_quote"), collateral: data("tdx_quote_collateral.json") }
}

/// The Milan report is stored as uppercase hex without a newline.
pub fn snp_report_milan() -> Vec<u8> {
    let text = String::from_utf8(data("report_milan.hex")).unwrap();
    hex::decode(text.trim()).unwrap()
}

pub fn snp_milan() -> HardwareEvidence {
    HardwareEvidence::SevSnp {
        report: snp_report_milan(),
        vcek: data("vcek_milan.der"),
        chain: data("cert_chain_milan"),
    }
}

pub fn nitro_document() -> Vec<u8> {
    let text = String::from_utf8(data("nitro_attestation.b64")).unwrap();
    base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap()
}

pub fn nitro() -> HardwareEvidence {
    HardwareEvidence::Nitro { document: nitro_document() }
}

/// The offset of `needle` in `haystack`; panics if absent.
pub fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("needle not found")
}
