//! `EnclaveConstraint::parse`: an error, or a constraint whose canonical form
//! re-parses to the same constraint and prints the same again.
#![no_main]

use conclave_core::EnclaveConstraint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(constraint) = EnclaveConstraint::parse(text) {
        let canonical = constraint.to_string();
        let again = EnclaveConstraint::parse(&canonical).expect("the canonical form parses");
        assert_eq!(again, constraint);
        assert_eq!(again.to_string(), canonical);
    }
});
