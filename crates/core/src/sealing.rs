//! Sealing: encrypting data so only the same enclave identity can read it back.
//!
//! The host stores whatever an enclave wants to keep across restarts, so the
//! enclave seals it first with a key the host cannot derive. The key comes from
//! a platform secret (in hardware, the CPU's; in simulation, a file in the
//! host's data directory, which is why simulation is insecure) and the enclave
//! identity the [`SealingPolicy`] selects:
//!
//! ```text
//!  platform secret ──► HKDF-SHA256 ──► sealing key (AES-256-GCM)
//!  policy + identity ─┘      └───────► key id (16 bytes, in clear in the blob)
//! ```
//!
//! Under the signer policy the key also depends on the revocation level, as
//! SGX's depends on ISVSVN: an enclave seals under its own level and can
//! derive the keys of lower levels (so a fixed version reads what an older
//! one sealed), never of higher ones (so an old, revoked build cannot read
//! what a newer one sealed).
//!
//! A sealed blob is laid out as follows (all integers big-endian):
//!
//! ```text
//!  offset  size  field
//!  0       5     magic "CSEAL"
//!  5       2     version (2)
//!  7       1     policy (1 = code hash, 2 = signer and product)
//!  8       2     revocation level the key is bound to (0 under the code-hash policy)
//!  10      16    key id
//!  26      12    nonce (random)
//!  38      n+16  AES-256-GCM ciphertext and tag
//! ```
//!
//! The first 26 bytes, followed by the caller's associated data, are the
//! AEAD's associated data, so the header cannot be changed without detection.
//! The key id lets [`unseal`] tell "this blob is for another identity" apart
//! from "this blob was tampered with".
//!
//! ```
//! use conclave_core::sealing::{SealingIdentity, SealingPolicy, seal, unseal};
//! use rand_core::OsRng;
//!
//! let platform_secret = [7u8; 32];
//! let v1 = SealingIdentity { code_hash: [1; 32], code_signing_key_hash: [2; 32], product_id: 5, revocation_level: 1 };
//! let blob = seal(&platform_secret, &v1, SealingPolicy::SignerAndProduct, b"state", b"", &mut OsRng)?;
//!
//! // A newer version signed by the same key, with the same product id, reads it.
//! let v2 = SealingIdentity { code_hash: [9; 32], revocation_level: 2, ..v1 };
//! let unsealed = unseal(&platform_secret, &v2, &blob, b"")?;
//! assert_eq!(&unsealed.plaintext[..], b"state");
//! assert_eq!(unsealed.policy, SealingPolicy::SignerAndProduct);
//!
//! // What v2 seals, the older v1 cannot read.
//! let newer = seal(&platform_secret, &v2, SealingPolicy::SignerAndProduct, b"new", b"", &mut OsRng)?;
//! assert!(unseal(&platform_secret, &v1, &newer, b"").is_err());
//! # Ok::<(), conclave_core::sealing::SealingError>(())
//! ```

use core::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The five bytes a sealed blob starts with.
pub const SEALED_MAGIC: [u8; 5] = *b"CSEAL";
/// The blob format version this code writes and reads.
pub const SEALED_VERSION: u16 = 2;

/// Length of the key id stored in clear in each blob.
const KEY_ID_LEN: usize = 16;
/// AES-GCM's standard nonce length. Random nonces are safe here: a key seals
/// far fewer than 2^32 blobs over its life (one per enclave call at most).
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Magic, version, policy, level, key id: the part of the header that is also associated data.
const AAD_HEADER_LEN: usize = SEALED_MAGIC.len() + 2 + 1 + 2 + KEY_ID_LEN;
/// Where the key id starts.
const KEY_ID_AT: usize = AAD_HEADER_LEN - KEY_ID_LEN;
const HEADER_LEN: usize = AAD_HEADER_LEN + NONCE_LEN;

/// HKDF salt: names the purpose and the format version, so keys for another
/// purpose or a future format never coincide with these.
const HKDF_SALT: &[u8] = b"conclave-sealing-v2";
/// HKDF info prefixes. Distinct labels make the key id independent of the key:
/// publishing the id tells nothing about the key.
const KEY_LABEL: &[u8] = b"conclave seal key\0";
const KEY_ID_LABEL: &[u8] = b"conclave seal key id\0";

/// Which part of an enclave's identity a sealing key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealingPolicy {
    /// Only an enclave with exactly the same code hash can unseal. An upgrade
    /// of the enclave cannot read the data.
    CodeHash,
    /// Any enclave signed by the same key (same code-signing key hash) with the
    /// same product id can unseal, so a newer signed version reads data an
    /// older one sealed. The signer is trusted with all its future versions.
    SignerAndProduct,
}

impl SealingPolicy {
    /// The byte that names the policy in a blob and in key derivation.
    const fn tag(self) -> u8 {
        match self {
            Self::CodeHash => 1,
            Self::SignerAndProduct => 2,
        }
    }

    const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::CodeHash),
            2 => Some(Self::SignerAndProduct),
            _ => None,
        }
    }
}

impl fmt::Display for SealingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CodeHash => "code hash",
            Self::SignerAndProduct => "signer and product",
        })
    }
}

/// The identity of the enclave that seals or unseals: what the platform
/// measured, not what the enclave claims.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealingIdentity {
    /// SHA-256 of the enclave binary.
    pub code_hash: [u8; 32],
    /// SHA-256 of the public key that signed the enclave.
    pub code_signing_key_hash: [u8; 32],
    /// The product id from the enclave's signature.
    pub product_id: u16,
    /// The revocation level from the enclave's signature.
    pub revocation_level: u16,
}

impl SealingIdentity {
    /// The bytes that select the key: the policy tag followed by the identity
    /// fields the policy binds to, in a fixed layout (each policy has its own
    /// length, and the tag comes first, so two selectors never collide).
    fn selector(&self, policy: SealingPolicy, level: u16) -> Vec<u8> {
        let mut selector = Vec::with_capacity(1 + 32 + 2 + 2);
        selector.push(policy.tag());
        match policy {
            SealingPolicy::CodeHash => selector.extend_from_slice(&self.code_hash),
            SealingPolicy::SignerAndProduct => {
                selector.extend_from_slice(&self.code_signing_key_hash);
                selector.extend_from_slice(&self.product_id.to_be_bytes());
                selector.extend_from_slice(&level.to_be_bytes());
            }
        }
        selector
    }

    /// The level a blob sealed by this identity under `policy` is bound to.
    fn level(&self, policy: SealingPolicy) -> u16 {
        match policy {
            SealingPolicy::CodeHash => 0,
            SealingPolicy::SignerAndProduct => self.revocation_level,
        }
    }
}

impl fmt::Debug for SealingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingIdentity")
            .field("code_hash", &hex::encode(self.code_hash))
            .field("code_signing_key_hash", &hex::encode(self.code_signing_key_hash))
            .field("product_id", &self.product_id)
            .field("revocation_level", &self.revocation_level)
            .finish()
    }
}

/// Data recovered by [`unseal`].
pub struct Unsealed {
    /// The plaintext; wiped from memory when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The policy the blob was sealed with.
    pub policy: SealingPolicy,
}

impl fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsealed").field("len", &self.plaintext.len()).field("policy", &self.policy).finish()
    }
}

/// Why sealing or unsealing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealingError {
    /// The bytes are not a sealed blob.
    #[error("malformed sealed blob: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The blob is of another format version.
    #[error("unsupported sealed blob version {found} (this code reads version {supported})")]
    UnsupportedVersion {
        /// The version found in the blob.
        found: u16,
        /// The version this code reads.
        supported: u16,
    },
    /// The key id in the blob is not the one this enclave derives for the
    /// blob's policy: another enclave identity sealed it (or the platform
    /// secret differs, e.g. another machine or a wiped data directory).
    #[error("sealed for another enclave identity or policy (policy {policy}; or another platform secret)")]
    WrongIdentity {
        /// The policy named in the blob.
        policy: SealingPolicy,
    },
    /// The blob was sealed under the signer policy by a higher revocation
    /// level than this enclave's: an older build must not read what a newer
    /// one sealed.
    #[error("sealed by revocation level {sealed}, newer than this enclave's level {own}: refusing to unseal")]
    NewerRevocationLevel {
        /// The level the blob is bound to.
        sealed: u16,
        /// This enclave's level.
        own: u16,
    },
    /// The key matched but the ciphertext, header or associated data was changed.
    #[error("sealed blob failed authentication: it was altered or the associated data differs")]
    AuthenticationFailed,
    /// AES-GCM refused to encrypt: the plaintext exceeds its limit (64 GiB).
    #[error("sealing failed: plaintext too large")]
    PlaintextTooLarge,
}

/// A key derived for one policy and identity; both halves are wiped on drop.
struct DerivedKey {
    key: Zeroizing<[u8; 32]>,
    id: [u8; KEY_ID_LEN],
}

fn derive(platform_secret: &[u8; 32], identity: &SealingIdentity, policy: SealingPolicy, level: u16) -> DerivedKey {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), platform_secret);
    let selector = identity.selector(policy, level);
    let mut key = Zeroizing::new([0u8; 32]);
    let mut id = [0u8; KEY_ID_LEN];
    // Cannot fail: HKDF-SHA256 produces up to 8160 bytes.
    hkdf.expand_multi_info(&[KEY_LABEL, &selector], &mut key[..]).expect("32 bytes is a valid HKDF-SHA256 length");
    hkdf.expand_multi_info(&[KEY_ID_LABEL, &selector], &mut id).expect("16 bytes is a valid HKDF-SHA256 length");
    DerivedKey { key, id }
}

/// The associated data: the blob's header up to the key id, then the caller's.
fn associated_data(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_HEADER_LEN + aad.len());
    out.extend_from_slice(&header[..AAD_HEADER_LEN]);
    out.extend_from_slice(aad);
    out
}

/// Seals `plaintext` for the enclave identity `identity` under `policy`.
///
/// `aad` is bound to the blob but not stored in it: [`unseal`] must be given
/// the same bytes (pass `b""` if there are none). The nonce comes from `rng`.
pub fn seal(
    platform_secret: &[u8; 32],
    identity: &SealingIdentity,
    policy: SealingPolicy,
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, SealingError> {
    let level = identity.level(policy);
    let derived = derive(platform_secret, identity, policy, level);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);

    let mut blob = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    blob.extend_from_slice(&SEALED_MAGIC);
    blob.extend_from_slice(&SEALED_VERSION.to_be_bytes());
    blob.push(policy.tag());
    blob.extend_from_slice(&level.to_be_bytes());
    blob.extend_from_slice(&derived.id);
    blob.extend_from_slice(&nonce);

    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&derived.key[..]));
    let ad = associated_data(&blob, aad);
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &ad })
        .map_err(|_| SealingError::PlaintextTooLarge)?;
    blob.extend_from_slice(&ciphertext);
    Ok(blob)
}

/// Unseals a blob made by [`seal`], as the enclave identity `identity`.
///
/// The policy is read from the blob; the key is derived from the fields of
/// `identity` that policy selects. `aad` must equal the bytes given to [`seal`].
pub fn unseal(
    platform_secret: &[u8; 32],
    identity: &SealingIdentity,
    blob: &[u8],
    aad: &[u8],
) -> Result<Unsealed, SealingError> {
    // Check the fields in order, so the error names the first thing wrong.
    let magic = blob.get(..SEALED_MAGIC.len()).ok_or(SealingError::Malformed { reason: "too short for the magic" })?;
    if magic != SEALED_MAGIC {
        return Err(SealingError::Malformed { reason: "does not start with \"CSEAL\"" });
    }
    let version = blob
        .get(5..7)
        .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
        .ok_or(SealingError::Malformed { reason: "too short for the version" })?;
    if version != SEALED_VERSION {
        return Err(SealingError::UnsupportedVersion { found: version, supported: SEALED_VERSION });
    }
    if blob.len() < HEADER_LEN + TAG_LEN {
        return Err(SealingError::Malformed { reason: "shorter than the header and tag" });
    }
    let policy = SealingPolicy::from_tag(blob[7]).ok_or(SealingError::Malformed { reason: "unknown policy" })?;
    let (header, ciphertext) = blob.split_at(HEADER_LEN);
    let level = u16::from_be_bytes([header[8], header[9]]);
    let key_id = &header[KEY_ID_AT..AAD_HEADER_LEN];
    let nonce = &header[AAD_HEADER_LEN..];
    match policy {
        SealingPolicy::CodeHash if level != 0 => {
            return Err(SealingError::Malformed { reason: "a code-hash blob names a revocation level" });
        }
        SealingPolicy::SignerAndProduct if level > identity.revocation_level => {
            return Err(SealingError::NewerRevocationLevel { sealed: level, own: identity.revocation_level });
        }
        _ => {}
    }

    let derived = derive(platform_secret, identity, policy, level);
    // The key id is public, so a plain comparison leaks nothing worth a
    // constant-time one.
    if key_id != derived.id {
        return Err(SealingError::WrongIdentity { policy });
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&derived.key[..]));
    let ad = associated_data(header, aad);
    let plaintext = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &ad })
        .map_err(|_| SealingError::AuthenticationFailed)?;
    Ok(Unsealed { plaintext: Zeroizing::new(plaintext), policy })
}

/// A platform secret and an enclave identity, held together so the enclave
/// runtime can seal and unseal without passing both around.
pub struct Sealer {
    platform_secret: Zeroizing<[u8; 32]>,
    identity: SealingIdentity,
}

impl Sealer {
    /// Holds `platform_secret` (wiped on drop) for `identity`.
    pub fn new(platform_secret: [u8; 32], identity: SealingIdentity) -> Self {
        Self { platform_secret: Zeroizing::new(platform_secret), identity }
    }

    /// The identity this sealer seals for.
    pub fn identity(&self) -> &SealingIdentity {
        &self.identity
    }

    /// Seals `plaintext` under `policy`; see [`seal`].
    pub fn seal(
        &self,
        policy: SealingPolicy,
        plaintext: &[u8],
        aad: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, SealingError> {
        seal(&self.platform_secret, &self.identity, policy, plaintext, aad, rng)
    }

    /// Unseals `blob`; see [`unseal`].
    pub fn unseal(&self, blob: &[u8], aad: &[u8]) -> Result<Unsealed, SealingError> {
        unseal(&self.platform_secret, &self.identity, blob, aad)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("platform_secret", &"<redacted>").field("identity", &self.identity).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{OsRng, impls};

    const SECRET: [u8; 32] = [0x5a; 32];
    const IDENTITY: SealingIdentity = SealingIdentity {
        code_hash: [0x11; 32],
        code_signing_key_hash: [0x22; 32],
        product_id: 7,
        revocation_level: 3,
    };
    const POLICIES: [SealingPolicy; 2] = [SealingPolicy::CodeHash, SealingPolicy::SignerAndProduct];

    /// A "random" source that returns a fixed byte, for a known-answer test.
    struct FixedRng(u8);

    impl RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for FixedRng {}

    fn sealed(policy: SealingPolicy) -> Vec<u8> {
        seal(&SECRET, &IDENTITY, policy, b"the enclave's state", b"aad", &mut OsRng).unwrap()
    }

    #[test]
    fn round_trip_under_both_policies() {
        for policy in POLICIES {
            let blob = sealed(policy);
            assert_eq!(blob.len(), HEADER_LEN + b"the enclave's state".len() + TAG_LEN);
            let unsealed = unseal(&SECRET, &IDENTITY, &blob, b"aad").unwrap();
            assert_eq!(&unsealed.plaintext[..], b"the enclave's state");
            assert_eq!(unsealed.policy, policy);
        }
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let blob = seal(&SECRET, &IDENTITY, SealingPolicy::CodeHash, b"", b"", &mut OsRng).unwrap();
        assert!(unseal(&SECRET, &IDENTITY, &blob, b"").unwrap().plaintext.is_empty());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        assert_ne!(sealed(SealingPolicy::CodeHash), sealed(SealingPolicy::CodeHash));
    }

    #[test]
    fn signer_and_product_survives_a_new_code_hash_but_code_hash_does_not() {
        let upgraded = SealingIdentity { code_hash: [0x99; 32], ..IDENTITY };
        let blob = sealed(SealingPolicy::SignerAndProduct);
        assert_eq!(&unseal(&SECRET, &upgraded, &blob, b"aad").unwrap().plaintext[..], b"the enclave's state");

        let blob = sealed(SealingPolicy::CodeHash);
        assert_eq!(
            unseal(&SECRET, &upgraded, &blob, b"aad").unwrap_err(),
            SealingError::WrongIdentity { policy: SealingPolicy::CodeHash }
        );
    }

    #[test]
    fn a_lower_revocation_level_cannot_unseal_what_a_higher_one_sealed() {
        let blob = sealed(SealingPolicy::SignerAndProduct);
        let older = SealingIdentity { revocation_level: 2, code_hash: [0x98; 32], ..IDENTITY };
        assert_eq!(
            unseal(&SECRET, &older, &blob, b"aad").unwrap_err(),
            SealingError::NewerRevocationLevel { sealed: 3, own: 2 }
        );
        // A newer level reads it, and what it seals is bound to its own level.
        let newer = SealingIdentity { revocation_level: 4, code_hash: [0x99; 32], ..IDENTITY };
        assert!(unseal(&SECRET, &newer, &blob, b"aad").is_ok());
        let resealed = seal(&SECRET, &newer, SealingPolicy::SignerAndProduct, b"x", b"", &mut OsRng).unwrap();
        assert!(unseal(&SECRET, &IDENTITY, &resealed, b"").is_err());
        // Lowering the level field in the blob does not help: the key id and the tag bind it.
        let mut lowered = blob.clone();
        lowered[8..10].copy_from_slice(&2u16.to_be_bytes());
        assert!(unseal(&SECRET, &older, &lowered, b"aad").is_err());
        // The code-hash policy ignores levels: the code is the same.
        let by_code = sealed(SealingPolicy::CodeHash);
        let relevelled = SealingIdentity { revocation_level: 0, ..IDENTITY };
        assert!(unseal(&SECRET, &relevelled, &by_code, b"aad").is_ok());
    }

    #[test]
    fn code_hash_ignores_signer_and_product() {
        // The code hash alone selects the key: the same binary re-signed (or
        // with another product id in its signature) still reads its data.
        let resigned = SealingIdentity { code_signing_key_hash: [0x33; 32], product_id: 8, ..IDENTITY };
        let blob = sealed(SealingPolicy::CodeHash);
        assert!(unseal(&SECRET, &resigned, &blob, b"aad").is_ok());
    }

    #[test]
    fn another_product_or_signer_cannot_unseal() {
        let blob = sealed(SealingPolicy::SignerAndProduct);
        let others = [
            SealingIdentity { product_id: 8, ..IDENTITY },
            SealingIdentity { code_signing_key_hash: [0x33; 32], ..IDENTITY },
        ];
        for other in others {
            assert_eq!(
                unseal(&SECRET, &other, &blob, b"aad").unwrap_err(),
                SealingError::WrongIdentity { policy: SealingPolicy::SignerAndProduct }
            );
        }
    }

    #[test]
    fn wrong_platform_secret_fails() {
        for policy in POLICIES {
            let blob = sealed(policy);
            assert_eq!(
                unseal(&[0xa5; 32], &IDENTITY, &blob, b"aad").unwrap_err(),
                SealingError::WrongIdentity { policy }
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        for policy in POLICIES {
            let blob = sealed(policy);
            for index in 0..blob.len() {
                for bit in 0..8 {
                    let mut tampered = blob.clone();
                    tampered[index] ^= 1 << bit;
                    let error = unseal(&SECRET, &IDENTITY, &tampered, b"aad").unwrap_err();
                    // Which error depends on the field hit; the nonce and the
                    // ciphertext can only be caught by the AEAD tag.
                    let expected_kind = match index {
                        0..5 => matches!(error, SealingError::Malformed { .. }),
                        5..7 => matches!(error, SealingError::UnsupportedVersion { .. }),
                        7 => matches!(error, SealingError::Malformed { .. } | SealingError::WrongIdentity { .. }),
                        8..10 => matches!(
                            error,
                            SealingError::Malformed { .. }
                                | SealingError::NewerRevocationLevel { .. }
                                | SealingError::WrongIdentity { .. }
                        ),
                        10..26 => matches!(error, SealingError::WrongIdentity { .. }),
                        _ => error == SealingError::AuthenticationFailed,
                    };
                    assert!(expected_kind, "byte {index} bit {bit}: {error:?}");
                }
            }
        }
    }

    #[test]
    fn other_associated_data_fails_authentication() {
        let blob = sealed(SealingPolicy::CodeHash);
        assert_eq!(unseal(&SECRET, &IDENTITY, &blob, b"aae").unwrap_err(), SealingError::AuthenticationFailed);
        assert_eq!(unseal(&SECRET, &IDENTITY, &blob, b"").unwrap_err(), SealingError::AuthenticationFailed);
    }

    #[test]
    fn truncated_blobs_are_malformed() {
        let blob = sealed(SealingPolicy::CodeHash);
        // Cutting into the header or the tag leaves too few bytes to be a blob;
        // cutting only ciphertext is caught by the tag.
        for len in [0, 4, 8, HEADER_LEN, HEADER_LEN + TAG_LEN - 1] {
            let error = unseal(&SECRET, &IDENTITY, &blob[..len], b"aad").unwrap_err();
            assert!(matches!(error, SealingError::Malformed { .. }), "length {len}: {error:?}");
        }
        let error = unseal(&SECRET, &IDENTITY, &blob[..blob.len() - 1], b"aad").unwrap_err();
        assert_eq!(error, SealingError::AuthenticationFailed);
    }

    #[test]
    fn another_version_is_named() {
        let mut blob = sealed(SealingPolicy::CodeHash);
        blob[5..7].copy_from_slice(&1u16.to_be_bytes());
        let error = unseal(&SECRET, &IDENTITY, &blob, b"aad").unwrap_err();
        assert_eq!(error, SealingError::UnsupportedVersion { found: 1, supported: 2 });
        assert_eq!(error.to_string(), "unsupported sealed blob version 1 (this code reads version 2)");
    }

    #[test]
    fn sealer_holds_secret_and_identity_and_redacts_debug() {
        let sealer = Sealer::new(SECRET, IDENTITY);
        let blob = sealer.seal(SealingPolicy::SignerAndProduct, b"kept", b"", &mut OsRng).unwrap();
        assert_eq!(&sealer.unseal(&blob, b"").unwrap().plaintext[..], b"kept");
        assert_eq!(&unseal(&SECRET, &IDENTITY, &blob, b"").unwrap().plaintext[..], b"kept");

        let debug = format!("{sealer:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains(&hex::encode(SECRET)) && !debug.contains("90, 90"), "{debug}");
        let unsealed = format!("{:?}", sealer.unseal(&blob, b"").unwrap());
        assert!(!unsealed.contains("107, 101"), "plaintext leaked into Debug: {unsealed}");
    }

    /// Freezes the format and the key derivation: a blob sealed by version 2
    /// must unseal with every later build, and `seal` must keep producing it.
    #[test]
    fn known_answer_blob() {
        const KNOWN: &str = KNOWN_ANSWER_HEX;
        let blob =
            seal(&SECRET, &IDENTITY, SealingPolicy::SignerAndProduct, b"known", b"aad", &mut FixedRng(0x42)).unwrap();
        assert_eq!(hex::encode(&blob), KNOWN);
        let unsealed = unseal(&SECRET, &IDENTITY, &hex::decode(KNOWN).unwrap(), b"aad").unwrap();
        assert_eq!(&unsealed.plaintext[..], b"known");
    }

    /// Computed independently with Python's `cryptography` package (HKDF-SHA256,
    /// AES-GCM) from the layout in the module docs, not by this code.
    const KNOWN_ANSWER_HEX: &str = concat!(
        "435345414c0002020003",
        "82cfe9e22be32734849f5dd6f1e77edb",
        "424242424242424242424242",
        "2ca94cf1f9bd2588bc152c37cd80b93e12d79e77ae",
    );
}
