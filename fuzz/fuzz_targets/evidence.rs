//! `Evidence::from_bytes`: one encoding per value, no panic.
#![no_main]

use conclave_core::Evidence;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = Evidence::from_bytes(data) {
        assert_eq!(evidence.to_bytes(), data, "decoded evidence re-encodes differently");
    }
});
