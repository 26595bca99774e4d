//! `EnclaveInstanceInfo::decode`, then `verify`: one encoding per value, no panic.
#![no_main]

use conclave_core::EnclaveInstanceInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = EnclaveInstanceInfo::decode(data) {
        assert_eq!(info.encode(), data, "decoded info re-encodes differently");
        let _ = info.verify(1_800_000_000);
    }
});
