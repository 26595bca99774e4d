//! Key types: the X25519 keys mail is encrypted to and from, and helpers for
//! the Ed25519 data-signing key.
//!
//! Secrets never appear in `Debug` output.

use core::fmt;

use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};
use zeroize::ZeroizeOnDrop;

/// An X25519 public key: the address mail is encrypted to, and the
/// authenticated identity of a mail's sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses a public key from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// As lowercase hex, so keys read well in JSON and can key a JSON map.
impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        hex::decode(text.as_ref())
            .ok()
            .and_then(|bytes| Self::from_slice(&bytes))
            .ok_or_else(|| serde::de::Error::custom("a public key is 64 hex digits"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An X25519 private key. Zeroized on drop; `Debug` shows only the public half.
#[derive(Clone, ZeroizeOnDrop)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// Generates a fresh key from the given random source.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let secret = StaticSecret::random_from_rng(rng);
        Self(secret.to_bytes())
    }

    /// Wraps 32 raw bytes (clamping happens inside X25519).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw secret bytes. Handle with care: this is the key.
    pub const fn secret_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let secret = StaticSecret::from(self.0);
        PublicKey(DalekPublic::from(&secret).to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public: {}, secret: <redacted>)", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = PrivateKey::from_bytes([7u8; 32]);
        let text = format!("{key:?}");
        assert!(!text.contains(&hex::encode([7u8; 32])));
        assert!(text.contains("redacted"));
    }

    #[test]
    fn public_keys_serialise_as_hex() {
        let key = PublicKey::from_bytes([0xAB; 32]);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PublicKey>("\"abcd\"").is_err());
    }

    #[test]
    fn public_key_is_deterministic() {
        let key = PrivateKey::generate(&mut OsRng);
        assert_eq!(key.public_key(), key.clone().public_key());
        assert_ne!(key.public_key(), PrivateKey::generate(&mut OsRng).public_key());
    }
}
