//! EnclaveInstanceInfo: what a client checks before it sends anything.
//!
//! It carries the enclave's two public keys and the evidence that binds them
//! to an enclave identity: the evidence's report data must equal
//! SHA-512(data-signing key ‖ encryption key), and [`EnclaveInstanceInfo::verify`]
//! checks that every time.

use conclave_attestation::{HardwareEvidence, TeeDetails, VerifiedEvidence};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha512};

use crate::{freshness::StateCheckpoint, keys::PublicKey, security::SecuritySummary};

/// The four bytes an encoded [`EnclaveInstanceInfo`] starts with.
pub const INFO_MAGIC: [u8; 4] = *b"CEII";
/// The encoding version this crate writes and reads. Version 2 added the
/// signed run checkpoint.
pub const INFO_VERSION: u16 = 2;
/// Domain separation for the simulated attestation signature.
const SIMULATION_DOMAIN: &[u8] = b"conclave-simulated-evidence-v1\0";
/// Domain separation for the run checkpoint's signature.
const RUN_DOMAIN: &[u8] = b"conclave-run-start-v1\0";

/// How an enclave runs, which decides how much its evidence is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EnclaveMode {
    /// In the host's own process: no protection at all. For unit tests.
    Mock,
    /// A separate, sandboxed process with evidence signed by a key the host holds. No protection against the host.
    Simulation,
    /// Real hardware with debugging enabled: the host can read its memory.
    Debug,
    /// Real hardware, production mode.
    Release,
}

impl EnclaveMode {
    /// The uppercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "MOCK",
            Self::Simulation => "SIMULATION",
            Self::Debug => "DEBUG",
            Self::Release => "RELEASE",
        }
    }
}

impl core::fmt::Display for EnclaveMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an [`EnclaveInstanceInfo`] could not be decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The bytes are not an encoded EnclaveInstanceInfo.
    #[error("malformed enclave instance info: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The encoding is of another version.
    #[error("unsupported enclave instance info version {found} (this code reads version {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
        /// The version this code reads.
        supported: u16,
    },
    /// The evidence's report data does not commit to the enclave's keys: the
    /// keys were swapped after the evidence was made.
    #[error("key binding failed: report data {actual} is not SHA-512 of the enclave's keys ({expected})")]
    KeyBindingMismatch {
        /// Hex of SHA-512(signing key ‖ encryption key).
        expected: String,
        /// Hex of the report data found in the evidence.
        actual: String,
    },
    /// The simulated evidence's signature does not verify.
    #[error("simulated evidence signature is invalid: the evidence was altered")]
    BadSimulationSignature,
    /// The data-signing key is not a valid Ed25519 key.
    #[error("data-signing key is not a valid ed25519 public key")]
    BadSigningKey,
    /// The encryption key is a low-order X25519 point: mail to it would be
    /// readable by anyone.
    #[error("encryption key {key} is a low-order point: mail to it would be readable by anyone")]
    LowOrderEncryptionKey {
        /// The key.
        key: String,
    },
    /// The run checkpoint's signature does not verify with the data-signing key.
    #[error("run checkpoint signature is invalid: the attestation was altered")]
    BadRunSignature,
    /// Real hardware evidence failed verification.
    #[error("{kind} evidence failed verification: {reason}")]
    Hardware {
        /// The kind of evidence.
        kind: String,
        /// The verifier's reason: which signature, certificate or time window failed.
        reason: String,
    },
}

/// The identity fields every kind of evidence reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnclaveReport {
    /// SHA-256 of the enclave binary (its measurement).
    pub code_hash: [u8; 32],
    /// SHA-256 of the public key that signed the enclave binary.
    pub code_signing_key_hash: [u8; 32],
    /// The product id the signer gave this enclave.
    pub product_id: u16,
    /// The revocation level the signer gave this enclave.
    pub revocation_level: u16,
    /// Data the enclave binds into its evidence: SHA-512 of its public keys.
    pub report_data: [u8; 64],
    /// When the evidence was made, in unix seconds.
    pub timestamp_unix: u64,
}

const REPORT_LEN: usize = 32 + 32 + 2 + 2 + 64 + 8;

impl EnclaveReport {
    /// The report's 140-byte encoding (see `docs/wire-format.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPORT_LEN);
        self.encode_into(&mut out);
        out
    }

    /// Decodes [`Self::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InfoError> {
        if bytes.len() != REPORT_LEN {
            return Err(InfoError::Malformed { reason: "report has the wrong length" });
        }
        Self::decode(bytes)
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code_hash);
        out.extend_from_slice(&self.code_signing_key_hash);
        out.extend_from_slice(&self.product_id.to_be_bytes());
        out.extend_from_slice(&self.revocation_level.to_be_bytes());
        out.extend_from_slice(&self.report_data);
        out.extend_from_slice(&self.timestamp_unix.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, InfoError> {
        let mut r = Reader(bytes);
        let report = Self {
            code_hash: r.array()?,
            code_signing_key_hash: r.array()?,
            product_id: u16::from_be_bytes(r.array()?),
            revocation_level: u16::from_be_bytes(r.array()?),
            report_data: r.array()?,
            timestamp_unix: u64::from_be_bytes(r.array()?),
        };
        Ok(report)
    }
}

/// Evidence that binds an enclave's keys to its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Evidence {
    /// Mock mode: an unsigned report. Anyone can forge it; always INSECURE.
    Mock(EnclaveReport),
    /// Simulation mode: a report signed by the host's simulated attestation
    /// key. The host's operator holds that key; always INSECURE.
    Simulation {
        /// The signed report.
        report: EnclaveReport,
        /// The simulated attestation key (Ed25519 public key).
        attestation_key: [u8; 32],
        /// Its signature over the report.
        signature: [u8; 64],
    },
    /// Real TEE evidence (SGX DCAP, TDX, SEV-SNP, Nitro) with its collateral.
    Hardware(HardwareEvidence),
}

const TAG_MOCK: u8 = 1;
const TAG_SIMULATION: u8 = 2;
const TAG_HARDWARE: u8 = 3;

impl Evidence {
    /// Signs a report with a simulated attestation key (simulation mode only:
    /// whoever holds `key` can make any enclave look like any other).
    pub fn simulated_insecure(report: EnclaveReport, key: &SigningKey) -> Self {
        let signature = key.sign(&simulation_message(&report)).to_bytes();
        Self::Simulation { report, attestation_key: key.verifying_key().to_bytes(), signature }
    }
}

impl Evidence {
    /// The evidence's encoding: kind tag, `u32` length, body (see `docs/wire-format.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let tag = match self {
            Self::Mock(report) => {
                report.encode_into(&mut body);
                TAG_MOCK
            }
            Self::Simulation { report, attestation_key, signature } => {
                report.encode_into(&mut body);
                body.extend_from_slice(attestation_key);
                body.extend_from_slice(signature);
                TAG_SIMULATION
            }
            Self::Hardware(hardware) => {
                body = hardware.encode();
                TAG_HARDWARE
            }
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(tag);
        // Evidence is far below 4 GiB.
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes [`Self::to_bytes`] output; nothing may follow it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InfoError> {
        let mut r = Reader(bytes);
        let tag = r.array::<1>()?[0];
        let len = u32::from_be_bytes(r.array()?) as usize;
        let body = r.take(len)?;
        if !r.0.is_empty() {
            return Err(InfoError::Malformed { reason: "trailing bytes after the evidence" });
        }
        Ok(match tag {
            TAG_MOCK => {
                if body.len() != REPORT_LEN {
                    return Err(InfoError::Malformed { reason: "mock evidence has the wrong length" });
                }
                Self::Mock(EnclaveReport::decode(body)?)
            }
            TAG_SIMULATION => {
                if body.len() != REPORT_LEN + 32 + 64 {
                    return Err(InfoError::Malformed { reason: "simulated evidence has the wrong length" });
                }
                let report = EnclaveReport::decode(&body[..REPORT_LEN])?;
                let mut r = Reader(&body[REPORT_LEN..]);
                Self::Simulation { report, attestation_key: r.array()?, signature: r.array()? }
            }
            TAG_HARDWARE => Self::Hardware(
                HardwareEvidence::decode(body)
                    .map_err(|_| InfoError::Malformed { reason: "hardware evidence is malformed" })?,
            ),
            _ => return Err(InfoError::Malformed { reason: "unknown evidence kind" }),
        })
    }
}

fn simulation_message(report: &EnclaveReport) -> Vec<u8> {
    let mut msg = SIMULATION_DOMAIN.to_vec();
    report.encode_into(&mut msg);
    msg
}

/// The report data an enclave with these keys must put in its evidence.
pub fn key_binding(data_signing_key: &[u8; 32], encryption_key: &PublicKey) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(data_signing_key);
    h.update(encryption_key.as_bytes());
    h.finalize().into()
}

/// What a client learns about an enclave: its keys, the evidence binding
/// them, and the checkpoint of the state this run of the enclave started
/// from, signed by the data-signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveInstanceInfo {
    data_signing_key: [u8; 32],
    encryption_key: PublicKey,
    run: StateCheckpoint,
    run_signature: [u8; 64],
    evidence: Evidence,
}

/// The message the data-signing key signs to vouch for a run's checkpoint.
pub fn run_message(encryption_key: &PublicKey, run: &StateCheckpoint) -> Vec<u8> {
    let mut msg = Vec::with_capacity(RUN_DOMAIN.len() + 32 + 40);
    msg.extend_from_slice(RUN_DOMAIN);
    msg.extend_from_slice(encryption_key.as_bytes());
    msg.extend_from_slice(&run.to_bytes());
    msg
}

/// The fields a constraint checks, taken from verified evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttestedIdentity {
    /// The code hash a `C:` token pins, at its natural length: the mock or simulated
    /// binary's SHA-256, SGX MRENCLAVE, the TDX composite measurement, SEV-SNP
    /// MEASUREMENT or Nitro PCR0 (see `docs/attestation.md`).
    #[serde(with = "hex_bytes")]
    pub code_hash: Vec<u8>,
    /// The signer identity, where the TEE has one.
    #[serde(with = "hex_opt")]
    pub signer: Option<Vec<u8>>,
    /// The product id, where the TEE has one.
    pub product_id: Option<u16>,
    /// The revocation level, where the TEE has one.
    pub revocation_level: Option<u16>,
    /// How far the enclave can be trusted.
    pub security: SecuritySummary,
    /// Why: what was and wasn't checked.
    pub security_reason: String,
    /// When the evidence was made, in unix seconds, where the evidence says so: the
    /// mock or simulated report's timestamp, or a Nitro document's signed timestamp.
    /// `None` for SGX, TDX and SEV-SNP evidence, which carries no creation time; an
    /// `EXPIRE:` constraint refuses such evidence rather than guess its age.
    pub timestamp_unix: Option<u64>,
    /// Every identity register of hardware evidence under its vendor's name (SGX
    /// MRENCLAVE..., TDX MRTD and RTMR0-3..., SEV-SNP policy and VMPL..., Nitro PCRs).
    /// `None` exactly for mock and simulation evidence.
    pub tee_details: Option<TeeDetails>,
    /// The Ed25519 public key of the host's simulated attestation key, for simulation
    /// evidence (which it signed); `None` for mock and hardware evidence. A `SIMKEY:`
    /// token pins it.
    #[serde(with = "hex_key_opt")]
    pub simulated_attestation_key: Option<[u8; 32]>,
}

impl AttestedIdentity {
    /// The identity that verified hardware evidence proves.
    pub fn from_hardware(v: &VerifiedEvidence) -> Self {
        AttestedIdentity {
            code_hash: v.measurement.clone(),
            signer: v.signer.clone(),
            product_id: v.product_id,
            revocation_level: v.revocation_level,
            security: v.security,
            security_reason: v.security_reason.clone(),
            timestamp_unix: v.timestamp_unix,
            tee_details: Some(v.details.clone()),
            simulated_attestation_key: None,
        }
    }
}

/// An [`EnclaveInstanceInfo`] whose evidence and key binding have been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEnclaveInfo {
    /// How the enclave runs.
    pub mode: EnclaveMode,
    /// The identity the evidence proves.
    pub identity: AttestedIdentity,
    /// The enclave's Ed25519 data-signing key.
    pub data_signing_key: [u8; 32],
    /// The enclave's X25519 encryption key: where mail goes.
    pub encryption_key: PublicKey,
    /// The checkpoint of the state this run started from (signed by the
    /// data-signing key): a state the client has now been shown.
    pub run: StateCheckpoint,
}

impl VerifiedEnclaveInfo {
    /// The JSON view: hashes and keys as lowercase hex.
    pub fn to_json(&self) -> serde_json::Value {
        let id = &self.identity;
        let mut json = serde_json::json!({
            "mode": self.mode.as_str(),
            "code_hash": hex::encode(&id.code_hash),
            "code_signing_key_hash": id.signer.as_ref().map(hex::encode),
            "product_id": id.product_id,
            "revocation_level": id.revocation_level,
            "security": {
                "summary": id.security.as_str(),
                "reason": id.security_reason,
                "timestamp": id.timestamp_unix,
            },
            "simulated_attestation_key": id.simulated_attestation_key.map(hex::encode),
            "data_signing_key": hex::encode(self.data_signing_key),
            "encryption_key": self.encryption_key.to_hex(),
            "run_checkpoint": self.run.to_string(),
        });
        // The TEE's own registers, under the TEE's name: "sgx", "tdx", "sev_snp", "nitro".
        if let (Some(details), Some(object)) = (&id.tee_details, json.as_object_mut()) {
            object.insert(details.json_key().to_owned(), details.to_json());
        }
        json
    }
}

impl EnclaveInstanceInfo {
    /// Assembles an info. Nothing is checked until [`Self::verify`].
    pub fn new(
        data_signing_key: [u8; 32],
        encryption_key: PublicKey,
        run: StateCheckpoint,
        run_signature: [u8; 64],
        evidence: Evidence,
    ) -> Self {
        Self { data_signing_key, encryption_key, run, run_signature, evidence }
    }

    /// Assembles an info, signing the run checkpoint with `signing_key`
    /// (the enclave's data-signing key).
    pub fn signed(
        signing_key: &SigningKey,
        encryption_key: PublicKey,
        run: StateCheckpoint,
        evidence: Evidence,
    ) -> Self {
        let signature = signing_key.sign(&run_message(&encryption_key, &run)).to_bytes();
        Self::new(signing_key.verifying_key().to_bytes(), encryption_key, run, signature, evidence)
    }

    /// The checkpoint of the state this run started from (unverified).
    pub fn run(&self) -> &StateCheckpoint {
        &self.run
    }

    /// The enclave's Ed25519 data-signing key (unverified).
    pub fn data_signing_key(&self) -> &[u8; 32] {
        &self.data_signing_key
    }

    /// The enclave's X25519 encryption key (unverified).
    pub fn encryption_key(&self) -> &PublicKey {
        &self.encryption_key
    }

    /// The evidence (unverified).
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Verifies the evidence at `now_unix` and checks that it commits to the keys.
    pub fn verify(&self, now_unix: u64) -> Result<VerifiedEnclaveInfo, InfoError> {
        let signing = VerifyingKey::from_bytes(&self.data_signing_key).map_err(|_| InfoError::BadSigningKey)?;
        let expected = key_binding(&self.data_signing_key, &self.encryption_key);
        let (mode, identity, report_data) = match &self.evidence {
            Evidence::Mock(report) => (
                EnclaveMode::Mock,
                report_identity(
                    report,
                    "mock mode: the enclave runs inside the host's process and its evidence is unsigned; \
                     nothing is protected from the host",
                    None,
                ),
                &report.report_data[..],
            ),
            Evidence::Simulation { report, attestation_key, signature } => {
                let key = VerifyingKey::from_bytes(attestation_key).map_err(|_| InfoError::BadSimulationSignature)?;
                key.verify(&simulation_message(report), &Signature::from_bytes(signature))
                    .map_err(|_| InfoError::BadSimulationSignature)?;
                (
                    EnclaveMode::Simulation,
                    report_identity(
                        report,
                        "simulation mode: the evidence is signed by a simulated attestation key that the host's \
                         operator holds, and the host can read the enclave's memory",
                        Some(*attestation_key),
                    ),
                    &report.report_data[..],
                )
            }
            Evidence::Hardware(hardware) => {
                let v = hardware
                    .verify(now_unix)
                    .map_err(|e| InfoError::Hardware { kind: hardware.kind().to_string(), reason: e.to_string() })?;
                let mode = if v.debug { EnclaveMode::Debug } else { EnclaveMode::Release };
                let identity = AttestedIdentity::from_hardware(&v);
                if v.report_data != expected {
                    return Err(InfoError::KeyBindingMismatch {
                        expected: hex::encode(expected),
                        actual: hex::encode(&v.report_data),
                    });
                }
                (mode, identity, &expected[..])
            }
        };
        if report_data != expected {
            return Err(InfoError::KeyBindingMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(report_data),
            });
        }
        // The keys are the evidence's; the run checkpoint is the signing key's word.
        signing
            .verify_strict(&run_message(&self.encryption_key, &self.run), &Signature::from_bytes(&self.run_signature))
            .map_err(|_| InfoError::BadRunSignature)?;
        if self.encryption_key.is_low_order() {
            return Err(InfoError::LowOrderEncryptionKey { key: self.encryption_key.to_hex() });
        }
        Ok(VerifiedEnclaveInfo {
            mode,
            identity,
            data_signing_key: self.data_signing_key,
            encryption_key: self.encryption_key,
            run: self.run,
        })
    }

    /// The versioned binary encoding (see `docs/wire-format.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&INFO_MAGIC);
        out.extend_from_slice(&INFO_VERSION.to_be_bytes());
        out.extend_from_slice(&self.data_signing_key);
        out.extend_from_slice(self.encryption_key.as_bytes());
        out.extend_from_slice(&self.run.to_bytes());
        out.extend_from_slice(&self.run_signature);
        out.extend_from_slice(&self.evidence.to_bytes());
        out
    }

    /// Decodes [`Self::encode`]'s output. Verifies nothing.
    pub fn decode(bytes: &[u8]) -> Result<Self, InfoError> {
        let mut r = Reader(bytes);
        if r.array::<4>()? != INFO_MAGIC {
            return Err(InfoError::Malformed { reason: "bad magic bytes" });
        }
        let version = u16::from_be_bytes(r.array()?);
        if version != INFO_VERSION {
            return Err(InfoError::UnsupportedVersion { found: version, supported: INFO_VERSION });
        }
        let data_signing_key = r.array()?;
        let encryption_key = PublicKey::from_bytes(r.array()?);
        let run = StateCheckpoint::from_bytes(&r.array()?);
        let run_signature = r.array()?;
        let evidence = Evidence::from_bytes(r.0)?;
        Ok(Self { data_signing_key, encryption_key, run, run_signature, evidence })
    }
}

fn report_identity(
    report: &EnclaveReport,
    reason: &str,
    simulated_attestation_key: Option<[u8; 32]>,
) -> AttestedIdentity {
    // Mock and simulated enclaves are never better than INSECURE.
    AttestedIdentity {
        code_hash: report.code_hash.to_vec(),
        signer: Some(report.code_signing_key_hash.to_vec()),
        product_id: Some(report.product_id),
        revocation_level: Some(report.revocation_level),
        security: SecuritySummary::Insecure,
        security_reason: reason.to_owned(),
        timestamp_unix: Some(report.timestamp_unix),
        tee_details: None,
        simulated_attestation_key,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InfoError> {
        if self.0.len() < n {
            return Err(InfoError::Malformed { reason: "truncated" });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], InfoError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

mod hex_key_opt {
    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(super) fn serialize<S: serde::Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}

mod hex_opt {
    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(super) fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}
