//! `channel::frame_len`: accepted exactly up to `MAX_FRAME_LEN`.
#![no_main]

use conclave_core::channel::{MAX_FRAME_LEN, frame_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|prefix: [u8; 4]| {
    let claimed = u32::from_be_bytes(prefix) as usize;
    assert_eq!(frame_len(prefix).is_ok(), claimed <= MAX_FRAME_LEN);
});
