//! `conclave host`: run a web host for one enclave.
//!
//! The binary's whole job: parse flags, prepare the data directory (store and
//! platform secret), build the [`EnclaveHost`], bind, print the address, and
//! hand over to `conclave_host::web::run` until SIGINT or SIGTERM.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::samples;
use conclave_host::{EnclaveHost, HostService, ServiceConfig, store::Store, web::WebConfig};
use rand_core::{OsRng, RngCore};

/// The sample enclaves `--example` can run.
const EXAMPLES: [&str; 4] = ["reverse", "auction", "stats", "psi"];

/// The platform secret's file name in the data directory.
const SECRET_FILE: &str = "platform.secret";
/// The store's file name in the data directory.
const STORE_FILE: &str = "host.db";

/// How the enclave runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A separate, sandboxed process started from a signed enclave binary (INSECURE: simulated evidence).
    Simulation,
    /// Inside this host process, no isolation at all (INSECURE: for tests and development).
    Mock,
}

/// Flags of `conclave host`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("enclave_to_run").required(true).args(["enclave", "example"])))]
#[command(after_help = "\
Prints `listening on http://ADDR:PORT` on stdout once it serves (port 0 picks a free port).
The HTTP API is described in docs/http-api.md; a party's page that attests and encrypts in the
browser is served at / (clients/typescript/README.md). The data directory keeps the store (host.db:
sealed state, mail to self, reply queues) and the platform secret (platform.secret, mode 0600).

Exit codes:
  0  stopped cleanly after SIGINT or SIGTERM
  2  bad flags, unusable data directory, enclave failed to load or start, or cannot bind")]
pub struct HostArgs {
    /// A signed enclave binary to run (simulation mode; its signature is <SIGNED_BIN>.sig).
    #[arg(long, value_name = "SIGNED_BIN")]
    enclave: Option<PathBuf>,
    /// A sample enclave shipped with this build (in simulation mode: this binary as a sandboxed process).
    #[arg(long, value_name = "NAME", value_parser = EXAMPLES)]
    example: Option<String>,
    /// The address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Where the store and the platform secret live (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// How to run the enclave.
    #[arg(long, value_enum, default_value_t = Mode::Simulation)]
    mode: Mode,
    /// The largest mail accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How many requests may wait for the enclave before the host answers 503.
    #[arg(long, value_name = "N", default_value_t = 64)]
    queue_capacity: usize,
}

/// Builds the enclave host the flags ask for. The one place a mode becomes a backend.
fn load_enclave(args: &HostArgs) -> anyhow::Result<EnclaveHost> {
    match (args.mode, args.example.as_deref(), &args.enclave) {
        (Mode::Mock, Some(name), _) => samples::mock_host(name),
        (Mode::Mock, None, _) => {
            bail!("--enclave needs --mode simulation: mock enclaves are compiled into this program, use --example")
        }
        (Mode::Simulation, Some(name), _) => samples::simulation_host(name, &args.data_dir),
        (Mode::Simulation, None, Some(binary)) => EnclaveHost::load(binary, &args.data_dir)
            .with_context(|| format!("cannot load enclave binary {}", binary.display())),
        (Mode::Simulation, None, None) => bail!("give --enclave <SIGNED_BIN> or --example <NAME>"),
    }
}

/// Reads the platform secret from `dir`, or creates it (32 random bytes, mode 0600).
fn platform_secret(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes.try_into().map_err(|bytes: Vec<u8>| {
                anyhow::anyhow!("platform secret {} has {} bytes, expected 32", path.display(), bytes.len())
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read platform secret {}", path.display())),
    }
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("cannot create platform secret {}", path.display()))?;
    file.write_all(&secret)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write platform secret {}", path.display()))?;
    Ok(secret)
}

fn insecure_warning(mode: Mode) -> &'static str {
    match mode {
        Mode::Mock => {
            "the enclave runs inside this host process with no isolation: whoever runs this host can read \
             every mail and all enclave state. For tests and development only."
        }
        Mode::Simulation => {
            "the enclave runs as a sandboxed process but its evidence is signed by a simulated attestation key \
             on this machine, not by TEE hardware: whoever runs this host could forge it."
        }
    }
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                eprintln!("conclave host: cannot listen for SIGTERM ({e}); stop with SIGINT");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Creates the data directory readable by its owner only: the store lists
/// correlation ids and topics, and the secrets live beside it.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Runs `conclave host`.
pub fn run(args: &HostArgs) -> anyhow::Result<ExitCode> {
    // Bind first: a bad address or a busy port fails before anything is created or started.
    let listener = std::net::TcpListener::bind(&args.listen).with_context(|| {
        format!("cannot listen on {:?}: give HOST:PORT, e.g. 127.0.0.1:8080 (port 0 picks a free port)", args.listen)
    })?;
    listener.set_nonblocking(true).context("cannot configure the listening socket")?;
    if args.data_dir.exists() && !args.data_dir.is_dir() {
        anyhow::bail!("data directory {} exists and is not a directory", args.data_dir.display());
    }
    create_private_dir(&args.data_dir)?;
    let host = load_enclave(args)?;
    let secret = platform_secret(&args.data_dir)?;
    let store_path = args.data_dir.join(STORE_FILE);
    let store = Store::open(&store_path).with_context(|| format!("cannot open store {}", store_path.display()))?;
    let mut service = HostService::new(host, store, ServiceConfig::new(secret)).context("cannot start the enclave")?;
    let mode = match args.mode {
        Mode::Mock => "MOCK",
        Mode::Simulation => "SIMULATION",
    };
    eprintln!("WARNING: INSECURE: {mode} mode: {}", insecure_warning(args.mode));
    // Clients pin the key that signs the served evidence with SIMKEY.
    let info = service.attestation().ok().and_then(|bytes| conclave_core::EnclaveInstanceInfo::decode(&bytes).ok());
    if let Some(conclave_core::Evidence::Simulation { attestation_key, .. }) = info.as_ref().map(|i| i.evidence()) {
        eprintln!("simulated attestation key: {} (clients pin it with SIMKEY:<hex>)", hex::encode(attestation_key));
    }
    let mut config =
        WebConfig::default().with_max_body_bytes(args.max_body_bytes).with_queue_capacity(args.queue_capacity);
    if let Some(name) = &args.example {
        // The party's page at `/` shows this sample's form.
        config = config.with_page_sample(name.as_str());
    }

    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).context("cannot use the listening socket")?;
        let address = listener.local_addr().context("cannot read the bound address")?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}").and_then(|()| stdout.flush()).context("cannot write")?;
        drop(stdout);
        conclave_host::web::run(listener, service, config, shutdown_signal()).await.context("web host failed")
    })?;
    eprintln!("conclave host: stopped");
    Ok(ExitCode::SUCCESS)
}
