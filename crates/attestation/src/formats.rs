//! The file formats evidence is commonly stored in, turned into the raw bytes
//! [`HardwareEvidence`](crate::HardwareEvidence) holds. Pure byte transformations:
//! reading the files is the caller's business.

use base64::Engine;

use crate::AttestationError;

/// An SEV-SNP report is 1184 bytes.
const SNP_REPORT_LEN: usize = 1184;

/// Accepts a raw 1184-byte SEV-SNP report, or the same as hex text in either case
/// with surrounding whitespace (virtee's tools write uppercase hex, no newline).
pub fn snp_report(bytes: &[u8]) -> Result<Vec<u8>, AttestationError> {
    if bytes.len() == SNP_REPORT_LEN {
        return Ok(bytes.to_vec());
    }
    let text = bytes.trim_ascii();
    hex::decode(text).map_err(|e| AttestationError::Malformed {
        what: "sev-snp report file",
        reason: format!("{} bytes, neither a raw {SNP_REPORT_LEN}-byte report nor hex ({e})", bytes.len()),
    })
}

/// Accepts a raw Nitro attestation document (CBOR, starting with the COSE_Sign1
/// array header 0x84, or tag 18 0xD2), or the same as standard base64 text.
pub fn nitro_document(bytes: &[u8]) -> Result<Vec<u8>, AttestationError> {
    if matches!(bytes.first(), Some(0x84 | 0xD2)) {
        return Ok(bytes.to_vec());
    }
    base64::engine::general_purpose::STANDARD.decode(bytes.trim_ascii()).map_err(|e| AttestationError::Malformed {
        what: "nitro document file",
        reason: format!("neither cbor (0x84) nor standard base64 ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snp_report_accepts_raw_and_hex_in_any_case() {
        let raw = vec![0xABu8; SNP_REPORT_LEN];
        assert_eq!(snp_report(&raw).unwrap(), raw);
        let upper = format!("{}\n", hex::encode_upper(&raw));
        assert_eq!(snp_report(upper.as_bytes()).unwrap(), raw);
        assert!(snp_report(b"not hex").is_err());
    }

    #[test]
    fn nitro_document_accepts_raw_and_base64() {
        let raw = vec![0x84, 1, 2, 3];
        assert_eq!(nitro_document(&raw).unwrap(), raw);
        let text = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert_eq!(nitro_document(text.as_bytes()).unwrap(), raw);
        assert!(nitro_document(b"!!").is_err());
    }
}
