//! `conclave host`: run a web host for one enclave.
//!
//! The binary's whole job: parse flags, prepare the data directory (store and
//! platform secret), build the [`EnclaveHost`], bind, print the address, and
//! hand over to `conclave_host::web::run` until SIGINT or SIGTERM.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::samples;
use conclave_host::{
    EnclaveHost, HostService, ServiceConfig,
    store::Store,
    web::{TlsConfig, WebConfig, check_transport},
};
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

/// How the host writes its log (stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format), for log collectors.
    Json,
}

/// Parses a duration in seconds, decimals allowed ("0.5", "30").
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(value).map_err(|_| format!("{text:?} is not a usable number of seconds"))
}

/// Flags of `conclave host`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("enclave_to_run").required(true).args(["enclave", "example"])))]
#[command(after_help = "\
Prints `listening on http://ADDR:PORT` (https with TLS) on stdout once it serves (port 0 picks a
free port). The HTTP API is described in docs/http-api.md. The data directory keeps the store
(host.db: sealed state, mail to self, reply queues) and the platform secret (platform.secret, mode 0600).

Transport: plain HTTP is served only on a loopback address, unless --insecure-http is given; on
any other address give --tls-cert and --tls-key (PEM). Clients check the certificate against the
web roots, or a CA given to them with --tls-ca.

Limits (docs/http-api.md, \"Limits and timeouts\"; figures in docs/reliability.md): a request head
must arrive within --header-timeout of its first byte (the TLS handshake included), a body within
--body-timeout of its head, and a kept-alive connection is closed after --idle-timeout idle. Beyond
--max-connections, new connections are closed at once. Bodies in memory are bounded by
--body-budget-bytes, stored replies by --max-stored-replies.

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
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (anyone on the network can read the
    /// traffic and pose as this host).
    #[arg(long)]
    insecure_http: bool,
    /// Seconds a connection may take to send a request head (and TLS handshake).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    header_timeout: Duration,
    /// Seconds a request body may take to arrive once its head is read (then 408).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    body_timeout: Duration,
    /// Seconds a kept-alive connection may stay idle between requests.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds)]
    idle_timeout: Duration,
    /// The most connections open at once; more are closed at once (needs `ulimit -n` above it).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_connections: usize,
    /// The most bytes of request bodies held in memory at once.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    body_budget_bytes: usize,
    /// The most unacknowledged replies stored over all clients (then 507 REPLY_STORE_FULL).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_stored_replies: u64,
    /// Days after which a correlation id with no queued reply and no activity is forgotten.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    correlation_id_max_idle_days: u64,
    /// The log's format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

impl HostArgs {
    /// The log format asked for.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// The web host's settings from the flags.
    fn web_config(&self) -> anyhow::Result<WebConfig> {
        let mut config = WebConfig::default()
            .with_max_body_bytes(self.max_body_bytes)
            .with_queue_capacity(self.queue_capacity)
            .with_header_timeout(self.header_timeout)
            .with_body_timeout(self.body_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_max_connections(self.max_connections)
            .with_body_budget_bytes(self.body_budget_bytes)
            .with_max_stored_replies(self.max_stored_replies)
            .with_insecure_http(self.insecure_http);
        let max_idle = Duration::from_secs(self.correlation_id_max_idle_days.saturating_mul(24 * 3600));
        let interval = config.prune_interval;
        config = config.with_correlation_id_pruning(max_idle, interval);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.with_tls(TlsConfig::from_pem_files(cert, key)?);
        }
        Ok(config)
    }
}

/// Raises the soft descriptor limit toward what `connections` need, or warns
/// that the host will run out of descriptors before it reaches its cap.
pub(crate) fn check_descriptor_limit(connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Store, WAL, readers, the enclave's channel and the listener need a few more.
    let needed = u64::try_from(connections).unwrap_or(u64::MAX).saturating_add(64);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft >= needed {
        return;
    }
    let raised = needed.min(hard);
    if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() && raised >= needed {
        return;
    }
    tracing::warn!(
        limit = raised.max(soft),
        max_connections = connections,
        "the open-file limit is below --max-connections: accepts will fail before the cap; raise `ulimit -n` or lower --max-connections"
    );
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
    let service = HostService::new(host, store, ServiceConfig::new(secret)).context("cannot start the enclave")?;
    let mode = match args.mode {
        Mode::Mock => "MOCK",
        Mode::Simulation => "SIMULATION",
    };
    eprintln!("WARNING: INSECURE: {mode} mode: {}", insecure_warning(args.mode));
    let config = args.web_config()?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    check_transport(address, &config)?;
    check_descriptor_limit(config.max_connections);
    let scheme = if config.tls.is_some() { "https" } else { "http" };

    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).context("cannot use the listening socket")?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {scheme}://{address}").and_then(|()| stdout.flush()).context("cannot write")?;
        drop(stdout);
        conclave_host::web::run(listener, service, config, shutdown_signal()).await.context("web host failed")
    })?;
    eprintln!("conclave host: stopped");
    Ok(ExitCode::SUCCESS)
}
