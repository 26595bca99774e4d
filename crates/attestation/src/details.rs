//! The TEE-specific registers behind a verified identity.
//!
//! [`VerifiedEvidence`](crate::VerifiedEvidence) reduces every TEE to one code hash,
//! an optional signer and a security summary. That is what a constraint checks, but a
//! verifier that needs more (an SNP `host_data`, a Nitro PCR1, one TDX RTMR) must not
//! have to parse the evidence again: [`TeeDetails`] carries each register under the
//! vendor's name, after verification, so every value in it is covered by the
//! evidence's signature.

use serde::Serialize;
use sha2::{Digest, Sha384};

use crate::EvidenceKind;

/// The registers of one verified piece of evidence, by TEE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TeeDetails {
    /// An SGX enclave report.
    Sgx(SgxDetails),
    /// A TDX TD report.
    Tdx(TdxDetails),
    /// An SEV-SNP attestation report.
    SevSnp(SnpDetails),
    /// A Nitro attestation document.
    Nitro(NitroDetails),
}

/// SGX enclave identity, from the quote's ISV enclave report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxDetails {
    /// MRENCLAVE: the enclave's measurement.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER: SHA-256 of the enclave signer's modulus.
    pub mr_signer: [u8; 32],
    /// ISVPRODID: the product id the signer gave the enclave.
    pub isv_prod_id: u16,
    /// ISVSVN: the security version the signer gave the enclave (not reduced by one).
    pub isv_svn: u16,
    /// ATTRIBUTES: flags (bit 1 is DEBUG) then XFRM.
    pub attributes: [u8; 16],
}

/// TDX trust-domain identity, from the quote's TD report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxDetails {
    /// MRTD: the measurement of the TD's initial memory (its firmware).
    pub mr_td: [u8; 48],
    /// RTMR0 to RTMR3: the run-time measurement registers (firmware configuration,
    /// boot loader and kernel, command line and initrd, application), as they stood
    /// when the quote was made.
    pub rtmr: [[u8; 48]; 4],
    /// MRCONFIGID: a value the VMM chose at launch (commonly a config hash).
    pub mr_config_id: [u8; 48],
    /// MROWNER: the TD owner's identity, set at launch.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG: owner-defined configuration, set at launch.
    pub mr_owner_config: [u8; 48],
    /// TDATTRIBUTES (bits 7:0 are the TUD debug group).
    pub td_attributes: [u8; 8],
}

impl TdxDetails {
    /// The code hash a `C:` token pins for TDX: SHA-384 over MRTD ‖ RTMR0 ‖ RTMR1 ‖
    /// RTMR2 ‖ RTMR3 ‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG, each its raw 48 bytes.
    ///
    /// MRTD alone names only the firmware; the kernel, command line and application
    /// live in the RTMRs and the launch configuration in the other three, so one
    /// token pins the whole TD only if it covers all eight.
    pub fn composite_measurement(&self) -> [u8; 48] {
        let mut hash = Sha384::new();
        hash.update(self.mr_td);
        for rtmr in &self.rtmr {
            hash.update(rtmr);
        }
        hash.update(self.mr_config_id);
        hash.update(self.mr_owner);
        hash.update(self.mr_owner_config);
        hash.finalize().into()
    }
}

/// SEV-SNP guest identity and platform state, from the attestation report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpDetails {
    /// MEASUREMENT: the launch digest of the guest.
    pub measurement: [u8; 48],
    /// HOST_DATA: 32 bytes the host supplied at launch.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST: SHA-384 of the ID key that signed the ID block (zero if none).
    pub id_key_digest: [u8; 48],
    /// The guest policy (bit 19 DEBUG, bit 18 MIGRATE_MA, bit 16 SMT, ...).
    pub policy: u64,
    /// The VMPL the report was requested at (0 is the most privileged).
    pub vmpl: u32,
    /// REPORTED_TCB: the TCB the VCEK was derived from.
    pub reported_tcb: SnpTcb,
}

/// An SEV-SNP TCB version: the security patch levels of the platform's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpTcb {
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
    /// FMC SPL (Turin and later; absent before).
    pub fmc: Option<u8>,
}

impl std::fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bootloader {}, tee {}, snp {}, microcode {}", self.bootloader, self.tee, self.snp, self.microcode)?;
        if let Some(fmc) = self.fmc {
            write!(f, ", fmc {fmc}")?;
        }
        Ok(())
    }
}

/// Nitro enclave identity, from the attestation document's PCRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitroDetails {
    /// PCR0: the enclave image file.
    pub pcr0: [u8; 48],
    /// PCR1: the Linux kernel and bootstrap.
    pub pcr1: [u8; 48],
    /// PCR2: the application.
    pub pcr2: [u8; 48],
    /// PCR8: the enclave image's signing certificate, when the document has it.
    pub pcr8: Option<[u8; 48]>,
}

impl TeeDetails {
    /// The kind of evidence these registers came from.
    pub fn kind(&self) -> EvidenceKind {
        match self {
            TeeDetails::Sgx(_) => EvidenceKind::SgxDcap,
            TeeDetails::Tdx(_) => EvidenceKind::Tdx,
            TeeDetails::SevSnp(_) => EvidenceKind::SevSnp,
            TeeDetails::Nitro(_) => EvidenceKind::Nitro,
        }
    }

    /// The key under which the JSON views put [`to_json`](Self::to_json):
    /// `sgx`, `tdx`, `sev_snp` or `nitro`.
    pub fn json_key(&self) -> &'static str {
        match self {
            TeeDetails::Sgx(_) => "sgx",
            TeeDetails::Tdx(_) => "tdx",
            TeeDetails::SevSnp(_) => "sev_snp",
            TeeDetails::Nitro(_) => "nitro",
        }
    }

    /// The registers as a JSON object: byte strings as lowercase hex, numbers as
    /// numbers, the SNP policy as a `0x`-prefixed 16-digit hex string (a `u64` does
    /// not fit a JSON number exactly).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            TeeDetails::Sgx(d) => json!({
                "mrenclave": hex::encode(d.mr_enclave),
                "mrsigner": hex::encode(d.mr_signer),
                "isvprodid": d.isv_prod_id,
                "isvsvn": d.isv_svn,
                "attributes": hex::encode(d.attributes),
            }),
            TeeDetails::Tdx(d) => json!({
                "mrtd": hex::encode(d.mr_td),
                "rtmr0": hex::encode(d.rtmr[0]),
                "rtmr1": hex::encode(d.rtmr[1]),
                "rtmr2": hex::encode(d.rtmr[2]),
                "rtmr3": hex::encode(d.rtmr[3]),
                "mrconfigid": hex::encode(d.mr_config_id),
                "mrowner": hex::encode(d.mr_owner),
                "mrownerconfig": hex::encode(d.mr_owner_config),
                "tdattributes": hex::encode(d.td_attributes),
            }),
            TeeDetails::SevSnp(d) => json!({
                "measurement": hex::encode(d.measurement),
                "host_data": hex::encode(d.host_data),
                "id_key_digest": hex::encode(d.id_key_digest),
                "policy": format!("{:#018x}", d.policy),
                "vmpl": d.vmpl,
                "reported_tcb": {
                    "bootloader": d.reported_tcb.bootloader,
                    "tee": d.reported_tcb.tee,
                    "snp": d.reported_tcb.snp,
                    "microcode": d.reported_tcb.microcode,
                    "fmc": d.reported_tcb.fmc,
                },
            }),
            TeeDetails::Nitro(d) => json!({
                "pcr0": hex::encode(d.pcr0),
                "pcr1": hex::encode(d.pcr1),
                "pcr2": hex::encode(d.pcr2),
                "pcr8": d.pcr8.map(hex::encode),
            }),
        }
    }
}

impl Serialize for TeeDetails {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdx_composite_is_sha384_over_the_eight_registers_in_order() {
        let d = TdxDetails {
            mr_td: [1; 48],
            rtmr: [[2; 48], [3; 48], [4; 48], [5; 48]],
            mr_config_id: [6; 48],
            mr_owner: [7; 48],
            mr_owner_config: [8; 48],
            td_attributes: [0; 8],
        };
        let mut concatenated = Vec::new();
        for b in 1u8..=8 {
            concatenated.extend_from_slice(&[b; 48]);
        }
        assert_eq!(d.composite_measurement().to_vec(), Sha384::digest(&concatenated).to_vec());
        // Every register counts, and the attributes do not (they are checked apart).
        for i in 0..8 {
            let mut e = d.clone();
            match i {
                0 => e.mr_td[0] ^= 1,
                1..=4 => e.rtmr[i - 1][47] ^= 1,
                5 => e.mr_config_id[0] ^= 1,
                6 => e.mr_owner[0] ^= 1,
                _ => e.mr_owner_config[0] ^= 1,
            }
            assert_ne!(e.composite_measurement(), d.composite_measurement(), "register {i}");
        }
        let mut e = d.clone();
        e.td_attributes[0] = 1;
        assert_eq!(e.composite_measurement(), d.composite_measurement());
    }

    #[test]
    fn snp_policy_is_a_fixed_width_hex_string() {
        let d = TeeDetails::SevSnp(SnpDetails {
            measurement: [0; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            policy: 0x30000,
            vmpl: 0,
            reported_tcb: SnpTcb { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: None },
        });
        let json = d.to_json();
        assert_eq!(json["policy"], "0x0000000000030000");
        assert_eq!(json["reported_tcb"]["microcode"], 115);
        assert_eq!(json["reported_tcb"]["fmc"], serde_json::Value::Null);
        assert_eq!(d.json_key(), "sev_snp");
    }
}
