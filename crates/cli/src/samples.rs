//! The sample enclaves built into this binary, in mock or simulation mode.
//!
//! In simulation mode a sample runs as a separate, sandboxed process: this
//! same binary, started as `conclave __enclave <NAME>`. The host signs it with
//! a development key kept in its data directory (`example-signing.key`), so
//! its identity is: code hash = SHA-256 of this binary, signer = that key,
//! product id = the sample's number below. All samples share the code hash;
//! the product id tells them apart (`S:<signer> PROD:<n>`).
//!
//! A sample may take its keys from a key derivation service instead
//! (`conclave host --kds URL`): it then runs wrapped in [`WithKds`] with
//! product id [`kds_product_id`] of its own, and the KDS itself (`conclave
//! kds`) is one more enclave of this binary, product id [`KDS_PRODUCT_ID`],
//! signed by the same key.

use std::{path::Path, process::ExitCode};

use anyhow::{Context, bail};
use conclave_core::{
    EnclaveSignature,
    signature::{decode_signing_key, encode_signing_key},
};
use conclave_enclave::Enclave;
use conclave_examples::{
    auction::AuctionEnclave,
    kds::{KDS_PRODUCT_ID, WithKds, kds_product_id},
    psi::PsiEnclave,
    reverse::ReverseEnclave,
    stats::StatsEnclave,
    tally::TallyEnclave,
};
use conclave_host::{
    EnclaveHost, mock_identity,
    simulation::{
        EnclaveLimits, MeasuredBinary, SignedEnclave, check_data_dir, load_or_create_secret, simulated_attestation_key,
    },
};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;

/// The hidden subcommand that turns this binary into an enclave process.
pub const ENCLAVE_SUBCOMMAND: &str = "__enclave";

/// The argument after the sample's name that makes it take its keys from a KDS.
const WITH_KDS: &str = "--kds";

/// The name the key derivation service runs under (`conclave kds`).
pub const KDS: &str = "kds";

/// Which enclave of this binary runs: a sample, with or without a KDS, or the KDS itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<'a> {
    /// A sample's name, or [`KDS`].
    pub name: &'a str,
    /// Whether a sample takes its keys from a KDS.
    pub with_kds: bool,
}

impl<'a> Choice<'a> {
    /// A sample without a KDS.
    pub fn sample(name: &'a str) -> Self {
        Self { name, with_kds: false }
    }

    /// The product id this enclave is signed with.
    pub fn product_id(&self) -> anyhow::Result<u16> {
        if self.name == KDS {
            return Ok(KDS_PRODUCT_ID);
        }
        let product_id = find(self.name)?.product_id;
        Ok(if self.with_kds { kds_product_id(product_id) } else { product_id })
    }

    /// The arguments after `__enclave` that start this enclave.
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec![ENCLAVE_SUBCOMMAND.into(), self.name.into()];
        if self.with_kds {
            args.push(WITH_KDS.into());
        }
        args
    }
}

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
pub const SAMPLES: [Sample; 5] = [
    Sample { name: "reverse", product_id: 1, about: "answers each mail with its body reversed" },
    Sample { name: "auction", product_id: 2, about: "sealed-bid second-price auction" },
    Sample { name: "stats", product_id: 3, about: "count, mean, min and max of every party's numbers" },
    Sample { name: "psi", product_id: 4, about: "private set intersection of two parties" },
    Sample { name: "tally", product_id: 5, about: "running totals per party (the crash and failover workload)" },
];

/// The sample called `name`.
pub fn find(name: &str) -> anyhow::Result<&'static Sample> {
    SAMPLES.iter().find(|s| s.name == name).with_context(|| {
        let names: Vec<_> = SAMPLES.iter().map(|s| format!("{} ({})", s.name, s.about)).collect();
        format!("unknown example {name:?}: choose one of {}", names.join("; "))
    })
}

/// Calls `visit` with the enclave type `choice` names: the one place a
/// name becomes a type.
fn with_type<T>(choice: Choice<'_>, visit: impl TypeVisitor<T>) -> anyhow::Result<T> {
    Ok(match (choice.name, choice.with_kds) {
        (KDS, _) => visit.visit::<conclave_kds::KdsEnclave>(),
        ("reverse", false) => visit.visit::<ReverseEnclave>(),
        ("auction", false) => visit.visit::<AuctionEnclave>(),
        ("stats", false) => visit.visit::<StatsEnclave>(),
        ("psi", false) => visit.visit::<PsiEnclave>(),
        ("tally", false) => visit.visit::<TallyEnclave>(),
        ("reverse", true) => visit.visit::<WithKds<ReverseEnclave>>(),
        ("auction", true) => visit.visit::<WithKds<AuctionEnclave>>(),
        ("stats", true) => visit.visit::<WithKds<StatsEnclave>>(),
        ("psi", true) => visit.visit::<WithKds<PsiEnclave>>(),
        ("tally", true) => visit.visit::<WithKds<TallyEnclave>>(),
        (other, _) => bail!("unknown example {other:?}"),
    })
}

/// Something done with an enclave type.
trait TypeVisitor<T> {
    fn visit<E: Enclave + Default + 'static>(self) -> T;
}

struct Factory;

impl TypeVisitor<fn() -> Box<dyn Enclave>> for Factory {
    fn visit<E: Enclave + Default + 'static>(self) -> fn() -> Box<dyn Enclave> {
        || Box::new(E::default())
    }
}

struct Mock(u16);

impl TypeVisitor<EnclaveHost> for Mock {
    fn visit<E: Enclave + Default + 'static>(self) -> EnclaveHost {
        let identity = conclave_enclave::EnclaveIdentity { product_id: self.0, ..mock_identity::<E>() };
        EnclaveHost::load_mock_restartable_with_identity::<E>(identity)
    }
}

/// An enclave running in this process (mock mode: INSECURE, for tests). It
/// reports the product id it would be signed with, so constraints and KDS
/// policies name it the same way in both modes.
pub fn mock_host(choice: Choice<'_>) -> anyhow::Result<EnclaveHost> {
    with_type(choice, Mock(choice.product_id()?))
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
    simulation_host_with_limits(Choice::sample(name), data_dir, EnclaveLimits::default())
}

/// An enclave of this binary as a separate sandboxed process, under
/// `limits`. The binary is read and hashed once, into the sealed copy that
/// runs; the development key signs that hash.
pub fn simulation_host_with_limits(
    choice: Choice<'_>,
    data_dir: &Path,
    limits: EnclaveLimits,
) -> anyhow::Result<EnclaveHost> {
    let product_id = choice.product_id()?;
    let exe = std::env::current_exe().context("cannot find this program's binary")?;
    let key = development_key(data_dir)?;
    let binary = MeasuredBinary::open(&exe)?;
    let signature = EnclaveSignature::sign(&key, binary.code_hash(), product_id, 0);
    let enclave = SignedEnclave::new(binary, &signature)?.with_args(choice.args()).with_limits(limits);
    let attestation_key = simulated_attestation_key(data_dir)?;
    Ok(EnclaveHost::load_simulation(enclave, attestation_key))
}

/// `conclave __enclave <NAME> [--kds]`: be the enclave process of a sample or of the KDS.
pub fn run_enclave_process(args: &[std::ffi::OsString]) -> ExitCode {
    let name = args.first().and_then(|n| n.to_str()).unwrap_or_default();
    let with_kds = args.get(1).is_some_and(|a| a == WITH_KDS);
    match with_type(Choice { name, with_kds }, Factory) {
        Ok(make) => conclave_enclave::process::run_enclave_process(make),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
