//! `measure`, `keygen` and `sign`: preparing an enclave binary for simulation mode.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use conclave_core::{
    EnclaveSignature,
    signature::{code_hash, decode_signing_key, encode_signing_key},
};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

/// Arguments of `conclave measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// The enclave binary.
    pub binary: PathBuf,
}

/// Arguments of `conclave keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key (refuses to overwrite an existing file).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `conclave sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The enclave-signing key written by `conclave keygen`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The product id (0 to 65535): tells enclaves of one signer apart.
    #[arg(long, value_name = "N")]
    pub product_id: u16,
    /// The revocation level (0 to 65535): raise it to retire older versions.
    #[arg(long, value_name = "N")]
    pub revocation_level: u16,
    /// The enclave binary; the signature goes to <BIN>.sig.
    pub binary: PathBuf,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

pub fn measure(args: &MeasureArgs) -> anyhow::Result<ExitCode> {
    println!("{}", hex::encode(conclave_host::simulation::measure(&args.binary)?));
    Ok(ExitCode::SUCCESS)
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate(&mut OsRng);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&args.out)
        .with_context(|| format!("cannot create key file {} (it must not exist yet)", args.out.display()))?;
    let text = encode_signing_key(&key);
    file.write_all(text.as_str().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", args.out.display()))?;
    let signer = Sha256::digest(key.verifying_key().as_bytes());
    eprintln!("wrote enclave-signing key to {} (mode 0600); keep it secret", args.out.display());
    eprintln!("signer (code-signing key hash): {}", hex::encode(signer));
    Ok(ExitCode::SUCCESS)
}

pub fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    // A signing key others can read is a key others can sign with: refused.
    let key_text = String::from_utf8(conclave_host::simulation::read_secret_file(&args.key)?)
        .with_context(|| format!("signing key {} is not text", args.key.display()))?;
    let key = decode_signing_key(key_text.trim())
        .with_context(|| format!("cannot use signing key {}", args.key.display()))?;
    let binary = read(&args.binary, "enclave binary")?;
    if binary.is_empty() {
        bail!("enclave binary {} is empty", args.binary.display());
    }
    let hash = code_hash(&binary);
    let signature = EnclaveSignature::sign(&key, hash, args.product_id, args.revocation_level);
    let mut out = args.binary.clone().into_os_string();
    out.push(".sig");
    let out = PathBuf::from(out);
    std::fs::write(&out, signature.encode()).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    eprintln!("code hash:  {}", hex::encode(hash));
    eprintln!("signer:     {}", hex::encode(signature.signer_key_hash()));
    eprintln!("product id: {}  revocation level: {}", args.product_id, args.revocation_level);
    Ok(ExitCode::SUCCESS)
}
