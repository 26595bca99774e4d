//! `StateFrame::unwrap`: what splits re-wraps to the same bytes.
#![no_main]

use conclave_core::StateFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((frame, body)) = StateFrame::unwrap(data) {
        assert_eq!(frame.wrap(body), data);
    }
});
