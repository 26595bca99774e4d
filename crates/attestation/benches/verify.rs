//! Verification time per evidence kind, on the recorded real evidence.
//!
//! `cargo bench -p conclave-attestation --bench verify -- --warm-up-time 1 --measurement-time 3`

use std::path::PathBuf;

use base64::Engine;
use conclave_attestation::HardwareEvidence;
use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn bench(c: &mut Criterion) {
    let july_2025 = 1_751_328_000;
    let snp_report = hex::decode(String::from_utf8(data("report_milan.hex")).unwrap().trim()).unwrap();
    let nitro_document = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(data("nitro_attestation.b64")).unwrap().trim())
        .unwrap();
    let cases = [
        (
            "sgx-dcap",
            HardwareEvidence::SgxDcap { quote: data("sgx_quote"), collateral: data("sgx_quote_collateral.json") },
            july_2025,
        ),
        (
            "tdx",
            HardwareEvidence::Tdx { quote: data("tdx_quote"), collateral: data("tdx_quote_collateral.json") },
            july_2025,
        ),
        (
            "sev-snp",
            HardwareEvidence::SevSnp {
                report: snp_report,
                vcek: data("vcek_milan.der"),
                chain: data("cert_chain_milan"),
            },
            july_2025,
        ),
        ("nitro", HardwareEvidence::Nitro { document: nitro_document }, 1_725_719_859),
    ];
    let mut group = c.benchmark_group("verify");
    for (name, evidence, now) in &cases {
        // A benchmark of a failing path would measure the wrong thing.
        evidence.verify(*now).expect("sample verifies");
        group.bench_function(*name, |b| b.iter(|| black_box(evidence).verify(black_box(*now)).unwrap()));
    }
    group.finish();
    let mut group = c.benchmark_group("encoding");
    let sgx = &cases[0].1;
    let bytes = sgx.encode();
    group.bench_function("sgx-dcap decode", |b| b.iter(|| HardwareEvidence::decode(black_box(&bytes)).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
