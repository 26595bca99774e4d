//! `channel::decode_body::<HostToEnclave>`: no panic, and what decodes survives a round trip.
#![no_main]

use conclave_core::channel::{HostToEnclave, decode_body, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_body::<HostToEnclave>(data) {
        let again = decode_body::<HostToEnclave>(&encode_frame(&message)[4..]).expect("a re-encoded message decodes");
        assert_eq!(again, message);
    }
});
