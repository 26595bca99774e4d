//! `HardwareEvidence::verify` on mutated real evidence (the samples in
//! crates/attestation/tests/data). libFuzzer could never find a valid quote on
//! its own, so the input is an edit script applied to a real sample:
//!
//! ```text
//! byte 0      which sample (sgx, tdx, sev-snp, nitro) and which of its fields
//! then        4-byte edits: offset (u16, scaled to the field), op, value
//!             op % 4: 0 xor, 1 set, 2 insert, 3 truncate here
//! ```
//!
//! Altered evidence must fail, or verify to exactly the genuine result.
#![no_main]

use std::sync::OnceLock;

use conclave_attestation::{HardwareEvidence, VerifiedEvidence, formats};
use libfuzzer_sys::fuzz_target;

const JULY_2025: u64 = 1_751_328_000;
const NITRO_TIME: u64 = 1_725_719_859;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/attestation/tests/data/", $name)).to_vec()
    };
}

fn samples() -> &'static [(HardwareEvidence, u64, VerifiedEvidence)] {
    static SAMPLES: OnceLock<Vec<(HardwareEvidence, u64, VerifiedEvidence)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let evidence = [
            (
                HardwareEvidence::SgxDcap { quote: data!("sgx_quote"), collateral: data!("sgx_quote_collateral.json") },
                JULY_2025,
            ),
            (
                HardwareEvidence::Tdx { quote: data!("tdx_quote"), collateral: data!("tdx_quote_collateral.json") },
                JULY_2025,
            ),
            (
                HardwareEvidence::SevSnp {
                    report: formats::snp_report(&data!("report_milan.hex")).unwrap(),
                    vcek: data!("vcek_milan.der"),
                    chain: data!("cert_chain_milan"),
                },
                JULY_2025,
            ),
            (
                HardwareEvidence::Nitro { document: formats::nitro_document(&data!("nitro_attestation.b64")).unwrap() },
                NITRO_TIME,
            ),
        ];
        evidence
            .into_iter()
            .map(|(e, now)| {
                let verified = e.verify(now).expect("the recorded sample verifies");
                (e, now, verified)
            })
            .collect()
    })
}

fn fields(evidence: &mut HardwareEvidence) -> Vec<&mut Vec<u8>> {
    match evidence {
        HardwareEvidence::SgxDcap { quote, collateral } | HardwareEvidence::Tdx { quote, collateral } => {
            vec![quote, collateral]
        }
        HardwareEvidence::SevSnp { report, vcek, chain } => vec![report, vcek, chain],
        HardwareEvidence::Nitro { document } => vec![document],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, script)) = data.split_first() else { return };
    let samples = samples();
    let (genuine_evidence, now, genuine) = &samples[usize::from(selector) % samples.len()];
    let mut evidence = genuine_evidence.clone();
    {
        let mut fields = fields(&mut evidence);
        let n = fields.len();
        let field = &mut fields[usize::from(selector / 4) % n];
        for edit in script.chunks_exact(4) {
            let at = usize::from(u16::from_be_bytes([edit[0], edit[1]])) * field.len() / 65536;
            match edit[2] % 4 {
                0 if at < field.len() => field[at] ^= edit[3],
                1 if at < field.len() => field[at] = edit[3],
                2 => field.insert(at.min(field.len()), edit[3]),
                3 => field.truncate(at),
                _ => {}
            }
        }
    }
    if let Ok(verified) = evidence.verify(*now) {
        assert_eq!(&verified, genuine, "altered evidence verified as something else");
    }
});
