//! Known-answer vectors: the exact bytes of a mail and of an
//! EnclaveInstanceInfo, kept as data files so that another implementation
//! (and `docs/wire-format.md`) can be checked against them.
//!
//! Regenerate with `CONCLAVE_REGENERATE_VECTORS=1 cargo test -p conclave-core --test vectors`
//! only when the wire format version changes.

use std::path::PathBuf;

use conclave_core::{
    EnclaveInstanceInfo, EnclaveReport, Evidence, MailHeader, PrivateKey, decrypt_mail, encrypt_mail, key_binding,
};
use rand_core::{CryptoRng, RngCore};
use serde_json::{Value, json};

/// Hands out fixed bytes: a test-only stand-in for a random source, so the
/// ephemeral key (and so the whole mail) is reproducible.
struct FixedBytes(Vec<u8>);

impl RngCore for FixedBytes {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("mail encryption only fills bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("mail encryption only fills bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let taken: Vec<u8> = self.0.drain(..dest.len()).collect();
        dest.copy_from_slice(&taken);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedBytes {}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name)
}

fn key(byte: u8) -> PrivateKey {
    PrivateKey::from_bytes([byte; 32])
}

fn mail_vector() -> Value {
    let sender = key(0x11);
    let recipient = key(0x22);
    let ephemeral_seed = [0x33u8; 32];
    let header = MailHeader::new("greetings", 5).unwrap().with_envelope(vec![0xE0, 0xE1]).unwrap();
    let body = b"hello, enclave";
    let mail =
        encrypt_mail(&sender, &recipient.public_key(), &header, body, 20, &mut FixedBytes(ephemeral_seed.to_vec()))
            .unwrap();
    json!({
        "description": "one mail, version 1: topic 'greetings', sequence number 5, envelope e0e1, body 'hello, enclave' padded to 20 bytes",
        "noise_protocol": "Noise_X_25519_AESGCM_SHA256",
        "sender_private_key": hex::encode(sender.secret_bytes()),
        "sender_public_key": sender.public_key().to_hex(),
        "recipient_private_key": hex::encode(recipient.secret_bytes()),
        "recipient_public_key": recipient.public_key().to_hex(),
        "ephemeral_private_key": hex::encode(ephemeral_seed),
        "topic": "greetings",
        "sequence_number": 5,
        "envelope": "e0e1",
        "body": hex::encode(body),
        "min_size": 20,
        "prologue": hex::encode(header.encode_prefix()),
        "mail": hex::encode(&mail),
    })
}

fn info_vector() -> Value {
    let signing = [0x44u8; 32];
    // A valid Ed25519 public key: derived from a fixed secret.
    let signing_public = ed25519_dalek::SigningKey::from_bytes(&signing).verifying_key().to_bytes();
    let encryption = key(0x55).public_key();
    let report = EnclaveReport {
        code_hash: [0xC0; 32],
        code_signing_key_hash: [0x5E; 32],
        product_id: 1,
        revocation_level: 2,
        report_data: key_binding(&signing_public, &encryption),
        timestamp_unix: 1_800_000_000,
    };
    let info = EnclaveInstanceInfo::new(signing_public, encryption, Evidence::Mock(report));
    json!({
        "description": "EnclaveInstanceInfo version 1 with mock evidence",
        "data_signing_key": hex::encode(signing_public),
        "encryption_key": encryption.to_hex(),
        "report_data": hex::encode(key_binding(&signing_public, &encryption)),
        "encoded": hex::encode(info.encode()),
    })
}

fn check(name: &str, fresh: Value) {
    let file = path(name);
    if std::env::var_os("CONCLAVE_REGENERATE_VECTORS").is_some() {
        std::fs::write(&file, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for (field, value) in fresh.as_object().unwrap() {
        let want = stored[field].as_str().map(str::to_owned).unwrap_or_else(|| stored[field].to_string());
        let got = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        if want != got {
            // Show where the bytes part, as a hex diff.
            let at = want.chars().zip(got.chars()).take_while(|(a, b)| a == b).count();
            panic!(
                "{name}: field {field} differs at hex digit {at}\n  stored: ...{}\n  now:    ...{}",
                &want[at.saturating_sub(8)..(at + 40).min(want.len())],
                &got[at.saturating_sub(8)..(at + 40).min(got.len())]
            );
        }
    }
}

#[test]
fn mail_known_answer() {
    check("mail-v1.json", mail_vector());
}

#[test]
fn stored_mail_decrypts_with_the_stored_key() {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(path("mail-v1.json")).unwrap()).unwrap();
    let recipient: [u8; 32] =
        hex::decode(stored["recipient_private_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let mail = hex::decode(stored["mail"].as_str().unwrap()).unwrap();
    let got = decrypt_mail(&PrivateKey::from_bytes(recipient), &mail).unwrap();
    assert_eq!(got.body, b"hello, enclave");
    assert_eq!(got.sender.to_hex(), stored["sender_public_key"].as_str().unwrap());
}

#[test]
fn info_known_answer() {
    check("info-v1.json", info_vector());
}
