//! `conclave bench`: what a mail costs, measured in one run on this machine.
//!
//! Three measurements, printed as one report so their ratios mean something
//! (same machine, same minute, same build):
//!
//! ```text
//!  1. start-up     measure once (sealed memfd) + sign ─► spawn + start the enclave ─► first client attestation
//!  2. crypto       client encrypt ─► enclave decrypt ─► enclave encrypt reply ─► client decrypt  (no host)
//!  3. load         N client threads ─HTTP─► web host (in process, 127.0.0.1:0) ─► worker ─► `reverse` enclave
//! ```
//!
//! The web host is the real one (`web::run` on a loopback listener, as the
//! demo starts it), with an on-disk SQLite store in a temporary directory;
//! nothing leaves the machine and everything stops when the run ends. It is a
//! command, not a timed test: it fails (exit 2) only when something is wrong
//! (a reply that is not the reversed body, a host error), never on timing.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Args;
use conclave_client::{EnclaveClient, HttpRelay};
use conclave_core::{
    Answer, EnclaveConstraint, MailRelay, PostOffice, PrivateKey, QueuedMail, RelayError, ReplyChain, RequestFrame,
    ResponseFrame, ResponseKind, StateCheckpoint, decrypt_mail, freshness::ChainLink,
};
use conclave_examples::reverse::{ReverseEnclave, reversed};
use conclave_host::{
    EnclaveHost, HostService, LocalRelayHandle, ServiceConfig, mock_identity,
    simulation::{MeasuredBinary, SignedEnclave, load_or_create_secret, measure, simulated_attestation_key},
    store::SqliteStore,
    web::{self, WebConfig},
};
use rand_core::{OsRng, RngCore};

use crate::{host_cmd::Mode, samples};

/// The sample every measurement talks to: it does no work of its own beyond
/// reversing the body, so what is measured is the platform.
const SAMPLE: &str = "reverse";
const TOPIC: &str = "bench";
/// Crypto rounds run before the timed ones (caches, branch predictors, allocator).
const CRYPTO_WARMUP: usize = 20;
/// More client threads than this is a typo, not a benchmark.
const MAX_CLIENTS: usize = 1024;
/// Bodies above this would only measure memory copies (and the host's 4 MiB default limit is raised to fit).
const MAX_BODY_BYTES: usize = 64 << 20;

/// Flags of `conclave bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
Measures, in one run, with the `reverse` sample enclave:
  1. start-up: measure the binary once (a sealed in-memory copy) and sign it, spawn and start the
     enclave, one client's first attestation (simulation mode; in mock mode the enclave is built in
     process); next to it, the time to spawn /bin/true as an anchor; with --enclave, the same for
     a signed enclave binary, as `conclave host --enclave` starts it;
  2. the cryptography of one mail round trip in process (client encrypt, enclave decrypt, enclave
     encrypt of the reply, client decrypt), with no host, median of --crypto-rounds;
  3. load: for each N of --clients, N threads, each its own EnclaveClient over HTTP with its own key
     and correlation id, send --mails mails of --body-bytes to the real web host on 127.0.0.1:0 and
     check every reply is the reversed body; mails/s and per-mail latency (send to decrypted reply).
Prints a report with the machine, the mode and the ratios of 3 to 2. Only loopback; temporary
data directories are removed at the end.

Exit codes: 0 when every measurement ran and every reply was right; 2 otherwise.")]
pub struct BenchArgs {
    /// How many concurrent clients to measure, comma-separated; one load round per value.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    clients: Vec<usize>,
    /// Mails each client sends in a load round, after its warm-up.
    #[arg(long, default_value_t = 500)]
    mails: usize,
    /// Size of each mail's body, in bytes.
    #[arg(long = "body-bytes", default_value_t = 100)]
    body_bytes: usize,
    /// How the enclave runs (both are INSECURE; simulation is a separate sandboxed process).
    #[arg(long, value_enum, default_value_t = Mode::Simulation)]
    mode: Mode,
    /// How many enclave start-ups to time.
    #[arg(long, default_value_t = 10)]
    startups: usize,
    /// Mails each client sends before a load round is timed (not counted).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// How many in-process crypto round trips to time.
    #[arg(long = "crypto-rounds", default_value_t = 1000)]
    crypto_rounds: usize,
    /// Where to create the temporary data directory (store, keys); its file
    /// system decides what a commit's fsync costs. Default: the system's temp directory.
    #[arg(long = "data-parent", value_name = "DIR")]
    data_parent: Option<PathBuf>,
    /// Also time the start-up of this signed enclave binary, as `conclave host --enclave` runs it
    /// (simulation mode; its signature is <SIGNED_BIN>.sig).
    #[arg(long, value_name = "SIGNED_BIN")]
    enclave: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    ensure!(!args.clients.is_empty(), "--clients needs at least one number");
    ensure!(
        args.clients.iter().all(|&n| (1..=MAX_CLIENTS).contains(&n)),
        "--clients values must be between 1 and {MAX_CLIENTS}"
    );
    ensure!(args.mails > 0, "--mails must be at least 1");
    ensure!(args.startups > 0, "--startups must be at least 1");
    ensure!(args.crypto_rounds > 0, "--crypto-rounds must be at least 1");
    ensure!(args.body_bytes <= MAX_BODY_BYTES, "--body-bytes must be at most {MAX_BODY_BYTES}");

    let machine = Machine::read();
    print_heading(args, &machine);

    let data = TempDir::new_in(&args.data_parent.clone().unwrap_or_else(std::env::temp_dir))?;
    println!("data directory: {} (file system {})", data.0.display(), file_system_of(&data.0));
    let startup = measure_startup(Subject::Sample(args.mode), &data.0, args.startups)?;
    print_startup(Subject::Sample(args.mode), &startup);
    if let Some(binary) = &args.enclave {
        // Its own data directory: the sample's store holds the sample's state.
        let data = TempDir::new_in(&data.0)?;
        let subject = Subject::Binary(binary);
        let startup = measure_startup(subject, &data.0, args.startups)?;
        print_startup(subject, &startup);
    }

    let crypto = measure_crypto(args.body_bytes, args.crypto_rounds)?;
    print_crypto(args.body_bytes, &crypto, machine.cores);

    let rounds = measure_load(args, &data.0)?;
    print_load(args, &rounds, &crypto, machine.cores);

    println!();
    println!("load average at end: {}", Machine::load_average());
    println!(
        "OK: {} mails through the web host, every reply was the reversed body.",
        rounds.iter().map(|r| r.latencies.len()).sum::<usize>()
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- machine

pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self { cores, cpu }
    }

    /// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
    pub(crate) fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".to_owned())
    }
}

fn print_heading(args: &BenchArgs, machine: &Machine) {
    let mode = match args.mode {
        Mode::Simulation => {
            "SIMULATION (INSECURE: a sandboxed process, but the operator can read it and signs its evidence)"
        }
        Mode::Mock => "MOCK (INSECURE: the enclave runs inside the host process)",
    };
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned());
    println!("conclave bench: the `{SAMPLE}` sample enclave, mode {mode}");
    println!("machine: {} cores (available parallelism), CPU {:?}", machine.cores, machine.cpu);
    println!("date: {date}; load average at start: {}", Machine::load_average());
    println!(
        "settings: clients {}; {} mails per client after {} warm-up; body {} B; {} start-ups; {} crypto rounds",
        args.clients.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        args.mails,
        args.warmup,
        args.body_bytes,
        args.startups,
        args.crypto_rounds
    );
}

// ---------------------------------------------------------------- host setup

fn load_host(mode: Mode, data_dir: &Path) -> anyhow::Result<EnclaveHost> {
    match mode {
        Mode::Simulation => samples::simulation_host(SAMPLE, data_dir),
        Mode::Mock => samples::mock_host(samples::Choice::sample(SAMPLE)),
    }
}

/// The platform secret in `data_dir` (created on first use).
fn platform_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let secret = load_or_create_secret(&data_dir.join("platform.secret"), || {
        let mut s = vec![0u8; 32];
        OsRng.fill_bytes(&mut s);
        s
    })?;
    secret.try_into().map_err(|_| anyhow!("platform secret must be 32 bytes"))
}

/// Opens the store and starts the enclave (in simulation mode: spawns its process).
fn start_service(host: EnclaveHost, data_dir: &Path) -> anyhow::Result<HostService> {
    let store = SqliteStore::open(&data_dir.join("host.db"))?;
    let secret = platform_secret(data_dir)?;
    HostService::new(host, store, ServiceConfig::new(secret)).context("cannot start the enclave")
}

/// The constraint a careful client of this host would write: the measured
/// code hash and the development signer (simulation), or the mock identity.
fn constraint(mode: Mode, data_dir: &Path) -> anyhow::Result<EnclaveConstraint> {
    let text = match mode {
        Mode::Simulation => {
            let exe = std::env::current_exe().context("cannot find this program's binary")?;
            let key = samples::development_key(data_dir)?;
            let signer = conclave_core::signature::code_hash(key.verifying_key().as_bytes());
            format!(
                "C:{} S:{} PROD:{} SEC:INSECURE",
                hex::encode(measure(&exe)?),
                hex::encode(signer),
                samples::find(SAMPLE)?.product_id
            )
        }
        Mode::Mock => format!("C:{} SEC:INSECURE", hex::encode(mock_identity::<ReverseEnclave>().code_hash)),
    };
    Ok(EnclaveConstraint::parse(&text)?)
}

// ---------------------------------------------------------------- 1. start-up

struct Startup {
    /// `simulation_host`: read the development key, copy the binary into a
    /// sealed memfd while hashing it, sign the hash, read the attestation key.
    load: Vec<Duration>,
    /// Open the store and read the platform secret.
    store: Vec<Duration>,
    /// `HostService::new`: spawn from the memfd, limits, sandbox, fresh keys, evidence.
    start: Vec<Duration>,
    /// One client's `start()`: fetch, decode, verify and check the attestation.
    attest: Vec<Duration>,
    total: Vec<Duration>,
    /// SHA-256 of the binary alone, timed as often as the start-ups.
    measure: Vec<Duration>,
    /// `MeasuredBinary::open` alone: read, hash and copy into a sealed memfd.
    image: Vec<Duration>,
    /// The anchor: spawn `/bin/true` and wait for it, as often as the start-ups.
    spawn_true: Vec<Duration>,
    binary: Option<(PathBuf, u64)>,
    sandbox: Option<String>,
}

/// The program whose spawn-and-exit time is the start-up's anchor.
const ANCHOR: &str = "/bin/true";

/// What a start-up measurement starts.
#[derive(Clone, Copy)]
enum Subject<'a> {
    /// The `reverse` sample, built into this binary.
    Sample(Mode),
    /// A signed enclave binary (simulation mode).
    Binary(&'a Path),
}

impl Subject<'_> {
    fn load(self, data_dir: &Path) -> anyhow::Result<EnclaveHost> {
        match self {
            Self::Sample(mode) => load_host(mode, data_dir),
            Self::Binary(path) => {
                let enclave = SignedEnclave::load(path)?;
                Ok(EnclaveHost::load_simulation(enclave, simulated_attestation_key(data_dir)?))
            }
        }
    }

    fn constraint(self, data_dir: &Path) -> anyhow::Result<EnclaveConstraint> {
        match self {
            Self::Sample(mode) => constraint(mode, data_dir),
            Self::Binary(path) => {
                Ok(EnclaveConstraint::parse(&format!("C:{} SEC:INSECURE", hex::encode(measure(path)?)))?)
            }
        }
    }

    /// The binary whose measurement the start-up includes.
    fn binary(self) -> anyhow::Result<Option<PathBuf>> {
        Ok(match self {
            Self::Sample(Mode::Simulation) => {
                Some(std::env::current_exe().context("cannot find this program's binary")?)
            }
            Self::Sample(Mode::Mock) => None,
            Self::Binary(path) => Some(path.to_owned()),
        })
    }
}

fn measure_startup(subject: Subject<'_>, data_dir: &Path, repeats: usize) -> anyhow::Result<Startup> {
    let constraint = subject.constraint(data_dir)?;
    // One untimed start creates the keys and the store, so every timed start
    // is what a host restart on an existing data directory costs; otherwise
    // the first would also time key generation and SQLite schema creation.
    let mut first = start_service(subject.load(data_dir)?, data_dir)?;
    let sandbox = first.host_mut().sandbox_report().map(str::to_owned);
    drop(first);

    let mut startup = Startup {
        load: Vec::new(),
        store: Vec::new(),
        start: Vec::new(),
        attest: Vec::new(),
        total: Vec::new(),
        measure: Vec::new(),
        image: Vec::new(),
        spawn_true: Vec::new(),
        binary: None,
        sandbox,
    };
    for _ in 0..repeats {
        let t0 = Instant::now();
        let host = subject.load(data_dir)?;
        let t1 = Instant::now();
        let store = SqliteStore::open(&data_dir.join("host.db"))?;
        let secret = platform_secret(data_dir)?;
        let t2 = Instant::now();
        let service = HostService::new(host, store, ServiceConfig::new(secret)).context("cannot start the enclave")?;
        let t3 = Instant::now();
        let mut client = EnclaveClient::new(LocalRelayHandle::new(service), constraint.clone());
        client.start().context("the enclave's first attestation failed")?;
        let t4 = Instant::now();
        // Dropping the client drops the service, which stops the enclave process.
        drop(client);
        startup.load.push(t1 - t0);
        startup.store.push(t2 - t1);
        startup.start.push(t3 - t2);
        startup.attest.push(t4 - t3);
        startup.total.push(t4 - t0);
    }
    if let Some(exe) = subject.binary()? {
        let size = std::fs::metadata(&exe).with_context(|| format!("cannot read {}", exe.display()))?.len();
        for _ in 0..repeats {
            let t = Instant::now();
            measure(&exe)?;
            startup.measure.push(t.elapsed());
            let t = Instant::now();
            let image = MeasuredBinary::open(&exe)?;
            startup.image.push(t.elapsed());
            // Freeing the copy is not part of making it.
            drop(image);
        }
        startup.binary = Some((exe, size));
    }
    if Path::new(ANCHOR).exists() {
        for _ in 0..repeats {
            let t = Instant::now();
            let status = std::process::Command::new(ANCHOR)
                .env_clear()
                .status()
                .with_context(|| format!("cannot run {ANCHOR}"))?;
            startup.spawn_true.push(t.elapsed());
            ensure!(status.success(), "{ANCHOR} failed: {status}");
        }
    }
    Ok(startup)
}

fn print_startup(subject: Subject<'_>, s: &Startup) {
    println!();
    let mode = match subject {
        Subject::Sample(mode) => mode,
        Subject::Binary(_) => Mode::Simulation,
    };
    match subject {
        Subject::Sample(Mode::Simulation) => println!(
            "1. Start-up of a simulation enclave ({} starts on one data directory, after one untimed first start)",
            s.total.len()
        ),
        Subject::Sample(Mode::Mock) => println!(
            "1. Start-up of a mock enclave, in process, no binary ({} starts, after one untimed first start)",
            s.total.len()
        ),
        Subject::Binary(path) => println!(
            "1b. Start-up of the signed enclave binary {} ({} starts, after one untimed first start)",
            path.display(),
            s.total.len()
        ),
    }
    if let Some(sandbox) = &s.sandbox {
        println!("   {sandbox}");
    }
    if let Some((path, size)) = &s.binary {
        println!("   binary {} ({:.1} MiB, {size} bytes)", path.display(), *size as f64 / (1 << 20) as f64);
    }
    println!("   {:<62} {:>10} {:>10} {:>10}", "step", "median", "min", "max");
    let load_label = match subject {
        Subject::Sample(Mode::Simulation) => "load: key, read + hash once into a sealed memfd, sign",
        Subject::Sample(Mode::Mock) => "load: build the enclave value",
        Subject::Binary(_) => "load: read + hash once into a sealed memfd, check .sig",
    };
    let start_label = match mode {
        Mode::Simulation => "start: spawn from the memfd, limits, sandbox, keys, evidence",
        Mode::Mock => "start: keys, evidence",
    };
    let mut rows = vec![
        (load_label, &s.load),
        ("store: open the store, read the platform secret", &s.store),
        (start_label, &s.start),
        ("first attestation: fetch, verify, check constraint", &s.attest),
        ("total", &s.total),
    ];
    if s.binary.is_some() {
        rows.push(("alone: SHA-256 of the binary (file in page cache)", &s.measure));
        rows.push(("alone: read + hash + copy into a sealed memfd", &s.image));
    }
    if !s.spawn_true.is_empty() {
        rows.push(("anchor: spawn /bin/true and wait for it", &s.spawn_true));
    }
    for (label, values) in rows {
        let st = Stats::of(values);
        println!("   {label:<62} {:>10} {:>10} {:>10}", ms(st.median), ms(st.min), ms(st.max));
    }
    if !s.spawn_true.is_empty() {
        let total = Stats::of(&s.total).median.as_secs_f64();
        let anchor = Stats::of(&s.spawn_true).median.as_secs_f64();
        println!("   total / anchor (medians): {:.1}", total / anchor);
    }
}

// ---------------------------------------------------------------- 2. crypto

/// Medians of the four steps of one round trip, and of the round trip.
struct Crypto {
    client_encrypt: Duration,
    enclave_decrypt: Duration,
    enclave_encrypt: Duration,
    client_decrypt: Duration,
    round_trip: Duration,
    rounds: usize,
}

/// Times exactly the cryptography a web round trip does, with the same
/// types the client and the enclave runtime use (a `PostOffice` on each
/// side, default padding, the state frame in the reply), and nothing else.
fn measure_crypto(body_bytes: usize, rounds: usize) -> anyhow::Result<Crypto> {
    let client_key = PrivateKey::generate(&mut OsRng);
    let enclave_key = PrivateKey::generate(&mut OsRng);
    let mut client = PostOffice::new(client_key.clone(), enclave_key.public_key(), TOPIC)?;
    let mut enclave = PostOffice::new(enclave_key.clone(), client_key.public_key(), TOPIC)?;
    // The client prepends a request frame to every mail, the runtime a
    // response frame to every reply, inside the encryption: the same frames
    // go here (building and parsing them takes nanoseconds).
    let request = RequestFrame { request_id: [7; 16], chain: ReplyChain::START, runs: vec![StateCheckpoint::GENESIS] };
    let response = ResponseFrame {
        kind: ResponseKind::Reply,
        state: StateCheckpoint::GENESIS,
        link: Some(ChainLink { index: 1, previous: [0; 32] }),
        answers: Some(Answer { topic: TOPIC.to_owned(), sequence_number: 0, request_id: [7; 16] }),
    };
    let mut body = vec![0u8; body_bytes];
    let mut steps: [Vec<Duration>; 5] = Default::default();
    for round in 0..CRYPTO_WARMUP + rounds {
        OsRng.fill_bytes(&mut body);
        let t0 = Instant::now();
        let mail = client.encrypt_mail(&request.wrap(&body), &mut OsRng)?;
        let t1 = Instant::now();
        let opened = decrypt_mail(&enclave_key, &mail)?;
        let (_, payload) = RequestFrame::unwrap(&opened.body)?;
        let t2 = Instant::now();
        let reply = enclave.encrypt_mail(&response.wrap(&reversed(payload)), &mut OsRng)?;
        let t3 = Instant::now();
        let answer = client.decrypt_mail(&reply)?;
        let (_, answer_body) = ResponseFrame::unwrap(&answer.body)?;
        let t4 = Instant::now();
        ensure!(answer_body == reversed(&body).as_slice(), "the in-process round trip returned a wrong body");
        if round >= CRYPTO_WARMUP {
            for (step, d) in steps.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]) {
                step.push(d);
            }
        }
    }
    let median = |v: &Vec<Duration>| Stats::of(v).median;
    Ok(Crypto {
        client_encrypt: median(&steps[0]),
        enclave_decrypt: median(&steps[1]),
        enclave_encrypt: median(&steps[2]),
        client_decrypt: median(&steps[3]),
        round_trip: median(&steps[4]),
        rounds,
    })
}

impl Crypto {
    /// Round trips per second if every core did nothing but this cryptography.
    fn bound(&self, cores: usize) -> f64 {
        cores as f64 / self.round_trip.as_secs_f64()
    }
}

fn print_crypto(body_bytes: usize, c: &Crypto, cores: usize) {
    println!();
    println!(
        "2. In-process cryptography of one round trip, {body_bytes} B body, no host (median of {} rounds)",
        c.rounds
    );
    for (label, d) in [
        ("client encrypt (PostOffice)", c.client_encrypt),
        ("enclave decrypt", c.enclave_decrypt),
        ("enclave encrypt reply (state frame + reversed body)", c.enclave_encrypt),
        ("client decrypt", c.client_decrypt),
        ("round trip (median of the sums)", c.round_trip),
    ] {
        println!("   {label:<58} {:>10}", us(d));
    }
    println!("   crypto-bound throughput on {cores} cores: {:.0} mails/s ({cores} / round trip)", c.bound(cores));
}

// ---------------------------------------------------------------- 3. load

/// A web host running on a background thread (as in the demo).
struct RunningHost {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl RunningHost {
    fn start(service: HostService, config: WebConfig) -> anyhow::Result<(Self, SocketAddr)> {
        // Two async workers as in the demo: the handlers only parse and queue;
        // the enclave runs on the web host's own worker thread.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).context("cannot bind the web host")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(web::run(listener, service, config, async {
                let _ = stopped.await;
            }))?;
            Ok(())
        });
        Ok((Self { stop, thread }, addr))
    }

    fn shut_down(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.thread.join().map_err(|_| anyhow!("the web host thread panicked"))?
    }
}

/// An HttpRelay that notes when the client acknowledges a reply. The client
/// acknowledges right after it has decrypted and checked the reply, inside
/// `send_mail`; that instant is the latency's end, so the acknowledgement's
/// own HTTP request is not counted in it (it is in the "call" figure).
struct TimedRelay {
    inner: HttpRelay,
    decrypted_at: Option<Instant>,
}

impl MailRelay for TimedRelay {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        self.inner.attestation()
    }
    fn deliver(&mut self, id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        self.inner.deliver(id, mail)
    }
    fn poll(&mut self, id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        self.inner.poll(id)
    }
    fn acknowledge(&mut self, id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.decrypted_at = Some(Instant::now());
        self.inner.acknowledge(id, ids)
    }
}

/// One load round: N clients.
struct Round {
    clients: usize,
    /// Send → decrypted and checked reply, every mail of every client.
    latencies: Vec<Duration>,
    /// The whole `send_mail` call, including the acknowledgement request.
    calls: Vec<Duration>,
    wall: Duration,
    /// Share of all cores busy during the round, machine-wide (clients, host and enclave process alike).
    cpu_busy: Option<f64>,
}

impl Round {
    fn mails_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

struct ClientRun {
    latencies: Vec<Duration>,
    calls: Vec<Duration>,
    finished: Instant,
}

fn measure_load(args: &BenchArgs, data_dir: &Path) -> anyhow::Result<Vec<Round>> {
    let constraint = constraint(args.mode, data_dir)?;
    let service = start_service(load_host(args.mode, data_dir)?, data_dir)?;
    // Each client has at most one request in flight, so a queue as long as
    // the largest N never answers BUSY; the body limit fits the chosen body.
    let largest = args.clients.iter().copied().max().unwrap_or(1);
    let defaults = WebConfig::default();
    let config = WebConfig::default()
        .with_queue_capacity(defaults.queue_capacity.max(largest))
        .with_max_body_bytes(defaults.max_body_bytes.max(args.body_bytes * 2 + (1 << 20)));
    let (host, addr) = RunningHost::start(service, config)?;
    let url = format!("http://{addr}");
    let rounds = args.clients.iter().map(|&n| load_round(args, &url, &constraint, n)).collect::<Result<Vec<_>, _>>();
    // Stop the host whatever happened, then report the first failure.
    let stopped = host.shut_down();
    let rounds = rounds?;
    stopped?;
    Ok(rounds)
}

fn load_round(args: &BenchArgs, url: &str, constraint: &EnclaveConstraint, n: usize) -> anyhow::Result<Round> {
    // Every client attests and warms up first; the clock starts when all of
    // them are ready, so attestation and connection set-up are not counted.
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (url, constraint, barrier) = (url.to_owned(), constraint.clone(), barrier.clone());
            let (mails, warmup, body_bytes) = (args.mails, args.warmup, args.body_bytes);
            std::thread::Builder::new()
                .name(format!("bench-client-{i}"))
                .spawn(move || run_client(&url, constraint, mails, warmup, body_bytes, &barrier))
        })
        .collect::<Result<_, _>>()
        .context("cannot start a client thread")?;
    barrier.wait();
    let started = Instant::now();
    let cpu_before = CpuTimes::read();
    let mut round =
        Round { clients: n, latencies: Vec::new(), calls: Vec::new(), wall: Duration::ZERO, cpu_busy: None };
    let mut failure = None;
    let mut finished = started;
    for (i, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok(run)) => {
                round.latencies.extend(run.latencies);
                round.calls.extend(run.calls);
                finished = finished.max(run.finished);
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e.context(format!("client {i} of {n} failed")));
            }
            Err(_) => {
                failure.get_or_insert(anyhow!("client {i} of {n} panicked"));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    round.wall = finished - started;
    round.cpu_busy = cpu_before.zip(CpuTimes::read()).and_then(|(before, after)| after.busy_since(&before));
    Ok(round)
}

fn run_client(
    url: &str,
    constraint: EnclaveConstraint,
    mails: usize,
    warmup: usize,
    body_bytes: usize,
    barrier: &Barrier,
) -> anyhow::Result<ClientRun> {
    let ready = (|| -> anyhow::Result<EnclaveClient<TimedRelay>> {
        let relay = TimedRelay { inner: HttpRelay::new(url)?, decrypted_at: None };
        let mut client = EnclaveClient::new(relay, constraint);
        client.start().context("cannot attest the enclave")?;
        let mut body = vec![0u8; body_bytes];
        for _ in 0..warmup {
            round_trip(&mut client, &mut body)?;
        }
        Ok(client)
    })();
    // Reach the barrier even after a failure, or the other threads would wait forever.
    barrier.wait();
    let mut client = ready?;
    let mut run =
        ClientRun { latencies: Vec::with_capacity(mails), calls: Vec::with_capacity(mails), finished: Instant::now() };
    let mut body = vec![0u8; body_bytes];
    for _ in 0..mails {
        let (latency, call) = round_trip(&mut client, &mut body)?;
        run.latencies.push(latency);
        run.calls.push(call);
    }
    run.finished = Instant::now();
    Ok(run)
}

/// Sends one fresh random body and checks the reply; returns (send → decrypted reply, whole call).
fn round_trip(client: &mut EnclaveClient<TimedRelay>, body: &mut [u8]) -> anyhow::Result<(Duration, Duration)> {
    // Fresh bytes every time, so an answer to an earlier mail cannot pass the check.
    OsRng.fill_bytes(body);
    client.relay_mut().decrypted_at = None;
    let sent = Instant::now();
    let reply = client.send_mail(TOPIC, body)?.context("the enclave did not answer at once")?;
    let done = Instant::now();
    if reply.body != reversed(body) {
        bail!("wrong reply: {} bytes that are not the reversed body", reply.body.len());
    }
    let decrypted = client.relay_mut().decrypted_at.context("the client did not acknowledge the reply")?;
    Ok((decrypted - sent, done - sent))
}

fn print_load(args: &BenchArgs, rounds: &[Round], crypto: &Crypto, cores: usize) {
    println!();
    println!(
        "3. Load through the web host on 127.0.0.1 ({} mails per client after {} warm-up, {} B bodies)",
        args.mails, args.warmup, args.body_bytes
    );
    println!("   each mail: POST /v1/mail (enclave call + store commit) and POST ack (store delete); latency is");
    println!("   send -> decrypted, checked reply; `call` adds the acknowledgement (N / call mean ~ mails/s);");
    println!("   x_crypto = p50 / crypto round trip; of_bound = mails/s / crypto-bound throughput on {cores} cores;");
    println!("   cpu_busy = share of all cores busy during the round, whole machine (/proc/stat)");
    println!(
        "   {:>7} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>12} {:>13} {:>9} {:>9} {:>9}",
        "clients",
        "mails",
        "wall_s",
        "mails/s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "call_p50_ms",
        "call_mean_ms",
        "x_crypto",
        "of_bound",
        "cpu_busy"
    );
    for r in rounds {
        let lat = Stats::of(&r.latencies);
        let call = Stats::of(&r.calls);
        println!(
            "   {:>7} {:>7} {:>8.2} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>12.3} {:>13.3} {:>9.1} {:>9.3} {:>9}",
            r.clients,
            r.latencies.len(),
            r.wall.as_secs_f64(),
            r.mails_per_second(),
            lat.median.as_secs_f64() * 1e3,
            lat.p99.as_secs_f64() * 1e3,
            lat.max.as_secs_f64() * 1e3,
            call.median.as_secs_f64() * 1e3,
            mean(&r.calls).as_secs_f64() * 1e3,
            lat.median.as_secs_f64() / crypto.round_trip.as_secs_f64(),
            r.mails_per_second() / crypto.bound(cores),
            r.cpu_busy.map_or_else(|| "-".to_owned(), |b| format!("{:.0}%", b * 100.0)),
        );
    }
}

// ---------------------------------------------------------------- helpers

struct Stats {
    min: Duration,
    median: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles (the value of a real sample, never an interpolation).
    fn of(values: &[Duration]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let rank = |q: f64| -> Duration {
            if sorted.is_empty() {
                return Duration::ZERO;
            }
            let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index]
        };
        Self {
            min: sorted.first().copied().unwrap_or_default(),
            median: rank(0.5),
            p99: rank(0.99),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// The machine-wide CPU counters of /proc/stat's first line, in clock ticks.
struct CpuTimes {
    idle: u64,
    total: u64,
}

impl CpuTimes {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> =
            stat.lines().next()?.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user.
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        let total = fields.iter().take(8).sum();
        Some(Self { idle, total })
    }

    fn busy_since(&self, before: &Self) -> Option<f64> {
        let total = self.total.checked_sub(before.total).filter(|&t| t > 0)?;
        let idle = self.idle.checked_sub(before.idle)?;
        Some(1.0 - idle as f64 / total as f64)
    }
}

fn mean(values: &[Duration]) -> Duration {
    let n = u32::try_from(values.len()).unwrap_or(u32::MAX).max(1);
    values.iter().sum::<Duration>() / n
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The type of the file system `path` is on (the longest mount point in
/// /proc/mounts that contains it): tmpfs makes SQLite's fsync nearly free.
fn file_system_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    std::fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|mounts| {
            mounts
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split_whitespace();
                    let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
                    path.starts_with(point).then(|| (point.len(), format!("{kind} at {point}")))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, described)| described)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A temporary data directory, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new_in(parent: &Path) -> anyhow::Result<Self> {
        let mut id = [0u8; 8];
        OsRng.fill_bytes(&mut id);
        let path = parent.join(format!("conclave-bench-{}", hex::encode(id)));
        // Private (0700): the host refuses a data directory others can write.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Stats::of(&values);
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.median, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        let one = Stats::of(&[Duration::from_millis(3)]);
        assert_eq!((one.median, one.p99), (Duration::from_millis(3), Duration::from_millis(3)));
    }
}
