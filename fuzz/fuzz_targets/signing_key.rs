//! `signature::decode_signing_key`: no panic; an error never quotes the key
//! digits (the text may be a secret; the error may name the expected format).
#![no_main]

use conclave_core::signature::decode_signing_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = decode_signing_key(text) {
        let shown = format!("{e} {e:?}");
        let digits = text.split_whitespace().filter(|w| w.len() >= 16 && w.bytes().all(|b| b.is_ascii_hexdigit()));
        for word in digits {
            assert!(!shown.contains(&word[..16]), "the error quotes the key digits");
        }
    }
});
