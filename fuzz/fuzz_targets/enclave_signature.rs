//! `EnclaveSignature::decode`, then `verify`: one encoding per value, no panic.
#![no_main]

use conclave_core::EnclaveSignature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signature) = EnclaveSignature::decode(data) {
        assert_eq!(signature.encode(), data, "decoded signature re-encodes differently");
        let _ = signature.verify(signature.code_hash());
    }
});
