//! The enclave signing format: who vouches for an enclave binary.
//!
//! A simulation enclave ships as a binary plus a signature file. The host
//! measures the binary ([`code_hash`], SHA-256 of its bytes), decodes the
//! signature file ([`EnclaveSignature::decode`]) and checks that the signer's
//! Ed25519 signature covers exactly that code hash
//! ([`EnclaveSignature::verify`]). The signer's identity that enclave
//! constraints and sealing policies refer to is the SHA-256 of the signer's
//! public key ([`EnclaveSignature::signer_key_hash`]), the equivalent of SGX's
//! MRSIGNER.
//!
//! ```text
//!   enclave binary ──SHA-256──► code hash ─┐
//!                                          ├─► verify ──► (code hash, signer key hash,
//!   signature file ──decode──► signature ──┘                product id, revocation level)
//! ```
//!
//! Everything here works on bytes: reading the files is the caller's job.
//!
//! # Signature file layout (version 1, 142 bytes, integers big-endian)
//!
//! | offset | size | field                                  |
//! |-------:|-----:|----------------------------------------|
//! |      0 |    8 | magic `b"CNCLSIG\0"`                   |
//! |      8 |    2 | format version, `1`                    |
//! |     10 |   32 | code hash (SHA-256 of the binary)      |
//! |     42 |    2 | product id                             |
//! |     44 |    2 | revocation level                       |
//! |     46 |   32 | signer's Ed25519 public key            |
//! |     78 |   64 | Ed25519 signature                      |
//!
//! The signed message is [`SIGNING_DOMAIN`] followed by the version, the code
//! hash, the product id and the revocation level, encoded as above. The domain
//! string keeps a signature made for anything else with the same key from ever
//! passing as an enclave signature.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The magic bytes that open a signature file.
pub const MAGIC: [u8; 8] = *b"CNCLSIG\0";

/// The signature file format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// The domain-separation prefix of the message an enclave signer signs.
pub const SIGNING_DOMAIN: &[u8] = b"conclave-enclave-signature-v1\0";

/// The tag that opens a signing-key file, followed by the format version.
const KEY_TAG_PREFIX: &str = "conclave-enclave-signing-key-v";

/// The signing-key file format version this code writes and reads.
const KEY_FORMAT_VERSION: u16 = 1;

/// Length of an encoded version 1 signature file.
pub const ENCODED_LEN: usize = 8 + 2 + 32 + 2 + 2 + 32 + 64;

/// Why an enclave signature or a signing key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The bytes do not follow the format; `what` names the part that is wrong.
    #[error("malformed enclave signature: {what}")]
    Malformed {
        /// The part of the input that is wrong.
        what: &'static str,
    },
    /// A signing-key file does not follow its format.
    #[error("malformed enclave-signing key: {what}")]
    MalformedKey {
        /// What is wrong.
        what: &'static str,
    },
    /// The input was written in a format version this code does not read.
    #[error("unsupported signature format version {found}, this build supports version {supported}")]
    UnsupportedVersion {
        /// The version found in the input.
        found: u16,
        /// The version this code reads.
        supported: u16,
    },
    /// The Ed25519 signature does not verify under the signer's public key.
    #[error("enclave signature does not verify under the signer's key")]
    BadSignature,
    /// The signature is valid but for a different binary.
    #[error(
        "code hash mismatch: signed {}, binary is {}; the binary changed after signing, re-sign it",
        hex::encode(.expected),
        hex::encode(.actual)
    )]
    CodeHashMismatch {
        /// The code hash the signer signed.
        expected: [u8; 32],
        /// The code hash of the binary being loaded.
        actual: [u8; 32],
    },
}

/// Returns the code hash of an enclave binary: the SHA-256 of the file's bytes.
pub fn code_hash(binary: &[u8]) -> [u8; 32] {
    Sha256::digest(binary).into()
}

/// A signer's statement that an enclave binary with a given code hash is its
/// product `product_id` at revocation level `revocation_level`.
///
/// Holding an `EnclaveSignature` does not mean it is valid: call
/// [`verify`](Self::verify) with the hash of the binary about to be run.
#[derive(Clone, PartialEq, Eq)]
pub struct EnclaveSignature {
    code_hash: [u8; 32],
    product_id: u16,
    revocation_level: u16,
    signer_public_key: [u8; 32],
    signature: [u8; 64],
}

impl EnclaveSignature {
    /// Signs `code_hash` as product `product_id` at `revocation_level`.
    pub fn sign(signing_key: &SigningKey, code_hash: [u8; 32], product_id: u16, revocation_level: u16) -> Self {
        let message = signed_message(&code_hash, product_id, revocation_level);
        let signature = signing_key.sign(&message);
        Self {
            code_hash,
            product_id,
            revocation_level,
            signer_public_key: signing_key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }

    /// Encodes the signature file (see the [module documentation](self) for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.code_hash);
        out.extend_from_slice(&self.product_id.to_be_bytes());
        out.extend_from_slice(&self.revocation_level.to_be_bytes());
        out.extend_from_slice(&self.signer_public_key);
        out.extend_from_slice(&self.signature);
        debug_assert_eq!(out.len(), ENCODED_LEN);
        out
    }

    /// Decodes a signature file. This checks the format only: call
    /// [`verify`](Self::verify) before trusting the result.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignatureError> {
        let mut reader = Reader(bytes);
        let magic: [u8; 8] = reader.take("truncated before the magic bytes")?;
        if magic != MAGIC {
            return Err(SignatureError::Malformed { what: "not an enclave signature file (wrong magic bytes)" });
        }
        let version = u16::from_be_bytes(reader.take("truncated before the version")?);
        if version != FORMAT_VERSION {
            return Err(SignatureError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let code_hash = reader.take("truncated in the code hash")?;
        let product_id = u16::from_be_bytes(reader.take("truncated in the product id")?);
        let revocation_level = u16::from_be_bytes(reader.take("truncated in the revocation level")?);
        let signer_public_key = reader.take("truncated in the signer's public key")?;
        let signature = reader.take("truncated in the signature")?;
        if !reader.0.is_empty() {
            return Err(SignatureError::Malformed { what: "trailing bytes after the signature" });
        }
        Ok(Self { code_hash, product_id, revocation_level, signer_public_key, signature })
    }

    /// Checks the Ed25519 signature, then that it was made for `actual_code_hash`,
    /// the hash of the binary about to be run.
    ///
    /// Verification is strict (`verify_strict`): weak public keys and
    /// non-canonical signatures are rejected, so one signed statement has one
    /// encoding.
    pub fn verify(&self, actual_code_hash: &[u8; 32]) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.signer_public_key).map_err(|_| SignatureError::BadSignature)?;
        let signature = Signature::from_bytes(&self.signature);
        let message = signed_message(&self.code_hash, self.product_id, self.revocation_level);
        key.verify_strict(&message, &signature).map_err(|_| SignatureError::BadSignature)?;
        if &self.code_hash != actual_code_hash {
            return Err(SignatureError::CodeHashMismatch { expected: self.code_hash, actual: *actual_code_hash });
        }
        Ok(())
    }

    /// The code-signing key hash: SHA-256 of the signer's public key bytes.
    /// This is the signer identity constraints and sealing policies name.
    pub fn signer_key_hash(&self) -> [u8; 32] {
        Sha256::digest(self.signer_public_key).into()
    }

    /// The code hash the signer signed.
    pub fn code_hash(&self) -> &[u8; 32] {
        &self.code_hash
    }

    /// The signer's product id for this enclave.
    pub fn product_id(&self) -> u16 {
        self.product_id
    }

    /// The revocation level: the signer raises it when older builds must no
    /// longer be trusted.
    pub fn revocation_level(&self) -> u16 {
        self.revocation_level
    }

    /// The signer's Ed25519 public key.
    pub fn signer_public_key(&self) -> &[u8; 32] {
        &self.signer_public_key
    }
}

impl fmt::Debug for EnclaveSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnclaveSignature")
            .field("code_hash", &hex::encode(self.code_hash))
            .field("product_id", &self.product_id)
            .field("revocation_level", &self.revocation_level)
            .field("signer_public_key", &hex::encode(self.signer_public_key))
            .field("signature", &hex::encode(self.signature))
            .finish()
    }
}

/// The message an enclave signer signs: the domain string, then the version
/// and the signed fields in their file encoding.
fn signed_message(code_hash: &[u8; 32], product_id: u16, revocation_level: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_DOMAIN.len() + 2 + 32 + 2 + 2);
    message.extend_from_slice(SIGNING_DOMAIN);
    message.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    message.extend_from_slice(code_hash);
    message.extend_from_slice(&product_id.to_be_bytes());
    message.extend_from_slice(&revocation_level.to_be_bytes());
    message
}

/// A cursor over the signature file that names what was cut short.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SignatureError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(SignatureError::Malformed { what })?;
        self.0 = rest;
        Ok(*head)
    }
}

/// A signing key encoded as text by [`encode_signing_key`]: the secret itself.
///
/// Write it to a file only the signer can read ([`as_str`](Self::as_str) or
/// `AsRef<[u8]>`). Its `Debug` output is redacted and the text is wiped from
/// memory when dropped.
pub struct SigningKeyText(Zeroizing<String>);

impl SigningKeyText {
    /// The key line, `conclave-enclave-signing-key-v1 <64 lowercase hex digits>`,
    /// without a trailing newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for SigningKeyText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SigningKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKeyText(<redacted>)")
    }
}

/// Encodes an enclave signing key as one line of text:
/// `conclave-enclave-signing-key-v1 <64 lowercase hex digits>`, no newline.
pub fn encode_signing_key(signing_key: &SigningKey) -> SigningKeyText {
    let secret = Zeroizing::new(signing_key.to_bytes());
    let mut hex_digits = Zeroizing::new([0u8; 64]);
    // Cannot fail: the output buffer is exactly twice the input length.
    hex::encode_to_slice(*secret, &mut *hex_digits).expect("64 bytes hold 32 bytes in hex");
    let mut line = Zeroizing::new(String::with_capacity(KEY_TAG_PREFIX.len() + 2 + 64));
    line.push_str(KEY_TAG_PREFIX);
    line.push_str(&KEY_FORMAT_VERSION.to_string());
    line.push(' ');
    for &digit in hex_digits.iter() {
        line.push(char::from(digit));
    }
    SigningKeyText(line)
}

/// Decodes a signing key written by [`encode_signing_key`]. Surrounding
/// whitespace (a trailing newline) is ignored. Errors never quote the input,
/// which may be a secret.
pub fn decode_signing_key(text: &str) -> Result<SigningKey, SignatureError> {
    const MALFORMED: SignatureError = SignatureError::MalformedKey {
        what: "a key file is one line 'conclave-enclave-signing-key-v1 <64 hex digits>' (make one with `conclave keygen`)",
    };
    let (tag, hex_key) = text.trim().split_once(' ').ok_or(MALFORMED)?;
    let version: u16 = tag.strip_prefix(KEY_TAG_PREFIX).and_then(|v| v.parse().ok()).ok_or(MALFORMED)?;
    if version != KEY_FORMAT_VERSION {
        return Err(SignatureError::UnsupportedVersion { found: version, supported: KEY_FORMAT_VERSION });
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_key.trim(), &mut *secret)
        .map_err(|_| SignatureError::MalformedKey { what: "the key must be 64 hex digits" })?;
    Ok(SigningKey::from_bytes(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn signed() -> (SigningKey, [u8; 32], EnclaveSignature) {
        let key = SigningKey::generate(&mut OsRng);
        let hash = code_hash(b"an enclave binary");
        let signature = EnclaveSignature::sign(&key, hash, 7, 3);
        (key, hash, signature)
    }

    #[test]
    fn code_hash_is_sha256_of_the_bytes() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(hex::encode(code_hash(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn round_trip_verifies() {
        let (key, hash, signature) = signed();
        let bytes = signature.encode();
        assert_eq!(bytes.len(), ENCODED_LEN);
        assert_eq!(&bytes[..8], b"CNCLSIG\0");
        assert_eq!(&bytes[8..10], &[0, 1]);
        let decoded = EnclaveSignature::decode(&bytes).unwrap();
        assert_eq!(decoded, signature);
        decoded.verify(&hash).unwrap();
        assert_eq!(decoded.code_hash(), &hash);
        assert_eq!(decoded.product_id(), 7);
        assert_eq!(decoded.revocation_level(), 3);
        assert_eq!(decoded.signer_public_key(), key.verifying_key().as_bytes());
        let expected_signer: [u8; 32] = Sha256::digest(key.verifying_key().as_bytes()).into();
        assert_eq!(decoded.signer_key_hash(), expected_signer);
    }

    #[test]
    fn layout_puts_fields_big_endian_at_documented_offsets() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let signature = EnclaveSignature::sign(&key, [0xab; 32], 0x0102, 0x0304);
        let bytes = signature.encode();
        assert_eq!(&bytes[10..42], &[0xab; 32]);
        assert_eq!(&bytes[42..44], &[0x01, 0x02]);
        assert_eq!(&bytes[44..46], &[0x03, 0x04]);
        assert_eq!(&bytes[46..78], key.verifying_key().as_bytes());
    }

    /// A single-bit change in any byte of the file is caught, by decode or by
    /// verify, and each region fails with the error that names it. (One bit
    /// per byte, at a position that cycles through 0..8, keeps the test fast
    /// in debug builds.)
    #[test]
    fn flipped_bit_in_any_field_is_rejected() {
        let (_, hash, signature) = signed();
        let bytes = signature.encode();
        for byte in 0..bytes.len() {
            let bit = byte * 8 + byte % 8;
            let mut tampered = bytes.clone();
            tampered[byte] ^= 1 << (byte % 8);
            let outcome = EnclaveSignature::decode(&tampered).and_then(|s| s.verify(&hash));
            match byte {
                0..8 => {
                    assert!(matches!(outcome, Err(SignatureError::Malformed { .. })), "magic bit {bit}: {outcome:?}")
                }
                8..10 => assert!(
                    matches!(outcome, Err(SignatureError::UnsupportedVersion { supported: 1, .. })),
                    "version bit {bit}: {outcome:?}"
                ),
                // Code hash, product id, revocation level, public key and
                // signature are all covered by the signature check.
                _ => assert_eq!(outcome, Err(SignatureError::BadSignature), "bit {bit} in byte {byte}"),
            }
        }
    }

    #[test]
    fn wrong_code_hash_names_both_hashes() {
        let (_, hash, signature) = signed();
        let other = code_hash(b"a different binary");
        let err = signature.verify(&other).unwrap_err();
        assert_eq!(err, SignatureError::CodeHashMismatch { expected: hash, actual: other });
        let message = err.to_string();
        assert!(message.contains(&hex::encode(hash)), "{message}");
        assert!(message.contains(&hex::encode(other)), "{message}");
        assert!(message.contains("re-sign"), "{message}");
    }

    #[test]
    fn other_version_is_reported_with_both_numbers() {
        let (_, _, signature) = signed();
        let mut bytes = signature.encode();
        bytes[8..10].copy_from_slice(&2u16.to_be_bytes());
        let err = EnclaveSignature::decode(&bytes).unwrap_err();
        assert_eq!(err, SignatureError::UnsupportedVersion { found: 2, supported: 1 });
        assert_eq!(err.to_string(), "unsupported signature format version 2, this build supports version 1");
    }

    #[test]
    fn truncated_and_extended_files_are_malformed() {
        let (_, _, signature) = signed();
        let bytes = signature.encode();
        for len in 0..bytes.len() {
            assert!(
                matches!(EnclaveSignature::decode(&bytes[..len]), Err(SignatureError::Malformed { .. })),
                "length {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            EnclaveSignature::decode(&longer),
            Err(SignatureError::Malformed { what: "trailing bytes after the signature" })
        );
    }

    #[test]
    fn signature_by_another_key_does_not_verify() {
        let (_, hash, signature) = signed();
        let mut bytes = signature.encode();
        let other = SigningKey::generate(&mut OsRng);
        bytes[46..78].copy_from_slice(other.verifying_key().as_bytes());
        let decoded = EnclaveSignature::decode(&bytes).unwrap();
        assert_eq!(decoded.verify(&hash), Err(SignatureError::BadSignature));
    }

    #[test]
    fn signing_key_text_round_trips_and_tolerates_newline() {
        let key = SigningKey::generate(&mut OsRng);
        let text = encode_signing_key(&key);
        let text = text.as_str();
        assert!(text.starts_with("conclave-enclave-signing-key-v1 "), "tag");
        assert_eq!(text.len(), "conclave-enclave-signing-key-v1 ".len() + 64);
        let decoded = decode_signing_key(&format!("{text}\n")).unwrap();
        assert_eq!(decoded.to_bytes(), key.to_bytes());
    }

    #[test]
    fn bad_signing_key_text_is_rejected_without_echoing_it() {
        let key = SigningKey::generate(&mut OsRng);
        let hex_secret = hex::encode(key.to_bytes());
        let cases = [
            String::new(),
            hex_secret.clone(),
            format!("conclave-enclave-signing-key-vX {hex_secret}"),
            format!("some-other-key-v1 {hex_secret}"),
            format!("conclave-enclave-signing-key-v1 {}", &hex_secret[..62]),
            format!("conclave-enclave-signing-key-v1 {hex_secret}00"),
            format!("conclave-enclave-signing-key-v1 {}zz", &hex_secret[..62]),
        ];
        for case in cases {
            let err = decode_signing_key(&case).unwrap_err();
            assert!(matches!(err, SignatureError::MalformedKey { .. }), "{case:?}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&hex_secret[..16]), "leaks secret: {shown}");
        }
        assert_eq!(
            decode_signing_key(&format!("conclave-enclave-signing-key-v2 {hex_secret}")).unwrap_err(),
            SignatureError::UnsupportedVersion { found: 2, supported: 1 }
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = SigningKey::generate(&mut OsRng);
        let hex_secret = hex::encode(key.to_bytes());
        let text = encode_signing_key(&key);
        assert!(text.as_str().ends_with(&hex_secret));
        let shown = format!("{text:?} {key:?}");
        assert!(!shown.contains(&hex_secret), "{shown}");
        assert!(!shown.contains(&format!("{:?}", key.to_bytes())), "{shown}");
    }
}
