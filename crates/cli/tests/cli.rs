//! The `conclave` binary as a user runs it: output, files and exit codes.

use std::process::{Command, Output};

fn conclave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conclave")).args(args).output().expect("running conclave")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn constraint_parse_prints_the_canonical_form() {
    let hash = "AB".repeat(32);
    let out = conclave(&["constraint", "parse", &format!("SEC:INSECURE   C:{hash}")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("C:{} SEC:INSECURE\n", hash.to_lowercase()));
}

#[test]
fn constraint_parse_names_the_bad_token_and_exits_2() {
    let hash = "ab".repeat(32);
    for (text, token) in [
        (format!("C:{hash} FOO:1"), "FOO:1"),
        (format!("C:{hash} SEC:MAYBE"), "SEC:MAYBE"),
        (format!("C:{hash} PROD:1"), "PROD:1"),
        (format!("C:{hash} EXPIRE:soon"), "EXPIRE:soon"),
    ] {
        let out = conclave(&["constraint", "parse", &text]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stdout(&out).is_empty());
        assert!(stderr(&out).contains(token), "{text}: {}", stderr(&out));
    }
    let out = conclave(&["constraint", "parse", "SEC:STALE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("C:") && stderr(&out).contains("S:"), "{}", stderr(&out));
}

#[test]
fn measure_prints_the_sha256_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("enclave.bin");
    std::fs::write(&bin, b"not really an enclave\n").unwrap();
    let out = conclave(&["measure", bin.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    // The same digest computed independently, and by sha256sum where it exists.
    let reference = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"not really an enclave\n"));
    assert_eq!(stdout(&out), format!("{reference}\n"));
    if let Ok(o) = Command::new("sha256sum").arg(&bin).output() {
        let sum = String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or_default().to_owned();
        assert_eq!(sum, reference);
    }
    let missing = conclave(&["measure", dir.path().join("nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nope"));
}

#[test]
fn keygen_and_sign_write_private_key_and_signature() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    let bin = dir.path().join("enclave.bin");
    std::fs::write(&bin, b"enclave bytes").unwrap();
    let out = conclave(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Never overwrite a key.
    assert_eq!(conclave(&["keygen", "--out", key.to_str().unwrap()]).status.code(), Some(2));

    let out = conclave(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--product-id",
        "7",
        "--revocation-level",
        "2",
        bin.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sig = std::fs::read(dir.path().join("enclave.bin.sig")).unwrap();
    let sig = conclave_core::EnclaveSignature::decode(&sig).unwrap();
    assert_eq!(sig.product_id(), 7);
    assert_eq!(sig.revocation_level(), 2);
    sig.verify(&conclave_core::signature::code_hash(b"enclave bytes")).unwrap();
    assert!(sig.verify(&conclave_core::signature::code_hash(b"enclave bytez")).is_err());
}

#[test]
fn demo_runs_and_says_it_is_insecure() {
    let out = conclave(&["demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("INSECURE"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("Summary: OK"), "{text}");
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["constraint", "parse", "--help"],
        vec!["measure", "--help"],
        vec!["keygen", "--help"],
        vec!["sign", "--help"],
        vec!["evidence", "verify", "--help"],
    ] {
        let out = conclave(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

#[test]
fn host_help_documents_the_enclave_limits_and_bad_values_exit_2() {
    let help = stdout(&conclave(&["host", "--help"]));
    for flag in
        ["--enclave-memory-limit <SIZE>", "[default: 4GiB]", "--enclave-call-timeout <DURATION>", "[default: 60s]"]
    {
        assert!(help.contains(flag), "{flag:?} missing: {help}");
    }
    for (flag, value, complaint) in [
        ("--enclave-memory-limit", "1MiB", "at least 32MiB"),
        ("--enclave-memory-limit", "4G", "unknown unit"),
        ("--enclave-call-timeout", "0s", "more than 0"),
    ] {
        let out = conclave(&[
            "host",
            "--example",
            "reverse",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/nonexistent",
            flag,
            value,
        ]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&out).contains(complaint), "{flag} {value}: {}", stderr(&out));
    }
}
