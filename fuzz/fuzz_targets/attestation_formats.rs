//! `formats::snp_report` and `formats::nitro_document`: no panic, and decoding
//! a file never yields more bytes than it holds.
#![no_main]

use conclave_attestation::formats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = formats::snp_report(data) {
        assert!(report.len() <= data.len());
    }
    if let Ok(document) = formats::nitro_document(data) {
        assert!(document.len() <= data.len());
    }
});
