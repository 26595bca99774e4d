//! The compact binary encoding of [`HardwareEvidence`].
//!
//! ```text
//! byte 0      format version (ENCODING_VERSION = 1)
//! byte 1      kind tag: 1 sgx-dcap, 2 tdx, 3 sev-snp, 4 nitro
//! then, per kind, a fixed number of fields, each a u32 big-endian length
//! followed by that many bytes:
//!   sgx-dcap  quote, collateral
//!   tdx       quote, collateral
//!   sev-snp   report, vcek, chain
//!   nitro     document
//! nothing may follow the last field.
//! ```
//!
//! The version byte comes first so that a future layout can be recognised before the
//! tag is interpreted; a decoder rejects versions it does not know, naming both.

use crate::{EvidenceKind, HardwareEvidence};

/// The encoding version this build writes and reads.
pub const ENCODING_VERSION: u8 = 1;

/// Why a [`HardwareEvidence`] encoding could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The input ended before the header or a field was complete.
    #[error("truncated at byte {offset}: needed {needed} more bytes for the {what}")]
    Truncated {
        /// Where the missing bytes start.
        offset: usize,
        /// How many more bytes were needed.
        needed: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The version byte is not one this build reads.
    #[error("unsupported encoding version {found} (this build reads version {supported})")]
    Version {
        /// The version in the input.
        found: u8,
        /// The version this build supports.
        supported: u8,
    },
    /// The kind tag is unknown.
    #[error("unknown evidence kind tag {0}")]
    UnknownKind(u8),
    /// Bytes follow the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
}

fn tag(kind: EvidenceKind) -> u8 {
    match kind {
        EvidenceKind::SgxDcap => 1,
        EvidenceKind::Tdx => 2,
        EvidenceKind::SevSnp => 3,
        EvidenceKind::Nitro => 4,
    }
}

pub(crate) fn encode(evidence: &HardwareEvidence) -> Vec<u8> {
    let fields: Vec<&[u8]> = match evidence {
        HardwareEvidence::SgxDcap { quote, collateral } | HardwareEvidence::Tdx { quote, collateral } => {
            vec![quote, collateral]
        }
        HardwareEvidence::SevSnp { report, vcek, chain } => vec![report, vcek, chain],
        HardwareEvidence::Nitro { document } => vec![document],
    };
    let len = 2 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(ENCODING_VERSION);
    out.push(tag(evidence.kind()));
    for field in fields {
        // Evidence fields are a few kilobytes; a field over 4 GiB cannot come from any
        // TEE and would be a caller bug, so saturating would only hide it.
        let field_len = u32::try_from(field.len()).expect("evidence field longer than 4 GiB is a bug");
        out.extend_from_slice(&field_len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EncodingError> {
        let rest = &self.bytes[self.offset..];
        if rest.len() < n {
            return Err(EncodingError::Truncated { offset: self.offset, needed: n - rest.len(), what });
        }
        self.offset += n;
        Ok(&rest[..n])
    }

    fn field(&mut self, what: &'static str) -> Result<Vec<u8>, EncodingError> {
        let len = self.take(4, what)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        // `take` checks the length against the remaining input before anything is
        // allocated, so a forged length cannot make us reserve gigabytes.
        Ok(self.take(len, what)?.to_vec())
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<HardwareEvidence, EncodingError> {
    let mut r = Reader { bytes, offset: 0 };
    let header = r.take(2, "header")?;
    if header[0] != ENCODING_VERSION {
        return Err(EncodingError::Version { found: header[0], supported: ENCODING_VERSION });
    }
    let evidence = match header[1] {
        1 => {
            HardwareEvidence::SgxDcap { quote: r.field("sgx-dcap quote")?, collateral: r.field("sgx-dcap collateral")? }
        }
        2 => HardwareEvidence::Tdx { quote: r.field("tdx quote")?, collateral: r.field("tdx collateral")? },
        3 => HardwareEvidence::SevSnp {
            report: r.field("sev-snp report")?,
            vcek: r.field("sev-snp vcek")?,
            chain: r.field("sev-snp chain")?,
        },
        4 => HardwareEvidence::Nitro { document: r.field("nitro document")? },
        other => return Err(EncodingError::UnknownKind(other)),
    };
    let trailing = bytes.len() - r.offset;
    if trailing != 0 {
        return Err(EncodingError::TrailingBytes(trailing));
    }
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_version_tag_then_length_prefixed_fields() {
        let e = HardwareEvidence::SevSnp { report: vec![0xAA], vcek: vec![], chain: vec![1, 2] };
        assert_eq!(encode(&e), [1, 3, 0, 0, 0, 1, 0xAA, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2]);
        assert_eq!(decode(&encode(&e)).unwrap(), e);
    }

    #[test]
    fn every_kind_round_trips() {
        let all = [
            HardwareEvidence::SgxDcap { quote: vec![1; 10], collateral: b"{}".to_vec() },
            HardwareEvidence::Tdx { quote: vec![2; 3], collateral: vec![] },
            HardwareEvidence::SevSnp { report: vec![3], vcek: vec![4], chain: vec![5] },
            HardwareEvidence::Nitro { document: vec![6; 7] },
        ];
        for e in all {
            assert_eq!(decode(&encode(&e)).unwrap(), e);
        }
    }

    #[test]
    fn rejects_bad_version_tag_truncation_and_trailing_bytes() {
        let good = encode(&HardwareEvidence::Nitro { document: vec![9; 4] });
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(decode(&v2).unwrap_err(), EncodingError::Version { found: 2, supported: 1 });
        let mut tag9 = good.clone();
        tag9[1] = 9;
        assert_eq!(decode(&tag9).unwrap_err(), EncodingError::UnknownKind(9));
        assert!(matches!(decode(&good[..good.len() - 1]).unwrap_err(), EncodingError::Truncated { needed: 1, .. }));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long).unwrap_err(), EncodingError::TrailingBytes(1));
        // A length far beyond the input is reported, not allocated.
        assert!(matches!(decode(&[1, 4, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap_err(), EncodingError::Truncated { .. }));
    }
}
