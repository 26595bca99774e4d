//! `conclave evidence verify` against the recorded real evidence in
//! `crates/attestation/tests/data`, run as a user would run it.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The sample SGX quote's MRSIGNER (quote offset 176..208).
const SGX_MRSIGNER: &str = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../attestation/tests/data").join(name)
}

fn conclave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conclave")).args(args).output().expect("running conclave")
}

fn sgx_args(at: &str) -> Vec<String> {
    vec![
        "evidence".into(),
        "verify".into(),
        "--kind".into(),
        "sgx-dcap".into(),
        "--quote".into(),
        data("sgx_quote").display().to_string(),
        "--collateral".into(),
        data("sgx_quote_collateral.json").display().to_string(),
        "--at".into(),
        at.into(),
    ]
}

/// `conclave evidence verify` of the TDX sample inside its collateral's window.
fn verify_tdx_sample() -> Output {
    conclave(&[
        "evidence",
        "verify",
        "--kind",
        "tdx",
        "--quote",
        data("tdx_quote").to_str().unwrap(),
        "--collateral",
        data("tdx_quote_collateral.json").to_str().unwrap(),
        "--at",
        "2025-07-01T00:00:00Z",
    ])
}

fn run(args: &[String]) -> Output {
    conclave(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not json ({e}): {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sgx_sample_verifies_and_prints_its_identity() {
    let out = run(&sgx_args("2025-07-01T00:00:00Z"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = stdout_json(&out);
    assert_eq!(json["kind"], "sgx-dcap");
    assert_eq!(json["code_hash"], "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
    assert_eq!(json["signer"], SGX_MRSIGNER);
    assert_eq!(json["product_id"], 0);
    assert_eq!(json["debug"], false);
    assert_eq!(json["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(json["advisory_ids"], serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"]));
    assert_eq!(json["security"], "STALE");
    assert!(json["report_data"].as_str().unwrap().starts_with(&hex::encode("Hello, world!")));
}

#[test]
fn sgx_sample_satisfies_its_signer_at_stale_but_not_at_secure() {
    let mut args = sgx_args("1751328000");
    args.extend(["--constraint".into(), format!("S:{SGX_MRSIGNER} PROD:0 SEC:STALE")]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["constraint"]["satisfied"], true);

    let mut args = sgx_args("1751328000");
    args.extend(["--constraint".into(), format!("S:{SGX_MRSIGNER} PROD:0 SEC:SECURE")]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("SEC:SECURE"), "{err}");
    assert!(err.contains("ConfigurationAndSWHardeningNeeded"), "{err}");
    assert_eq!(stdout_json(&out)["constraint"]["satisfied"], false);
}

#[test]
fn wrong_product_id_names_the_prod_token() {
    let mut args = sgx_args("1751328000");
    args.extend(["--constraint".into(), format!("S:{SGX_MRSIGNER} PROD:1")]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("PROD:1"), "{}", stderr(&out));
}

#[test]
fn expired_collateral_exits_1_naming_the_window() {
    let out = run(&sgx_args("2025-08-01T00:00:00Z"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("tcb info collateral is not valid at 2025-08-01T00:00:00Z"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn tdx_snp_and_nitro_samples_verify() {
    let tdx = verify_tdx_sample();
    assert_eq!(tdx.status.code(), Some(0), "{}", stderr(&tdx));
    assert_eq!(stdout_json(&tdx)["security"], "SECURE");

    // The report file is uppercase hex.
    let snp = conclave(&[
        "evidence",
        "verify",
        "--kind",
        "sev-snp",
        "--report",
        data("report_milan.hex").to_str().unwrap(),
        "--vcek",
        data("vcek_milan.der").to_str().unwrap(),
        "--chain",
        data("cert_chain_milan").to_str().unwrap(),
        "--at",
        "1751328000",
    ]);
    assert_eq!(snp.status.code(), Some(0), "{}", stderr(&snp));
    let json = stdout_json(&snp);
    assert!(json["code_hash"].as_str().unwrap().starts_with("7a1e5c266c0108db"));
    // Without AMD KDS data the TCB's currency is unknown: STALE, never SECURE.
    assert_eq!(json["security"], "STALE");
    assert_eq!(json["sev_snp"]["policy"], "0x0000000000030000");
    assert_eq!(json["sev_snp"]["vmpl"], 0);
    assert_eq!(json["sev_snp"]["reported_tcb"]["microcode"], 115);
    assert_eq!(json["timestamp_unix"], serde_json::Value::Null);

    // The document file is base64.
    let nitro = conclave(&[
        "evidence",
        "verify",
        "--kind",
        "nitro",
        "--document",
        data("nitro_attestation.b64").to_str().unwrap(),
        "--at",
        "2024-09-07T14:37:39Z",
    ]);
    assert_eq!(nitro.status.code(), Some(0), "{}", stderr(&nitro));
    let json = stdout_json(&nitro);
    assert!(json["code_hash"].as_str().unwrap().starts_with("e72a46ca80a260fb"));
    assert_eq!(json["nitro"]["pcr0"], json["code_hash"]);
    assert!(json["nitro"]["pcr1"].as_str().unwrap().starts_with("0343b056cd8485ca"));
    assert!(json["nitro"]["pcr2"].as_str().unwrap().starts_with("d5dcbdea0aa39c80"));
    assert_eq!(json["nitro"]["pcr8"], "00".repeat(48));
    assert_eq!(json["timestamp_unix"], 1_725_719_859);
}

#[test]
fn tdx_output_pins_the_whole_td_and_shows_every_register() {
    let tdx = verify_tdx_sample();
    assert_eq!(tdx.status.code(), Some(0), "{}", stderr(&tdx));
    let json = stdout_json(&tdx);
    // SHA-384(MRTD || RTMR0..3 || MRCONFIGID || MROWNER || MROWNERCONFIG), not MRTD.
    assert_eq!(
        json["code_hash"],
        "ea7e4523802457c49c41902cc133000079f37756577546851d4e6cea3fcac1cd0c1982c69bf32f79a7df3c5f880ab352"
    );
    let td = &json["tdx"];
    assert_eq!(
        td["mrtd"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert!(td["rtmr0"].as_str().unwrap().starts_with("44c0197b39157fdd"));
    assert!(td["rtmr1"].as_str().unwrap().starts_with("0084452c01668329"));
    assert!(td["rtmr2"].as_str().unwrap().starts_with("d833feef2cd94514"));
    for zero in ["rtmr3", "mrconfigid", "mrowner", "mrownerconfig"] {
        assert_eq!(td[zero], "00".repeat(48), "{zero}");
    }
    assert_eq!(json["timestamp_unix"], serde_json::Value::Null);
}

#[test]
fn sgx_output_shows_its_registers_and_no_timestamp() {
    let json = stdout_json(&run(&sgx_args("1751328000")));
    assert_eq!(json["sgx"]["mrenclave"], json["code_hash"]);
    assert_eq!(json["sgx"]["mrsigner"], SGX_MRSIGNER);
    assert_eq!(json["sgx"]["isvprodid"], 0);
    assert_eq!(json["sgx"]["isvsvn"], 0);
    // A DCAP quote carries no creation time; the verification time is not one.
    assert_eq!(json["timestamp_unix"], serde_json::Value::Null);
}

#[test]
fn expire_on_sgx_evidence_exits_1_saying_its_age_is_unknown() {
    let mut args = sgx_args("1751328000");
    args.extend(["--constraint".into(), format!("S:{SGX_MRSIGNER} PROD:0 EXPIRE:P1D")]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "EXPIRE:P1D: sgx-dcap evidence carries no creation time, so its age cannot be checked; drop EXPIRE for \
             sgx-dcap enclaves"
        ),
        "{err}"
    );
    assert_eq!(stdout_json(&out)["constraint"]["satisfied"], false);
}

#[test]
fn a_vcek_of_another_chip_family_exits_1() {
    let out = conclave(&[
        "evidence",
        "verify",
        "--kind",
        "sev-snp",
        "--report",
        data("report_milan.hex").to_str().unwrap(),
        "--vcek",
        data("vcek_turin.der").to_str().unwrap(),
        "--chain",
        data("cert_chain_turin").to_str().unwrap(),
        "--at",
        "1751328000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("vcek hwID vs report chip_id"), "{}", stderr(&out));
}

#[test]
fn malformed_evidence_exits_1() {
    let path = std::env::temp_dir().join(format!("conclave-evidence-cli-{}-truncated", std::process::id()));
    std::fs::write(&path, &std::fs::read(data("sgx_quote")).unwrap()[..300]).unwrap();
    let mut args = sgx_args("1751328000");
    args[5] = path.display().to_string();
    let out = run(&args);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("malformed sgx quote"), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    // Unreadable file.
    let mut args = sgx_args("1751328000");
    args[5] = data("no-such-quote").display().to_string();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--quote"), "{}", stderr(&out));

    // Unparsable time.
    assert_eq!(run(&sgx_args("next tuesday")).status.code(), Some(2));

    // Malformed constraint.
    let mut args = sgx_args("1751328000");
    args.extend(["--constraint".into(), "C:not-hex".into()]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("C:not-hex"), "{}", stderr(&out));

    // A flag that does not belong to the kind.
    let mut args = sgx_args("1751328000");
    args.extend(["--vcek".into(), data("vcek_milan.der").display().to_string()]);
    assert_eq!(run(&args).status.code(), Some(2));

    // Unknown kind (clap's own usage error).
    assert_eq!(conclave(&["evidence", "verify", "--kind", "sgx", "--at", "0"]).status.code(), Some(2));
}
