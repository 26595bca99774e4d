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

    /// Whether this is a low-order X25519 point (on the curve or its twist,
    /// in any encoding): every Diffie-Hellman with it gives the all-zero
    /// secret, so mail to it is readable by anyone and mail from it proves
    /// nothing. Costs one scalar multiplication; callers that see the same
    /// key often should remember the answer.
    pub fn is_low_order(&self) -> bool {
        // A clamped scalar is a multiple of the cofactor, so it sends exactly
        // the small-order points (and no others) to the identity.
        let probe = StaticSecret::from([0x5a; 32]);
        !probe.diffie_hellman(&DalekPublic::from(self.0)).was_contributory()
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
    fn low_order_points_are_recognised() {
        // u = 0, u = 1, and u = p - 1 (order 1, 4 and 2); p and p + 1 are
        // non-canonical encodings of 0 and 1; the top bit is ignored.
        let mut p_minus_1 = [0xff; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        let mut p = p_minus_1;
        p[0] = 0xed;
        let mut zero_high_bit = [0u8; 32];
        zero_high_bit[31] = 0x80;
        let mut one = [0u8; 32];
        one[0] = 1;
        // The two points of order 8.
        let order8 = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
        let a = order8("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        let b = order8("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157");
        for low in [[0u8; 32], one, p_minus_1, p, zero_high_bit, a, b] {
            assert!(PublicKey::from_bytes(low).is_low_order(), "{}", hex::encode(low));
        }
        for _ in 0..8 {
            assert!(!PrivateKey::generate(&mut OsRng).public_key().is_low_order());
        }
    }

    #[test]
    fn public_key_is_deterministic() {
        let key = PrivateKey::generate(&mut OsRng);
        assert_eq!(key.public_key(), key.clone().public_key());
        assert_ne!(key.public_key(), PrivateKey::generate(&mut OsRng).public_key());
    }
}
