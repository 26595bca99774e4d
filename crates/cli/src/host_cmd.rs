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
    simulation::{EnclaveLimits, SignedEnclave, check_data_dir, load_or_create_secret, simulated_attestation_key},
    web::{TlsConfig, WebConfig, check_transport},
};
use rand_core::{OsRng, RngCore};

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
free port). The HTTP API is described in docs/http-api.md; a party's page that attests and
encrypts in the browser is served at / (clients/typescript/README.md). The data directory keeps
the store (host.db: sealed state, mail to self, reply queues) and the platform secret
(platform.secret, mode 0600). It must belong to the user running the host and not be writable by
group or others; its key files must have no group or other permissions (the host refuses them
otherwise and says which `chmod` fixes it).

In simulation mode the enclave process runs the binary as it was when the host started (a
sealed copy, measured once), with at most --enclave-memory-limit of address space, no core
dumps, no file writes, and --enclave-call-timeout for each call before the host kills it.

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
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(samples::SAMPLES.map(|s| s.name)))]
    example: Option<String>,
    /// The key derivation service the enclave takes its keys from (`conclave kds`); several
    /// replicas: URL,URL,... With --example, the sample runs in its KDS variant (product id + 16).
    #[arg(long, value_name = "URL[,URL...]")]
    kds: Option<String>,
    /// Trust this CA or self-signed certificate (PEM) for an https:// KDS.
    #[arg(long, value_name = "FILE", requires = "kds")]
    kds_tls_ca: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Flags of `conclave kds`.
#[derive(Debug, Args)]
#[command(after_help = "\
Runs the key derivation service: an enclave of this build (product id 100, signed by the
development key in the data directory, like the samples) behind the same web host as `conclave
host`. Its master key is made at its first start and sealed in its store. Enclaves ask it for keys
by mail, through their own host (`conclave host --kds URL`); it answers only enclaves whose
attestation satisfies the policy they ask under, and the enclave checks the KDS's own attestation
against the constraint compiled into it. Replicas: copy the data directory (platform.secret,
example-signing.key, simulated-attestation.key and host.db) to each, or point all at one
PostgreSQL store with --store; they then issue the same keys. See docs/architecture.md.

Exit codes:
  0  stopped cleanly after SIGINT or SIGTERM
  2  bad flags, unusable data directory, the service failed to start, or cannot bind")]
pub struct KdsArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

/// What `conclave host` and `conclave kds` share: where to listen, where the
/// data lives, how the enclave runs, and the web host's limits.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Where the store and the platform secret live (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Where to keep sealed state, mail to self and replies: a PostgreSQL URL
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DB) shared by every host of a cluster, or an SQLite
    /// file. Default: DATA_DIR/host.db.
    #[arg(long, value_name = "URL|FILE")]
    store: Option<String>,
    /// How to run the enclave.
    #[arg(long, value_enum, default_value_t = Mode::Simulation)]
    mode: Mode,
    /// The largest mail accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How many requests may wait for the enclave before the host answers 503.
    #[arg(long, value_name = "N", default_value_t = 64)]
    queue_capacity: usize,
    /// Simulation mode: the enclave process' address-space limit, e.g. 512MiB or 4GiB (at least 32MiB).
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_memory_limit)]
    enclave_memory_limit: u64,
    /// Simulation mode: how long one enclave call may take before the host kills the process, e.g. 500ms, 60s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_call_timeout)]
    enclave_call_timeout: Duration,
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
        self.serve.log_format
    }
}

impl KdsArgs {
    /// The log format asked for.
    pub fn log_format(&self) -> LogFormat {
        self.serve.log_format
    }
}

impl ServeArgs {
    /// The web host's settings from the flags.
    /// The enclave process' limits (simulation mode).
    fn limits(&self) -> EnclaveLimits {
        EnclaveLimits::default()
            .with_memory_limit(self.enclave_memory_limit)
            .with_call_timeout(self.enclave_call_timeout)
    }

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

/// The smallest `--enclave-memory-limit`: below it no enclave process starts.
const MIN_MEMORY_LIMIT: u64 = 32 << 20;

/// `<n>`, `<n>KiB`, `<n>MiB` or `<n>GiB`: a number of bytes.
fn parse_memory_limit(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |at| text.split_at(at));
    let shift = match unit {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => return Err(format!("unknown unit {other:?}: write bytes, or KiB, MiB or GiB (e.g. 512MiB)")),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size: write e.g. 512MiB or 4GiB"))?;
    let bytes = number.checked_mul(1 << shift).ok_or_else(|| format!("{text} is too large"))?;
    if bytes < MIN_MEMORY_LIMIT {
        return Err(format!("{text} is too small for an enclave process: give at least 32MiB"));
    }
    Ok(bytes)
}

/// `<n>ms`, `<n>s`, `<n>m`, or `<n>` seconds: a positive duration.
fn parse_call_timeout(text: &str) -> Result<Duration, String> {
    let (digits, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |at| text.split_at(at));
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration: write e.g. 500ms, 60s or 5m"))?;
    let timeout = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        other => return Err(format!("unknown unit {other:?}: write ms, s or m (e.g. 60s)")),
    };
    if timeout.is_zero() {
        return Err("the call timeout must be more than 0".to_owned());
    }
    Ok(timeout)
}

/// Builds the enclave host the flags ask for. The one place a mode becomes a backend.
fn load_enclave(args: &HostArgs) -> anyhow::Result<EnclaveHost> {
    let serve = &args.serve;
    let with_kds = args.kds.is_some();
    let mut host = match (serve.mode, args.example.as_deref(), &args.enclave) {
        (_, Some(name), _) => load_builtin(serve, samples::Choice { name, with_kds })?,
        (Mode::Mock, None, _) => {
            bail!("--enclave needs --mode simulation: mock enclaves are compiled into this program, use --example")
        }
        (Mode::Simulation, None, Some(binary)) => {
            let load = || -> anyhow::Result<EnclaveHost> {
                let enclave = SignedEnclave::load(binary)?.with_limits(serve.limits());
                Ok(EnclaveHost::load_simulation(enclave, simulated_attestation_key(&serve.data_dir)?))
            };
            load().with_context(|| format!("cannot load enclave binary {}", binary.display()))?
        }
        (Mode::Simulation, None, None) => bail!("give --enclave <SIGNED_BIN> or --example <NAME>"),
    };
    if let Some(urls) = &args.kds {
        host.set_kds(crate::kds_cmd::transport(urls, args.kds_tls_ca.as_deref())?);
    }
    Ok(host)
}

/// An enclave compiled into this binary, in the mode the flags ask for.
fn load_builtin(serve: &ServeArgs, choice: samples::Choice<'_>) -> anyhow::Result<EnclaveHost> {
    match serve.mode {
        Mode::Mock => samples::mock_host(choice),
        Mode::Simulation => samples::simulation_host_with_limits(choice, &serve.data_dir, serve.limits()),
    }
}

/// Reads the platform secret from `dir` (refused if others could read it),
/// or creates it (32 random bytes, mode 0600).
fn platform_secret(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join(SECRET_FILE);
    let bytes = load_or_create_secret(&path, || {
        let mut secret = vec![0u8; 32];
        OsRng.fill_bytes(&mut secret);
        secret
    })?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        anyhow::anyhow!("platform secret {} has {} bytes, expected 32", path.display(), bytes.len())
    })
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
    let serve = &args.serve;
    let listener = prepare(serve)?;
    let host = load_enclave(args)?;
    if args.kds.is_none() && serve.store.as_deref().is_some_and(conclave_host::store::is_postgres_url) {
        eprintln!(
            "note: a shared store without --kds: each host's enclave has keys of its own, so hosts sharing this \
             database must share the platform secret, and clients attest again when they move between hosts"
        );
    }
    serve_enclave(serve, listener, host, args.example.as_deref())
}

/// Runs `conclave kds`.
pub fn run_kds(args: &KdsArgs) -> anyhow::Result<ExitCode> {
    let serve = &args.serve;
    let listener = prepare(serve)?;
    let host = load_builtin(serve, samples::Choice { name: samples::KDS, with_kds: false })?;
    eprintln!("key derivation service: product id {}", conclave_examples::kds::KDS_PRODUCT_ID);
    serve_enclave(serve, listener, host, None)
}

/// Binds (a bad address or a busy port fails before anything is created or
/// started) and prepares the data directory.
fn prepare(serve: &ServeArgs) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(&serve.listen).with_context(|| {
        format!("cannot listen on {:?}: give HOST:PORT, e.g. 127.0.0.1:8080 (port 0 picks a free port)", serve.listen)
    })?;
    listener.set_nonblocking(true).context("cannot configure the listening socket")?;
    if serve.data_dir.exists() && !serve.data_dir.is_dir() {
        anyhow::bail!("data directory {} exists and is not a directory", serve.data_dir.display());
    }
    create_private_dir(&serve.data_dir)?;
    check_data_dir(&serve.data_dir)?;
    Ok(listener)
}

/// Opens the store, starts the enclave and serves it until SIGINT or SIGTERM.
fn serve_enclave(
    serve: &ServeArgs,
    listener: std::net::TcpListener,
    host: EnclaveHost,
    page_sample: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let secret = platform_secret(&serve.data_dir)?;
    let spec = match &serve.store {
        Some(spec) => spec.clone(),
        None => serve.data_dir.join(STORE_FILE).to_string_lossy().into_owned(),
    };
    let store = conclave_host::store::open(&spec).context("cannot open the store")?;
    eprintln!("store: {}", store.describe());
    let mut service =
        HostService::with_store(host, store, ServiceConfig::new(secret)).context("cannot start the enclave")?;
    let mode = match serve.mode {
        Mode::Mock => "MOCK",
        Mode::Simulation => "SIMULATION",
    };
    eprintln!("WARNING: INSECURE: {mode} mode: {}", insecure_warning(serve.mode));
    // Clients pin the key that signs the served evidence with SIMKEY.
    let info = service.attestation().ok().and_then(|bytes| conclave_core::EnclaveInstanceInfo::decode(&bytes).ok());
    if let Some(conclave_core::Evidence::Simulation { attestation_key, .. }) = info.as_ref().map(|i| i.evidence()) {
        eprintln!("simulated attestation key: {} (clients pin it with SIMKEY:<hex>)", hex::encode(attestation_key));
    }
    let mut config = serve.web_config()?;
    if let Some(name) = page_sample {
        // The party's page at `/` shows this sample's form.
        config = config.with_page_sample(name);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_are_bytes_or_binary_units() {
        assert_eq!(parse_memory_limit("4GiB"), Ok(4 << 30));
        assert_eq!(parse_memory_limit("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory_limit("65536KiB"), Ok(64 << 20));
        assert_eq!(parse_memory_limit("67108864"), Ok(64 << 20));
        for bad in ["", "4G", "4 GiB", "GiB", "-1GiB", "1.5GiB", "99999999999GiB"] {
            assert!(parse_memory_limit(bad).is_err(), "{bad:?} accepted");
        }
        let small = parse_memory_limit("1MiB").unwrap_err();
        assert!(small.contains("at least 32MiB"), "{small}");
    }

    #[test]
    fn call_timeouts_are_positive_durations() {
        assert_eq!(parse_call_timeout("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_call_timeout("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_call_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_call_timeout("5m"), Ok(Duration::from_secs(300)));
        for bad in ["", "0", "0ms", "1h", "1.5s", "s", "-1s"] {
            assert!(parse_call_timeout(bad).is_err(), "{bad:?} accepted");
        }
    }
}
