//! The sample enclaves built into this binary, in mock or simulation mode.
//!
//! In simulation mode a sample runs as a separate, sandboxed process: this
//! same binary, started as `conclave __enclave <NAME>`. The host signs it with
//! a development key kept in its data directory (`example-signing.key`), so
//! its identity is: code hash = SHA-256 of this binary, signer = that key,
//! product id = the sample's number below. All samples share the code hash;
//! the product id tells them apart (`S:<signer> PROD:<n>`).

use std::{path::Path, process::ExitCode};

use anyhow::{Context, bail};
use conclave_core::{
    EnclaveSignature,
    signature::{decode_signing_key, encode_signing_key},
};
use conclave_enclave::Enclave;
use conclave_examples::{auction::AuctionEnclave, psi::PsiEnclave, reverse::ReverseEnclave, stats::StatsEnclave};
use conclave_host::{
    EnclaveHost,
    simulation::{
        EnclaveLimits, MeasuredBinary, SignedEnclave, check_data_dir, load_or_create_secret, simulated_attestation_key,
    },
};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;

/// The hidden subcommand that turns this binary into an enclave process.
pub const ENCLAVE_SUBCOMMAND: &str = "__enclave";

/// A sample: its name, product id and what it does.
pub struct Sample {
    /// The name used on the command line.
    pub name: &'static str,
    /// Its product id when signed by the development key.
    pub product_id: u16,
    /// One line about it.
    pub about: &'static str,
}

/// Every sample, in the order `--help` lists them.
pub const SAMPLES: [Sample; 4] = [
    Sample { name: "reverse", product_id: 1, about: "answers each mail with its body reversed" },
    Sample { name: "auction", product_id: 2, about: "sealed-bid second-price auction" },
    Sample { name: "stats", product_id: 3, about: "count, mean, min and max of every party's numbers" },
    Sample { name: "psi", product_id: 4, about: "private set intersection of two parties" },
];

/// The sample called `name`.
pub fn find(name: &str) -> anyhow::Result<&'static Sample> {
    SAMPLES.iter().find(|s| s.name == name).with_context(|| {
        let names: Vec<_> = SAMPLES.iter().map(|s| format!("{} ({})", s.name, s.about)).collect();
        format!("unknown example {name:?}: choose one of {}", names.join("; "))
    })
}

fn factory(name: &str) -> anyhow::Result<fn() -> Box<dyn Enclave>> {
    fn make<E: Enclave + Default>() -> Box<dyn Enclave> {
        Box::new(E::default())
    }
    Ok(match name {
        "reverse" => make::<ReverseEnclave>,
        "auction" => make::<AuctionEnclave>,
        "stats" => make::<StatsEnclave>,
        "psi" => make::<PsiEnclave>,
        other => bail!("unknown example {other:?}"),
    })
}

/// A sample running in this process (mock mode: INSECURE, for tests).
pub fn mock_host(name: &str) -> anyhow::Result<EnclaveHost> {
    find(name)?;
    Ok(match name {
        "reverse" => EnclaveHost::load_mock_restartable::<ReverseEnclave>(),
        "auction" => EnclaveHost::load_mock_restartable::<AuctionEnclave>(),
        "stats" => EnclaveHost::load_mock_restartable::<StatsEnclave>(),
        _ => EnclaveHost::load_mock_restartable::<PsiEnclave>(),
    })
}

/// The development key that signs the built-in samples, from `data_dir`
/// (created on first use, mode 0600; refused if others could read it).
pub fn development_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    check_data_dir(data_dir)?;
    let path = data_dir.join("example-signing.key");
    let text = load_or_create_secret(&path, || {
        encode_signing_key(&SigningKey::generate(&mut OsRng)).as_str().as_bytes().to_vec()
    })?;
    decode_signing_key(String::from_utf8_lossy(&text).trim())
        .with_context(|| format!("cannot use development key {}", path.display()))
}

/// A sample as a separate sandboxed process of this binary (simulation
/// mode), under the default [`EnclaveLimits`].
pub fn simulation_host(name: &str, data_dir: &Path) -> anyhow::Result<EnclaveHost> {
    simulation_host_with_limits(name, data_dir, EnclaveLimits::default())
}

/// A sample as a separate sandboxed process of this binary, under `limits`.
/// The binary is read and hashed once, into the sealed copy that runs; the
/// development key signs that hash.
pub fn simulation_host_with_limits(name: &str, data_dir: &Path, limits: EnclaveLimits) -> anyhow::Result<EnclaveHost> {
    let sample = find(name)?;
    let exe = std::env::current_exe().context("cannot find this program's binary")?;
    let key = development_key(data_dir)?;
    let binary = MeasuredBinary::open(&exe)?;
    let signature = EnclaveSignature::sign(&key, binary.code_hash(), sample.product_id, 0);
    let enclave = SignedEnclave::new(binary, &signature)?
        .with_args(vec![ENCLAVE_SUBCOMMAND.into(), name.into()])
        .with_limits(limits);
    let attestation_key = simulated_attestation_key(data_dir)?;
    Ok(EnclaveHost::load_simulation(enclave, attestation_key))
}

/// `conclave __enclave <NAME>`: be the enclave process of a sample.
pub fn run_enclave_process(name: &str) -> ExitCode {
    match factory(name) {
        Ok(make) => conclave_enclave::process::run_enclave_process(make),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
