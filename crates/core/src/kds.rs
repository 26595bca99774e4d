//! The key derivation service's protocol: what an enclave asks a KDS for,
//! what it gets back, and how the KDS derives a key. No IO.
//!
//! ```text
//!  enclave (at start)                           KDS enclave
//!  ─────────────────                            ───────────
//!  check the KDS's attestation against the constraint compiled into it
//!  mail(topic "kds") { KeyRequest { its own attestation, key specs } } ──►
//!                      verify the attestation, check it against each spec's policy,
//!                      key = HKDF(master, "conclave-kds-key-v1", canonical spec)
//!  ◄── reply { KeyResponse { keys } }  (or the application's refusal, naming the failing token)
//! ```
//!
//! Every instance of an enclave that satisfies a key specification's policy
//! gets the same key, on any machine: a mail key (so its encryption key is
//! the same at every start and on every host) and a persistence key (so its
//! sealed state opens anywhere). The exchange is ordinary mail, so it has
//! every property mail has: encrypted to the requester's attested key,
//! authenticated, sequence-checked.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::constraint::{ConstraintError, EnclaveConstraint};

/// The version of the KDS messages this code speaks.
pub const KDS_VERSION: u32 = 1;
/// The topic key requests are mailed on.
pub const KDS_TOPIC: &str = "kds";
/// The name of the key that becomes an enclave's mail (encryption) key.
pub const MAIL_KEY: &str = "conclave-mail-key";
/// The name of the key that becomes the root of an enclave's sealing keys.
pub const PERSISTENCE_KEY: &str = "conclave-persistence-key";

const HKDF_SALT: &[u8] = b"conclave-kds-v1";
const KEY_LABEL: &[u8] = b"conclave-kds-key-v1\0";

/// One key an enclave asks for: a name and the policy (a constraint) every
/// enclave that gets it must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    /// The key's name, e.g. [`MAIL_KEY`].
    pub name: String,
    /// The policy, in the constraint language.
    pub policy: String,
}

impl KeySpec {
    /// A spec whose policy is parsed (and so checked) now.
    pub fn new(name: &str, policy: &str) -> Result<Self, ConstraintError> {
        EnclaveConstraint::parse(policy)?;
        Ok(Self { name: name.to_owned(), policy: policy.to_owned() })
    }

    /// The canonical bytes the key is derived from: the name and the
    /// policy's canonical form, each with a length prefix, so two specs
    /// that differ in any way give different keys, and two ways of writing
    /// one policy give the same key.
    pub fn canonical(&self) -> Result<Vec<u8>, ConstraintError> {
        let policy = EnclaveConstraint::parse(&self.policy)?.to_string();
        let mut out = Vec::with_capacity(8 + self.name.len() + policy.len());
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&(policy.len() as u32).to_be_bytes());
        out.extend_from_slice(policy.as_bytes());
        Ok(out)
    }
}

/// What a KDS derives for a spec from its master key. Two KDS replicas that
/// hold the same master key derive the same keys.
pub fn derive_key(master: &[u8; 32], spec: &KeySpec) -> Result<Zeroizing<[u8; 32]>, ConstraintError> {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), master);
    let mut key = Zeroizing::new([0u8; 32]);
    // Cannot fail: HKDF-SHA256 produces up to 8160 bytes.
    hkdf.expand_multi_info(&[KEY_LABEL, &spec.canonical()?], &mut key[..])
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Ok(key)
}

/// The body of a key request mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// [`KDS_VERSION`].
    pub v: u32,
    /// The requesting enclave's encoded `EnclaveInstanceInfo`; its
    /// encryption key must be the mail's sender key.
    #[serde(with = "hex_bytes")]
    pub attestation: Vec<u8>,
    /// The keys it asks for.
    pub keys: Vec<KeySpec>,
}

/// One key in a response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedKey {
    /// The spec's name.
    pub name: String,
    /// The key.
    #[serde(with = "hex_key")]
    pub key: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuedKey").field("name", &self.name).field("key", &"<redacted>").finish()
    }
}

/// The body of the KDS's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyResponse {
    /// [`KDS_VERSION`].
    pub v: u32,
    /// The keys, in the order asked.
    pub keys: Vec<IssuedKey>,
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

mod hex_key {
    use zeroize::Zeroizing;
    pub(super) fn serialize<S: serde::Serializer>(v: &Zeroizing<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&v[..]))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<[u8; 32]>, D::Error> {
        let text = Zeroizing::new(<String as serde::Deserialize>::deserialize(d)?);
        let bytes = Zeroizing::new(hex::decode(text.as_str()).map_err(serde::de::Error::custom)?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| serde::de::Error::custom("a key is 32 bytes"))?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";

    #[test]
    fn keys_depend_on_master_name_and_policy_but_not_on_spelling() {
        let spec = KeySpec::new(MAIL_KEY, &format!("C:{CODE} SEC:INSECURE")).unwrap();
        let same = KeySpec::new(MAIL_KEY, &format!("  SEC:INSECURE C:{}", CODE.to_uppercase())).unwrap();
        let other_name = KeySpec::new(PERSISTENCE_KEY, &spec.policy).unwrap();
        let other_policy = KeySpec::new(MAIL_KEY, &format!("C:{CODE} SEC:STALE")).unwrap();
        let key = derive_key(&[1; 32], &spec).unwrap();
        assert_eq!(key, derive_key(&[1; 32], &same).unwrap());
        assert_ne!(key, derive_key(&[2; 32], &spec).unwrap());
        assert_ne!(key, derive_key(&[1; 32], &other_name).unwrap());
        assert_ne!(key, derive_key(&[1; 32], &other_policy).unwrap());
        assert!(KeySpec::new(MAIL_KEY, "C:zz").is_err());
    }

    #[test]
    fn messages_round_trip_and_never_print_a_key() {
        let response = KeyResponse { v: 1, keys: vec![IssuedKey { name: "k".into(), key: Zeroizing::new([7; 32]) }] };
        let json = serde_json::to_string(&response).unwrap();
        assert_eq!(serde_json::from_str::<KeyResponse>(&json).unwrap(), response);
        assert!(!format!("{response:?}").contains("0707"));
        let request = KeyRequest { v: 1, attestation: vec![1, 2], keys: vec![] };
        assert_eq!(serde_json::from_str::<KeyRequest>(&serde_json::to_string(&request).unwrap()).unwrap(), request);
        assert!(serde_json::from_str::<KeyRequest>(r#"{"v":1,"attestation":"01","keys":[],"extra":1}"#).is_err());
    }
}
