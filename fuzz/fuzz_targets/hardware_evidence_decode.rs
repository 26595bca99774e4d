//! `HardwareEvidence::decode`: one encoding per value, no panic.
#![no_main]

use conclave_attestation::HardwareEvidence;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = HardwareEvidence::decode(data) {
        assert_eq!(evidence.encode(), data, "decoded evidence re-encodes differently");
    }
});
