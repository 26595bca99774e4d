//! `sealing::unseal`: no panic; and the fuzzer cannot produce a blob that
//! unseals under this secret except by finding an AES-GCM forgery.
#![no_main]

use conclave_core::sealing::{SealingIdentity, unseal};
use libfuzzer_sys::fuzz_target;

const IDENTITY: SealingIdentity =
    SealingIdentity { code_hash: [0x11; 32], code_signing_key_hash: [0x22; 32], product_id: 7 };

fuzz_target!(|data: &[u8]| {
    let unsealed = unseal(&[0x5a; 32], &IDENTITY, data, b"aad");
    assert!(unsealed.is_err(), "a blob the fuzzer made unsealed");
});
