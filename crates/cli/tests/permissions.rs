//! The host's data directory and the key files it reads must belong to the
//! user running `conclave` and be closed to others: each refusal, as a user
//! meets it, with the file, what is wrong and the fix.
#![cfg(unix)]

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

fn conclave(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run conclave")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `conclave host --example reverse` on `data_dir`; it must refuse before serving.
fn host(data_dir: &Path) -> Output {
    conclave(&["host", "--example", "reverse", "--listen", "127.0.0.1:0", "--data-dir", text(data_dir)])
}

/// Starts `conclave host --example reverse` on `data_dir` until it serves, then stops it.
fn serve_once(data_dir: &Path) {
    let mut child = Command::new(BIN)
        .args(["host", "--example", "reverse", "--listen", "127.0.0.1:0", "--data-dir", text(data_dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on"), "{line:?}");
}

/// A data directory as the host's first start leaves it: keys and secret created.
fn prepared_data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    serve_once(&data);
    (dir, data)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn assert_refused(out: &Output, expected: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    let message = stderr(out);
    for part in expected {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "it served anyway");
}

#[test]
fn a_data_directory_others_can_write_is_refused() {
    let (_dir, data) = prepared_data_dir();
    chmod(&data, 0o777);
    let out = host(&data);
    let path = data.display().to_string();
    assert_refused(&out, &[&format!("data directory {path} has mode 0777"), &format!("chmod 700 {path}")]);
}

#[test]
fn each_secret_file_others_can_read_is_refused() {
    for name in ["platform.secret", "simulated-attestation.key", "example-signing.key"] {
        let (_dir, data) = prepared_data_dir();
        let path = data.join(name);
        chmod(&path, 0o644);
        let out = host(&data);
        let path = path.display().to_string();
        assert_refused(&out, &[&format!("secret file {path} has mode 0644"), &format!("chmod 600 {path}")]);
    }
}

#[test]
fn new_data_directories_and_secrets_are_private() {
    let (_dir, data) = prepared_data_dir();
    assert_eq!(mode(&data), 0o700);
    for name in ["platform.secret", "simulated-attestation.key", "example-signing.key"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    // And the host starts again on them.
    serve_once(&data);
}

#[test]
fn sign_refuses_a_signing_key_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    let bin = dir.path().join("enclave.bin");
    std::fs::write(&bin, b"enclave bytes").unwrap();
    assert!(conclave(&["keygen", "--out", text(&key)]).status.success());
    chmod(&key, 0o640);
    let sign = || conclave(&["sign", "--key", text(&key), "--product-id", "1", "--revocation-level", "0", text(&bin)]);
    let out = sign();
    let path = key.display().to_string();
    assert_refused(&out, &[&format!("secret file {path} has mode 0640"), &format!("chmod 600 {path}")]);
    assert!(!dir.path().join("enclave.bin.sig").exists());

    chmod(&key, 0o600);
    assert!(sign().status.success());
}

#[test]
fn sign_refuses_a_signing_key_of_another_user() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("enclave.bin");
    std::fs::write(&bin, b"enclave bytes").unwrap();
    let key = dir.path().join("signer.key");
    assert!(conclave(&["keygen", "--out", text(&key)]).status.success());
    // Root can give the key away; anyone else tries a file root owns.
    // A file this user just made is owned by this user's id.
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&key).unwrap());
    let (key, owner) = if me == 0 {
        chown(&key, Some(65534), Some(65534)).unwrap();
        (key, 65534)
    } else {
        (PathBuf::from("/etc/hostname"), 0)
    };
    let out = conclave(&["sign", "--key", text(&key), "--product-id", "1", "--revocation-level", "0", text(&bin)]);
    assert_refused(&out, &[&format!("secret file {} is owned by uid {owner}, not by this user", key.display())]);
}
