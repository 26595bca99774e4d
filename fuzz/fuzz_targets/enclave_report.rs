//! `EnclaveReport::from_bytes`: one encoding per value, no panic.
#![no_main]

use conclave_core::EnclaveReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = EnclaveReport::from_bytes(data) {
        assert_eq!(report.to_bytes(), data, "decoded report re-encodes differently");
    }
});
