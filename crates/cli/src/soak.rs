//! `conclave soak`: hostile and heavy load against a real `conclave host`,
//! with the figures `docs/reliability.md` quotes.
//!
//! ```text
//!  conclave soak ──spawns──► conclave host (127.0.0.1:0, short timeouts, temp data dir) ──► enclave process
//!       │  slow-body | stalled | slowloris: N raw sockets that misbehave,
//!       │      while one normal client (HttpRelay) sends mail and counts successes
//!       │  mixed: N clients, each on its own connection, loop attestation, mail + ack, poll
//!       └─ samples VmRSS of the host and enclave processes every 250 ms; again after --settle
//! ```
//!
//! Only loopback, bounded in count and time, and everything stops when the
//! run ends. It is a command, not a test: it exits 1 when a figure misses
//! its target (mail success under 99 %, a slow connection left open past its
//! timeout, an attestation refused, a status outside 200/204/429/503+Retry-After).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use conclave_client::HttpRelay;
use conclave_core::{EnclaveInstanceInfo, MailRelay, PostOffice, PrivateKey, PublicKey};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    bench::{Machine, TempDir},
    host_cmd::{Mode, check_descriptor_limit, seconds},
};

/// What the load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N uploads that send their body one byte every 100 ms.
    SlowBody,
    /// N uploads that send a head and 10 bytes of body, then nothing.
    Stalled,
    /// N connections that send a request head one header line every 500 ms, never finishing it.
    Slowloris,
    /// N clients, each on its own kept-alive connection, looping attestation, mail + ack and poll.
    Mixed,
}

/// Flags of `conclave soak`.
#[derive(Debug, Args)]
#[command(after_help = "\
Starts `conclave host --example reverse` on 127.0.0.1:0 (this binary, a temporary data directory,
the timeouts given here), then:
  slow-body, stalled, slowloris: opens N misbehaving connections and, while they are open, one
    normal client sends mail for --duration; reports its success rate and how long the host took
    to close each slow connection (target: within its timeout plus 2 s).
  mixed: N clients for --duration, each looping GET /v1/attestation, POST /v1/mail (+ ack of the
    reply, honouring Retry-After on 503) and GET /v1/mail/{id}; reports the statuses per endpoint
    (target: no attestation refused; only 200, 204, 429, and 503 with Retry-After).
Host and enclave RSS (VmRSS) are sampled during the load and again --settle after it. Only
loopback addresses are used; the host is stopped and its data directory removed at the end.
Raise `ulimit -n` above 2 x N.

Exit codes:
  0  every figure met its target
  1  a figure missed its target (the report says which)
  2  the run could not be made (host did not start, bad flags)")]
pub struct SoakArgs {
    /// What the load does.
    #[arg(long, value_enum, default_value_t = Scenario::Mixed)]
    scenario: Scenario,
    /// How many misbehaving connections, or mixed clients.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    connections: usize,
    /// Seconds the load lasts.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds)]
    duration: Duration,
    /// Seconds to wait after the load before the last memory sample.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    settle: Duration,
    /// How the enclave runs.
    #[arg(long, value_enum, default_value_t = Mode::Simulation)]
    mode: Mode,
    /// The host's --header-timeout.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds)]
    header_timeout: Duration,
    /// The host's --body-timeout.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds)]
    body_timeout: Duration,
    /// The host's --idle-timeout.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    idle_timeout: Duration,
    /// Size of each mail body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    body_bytes: usize,
}

/// Bounds that keep a typo from becoming a flood.
const MAX_CONNECTIONS: usize = 5000;
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Slack for the host to close a slow connection after its timeout (timers, scheduling on a busy machine).
const GRACE: Duration = Duration::from_secs(2);

/// Runs `conclave soak`.
pub fn run(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        bail!("--connections must be 1 to {MAX_CONNECTIONS}");
    }
    if args.duration > MAX_DURATION || args.settle > MAX_DURATION {
        bail!("--duration and --settle must be at most {} s", MAX_DURATION.as_secs());
    }
    check_descriptor_limit(args.connections.saturating_mul(2));
    let data = TempDir::new_in(&std::env::temp_dir())?;
    let mut host = SoakHost::start(args, &data.0)?;
    let sampler = Sampler::start(host.child.id());
    let machine = Machine::read();
    println!("# conclave soak: {:?}, {} connections, {} s", args.scenario, args.connections, args.duration.as_secs());
    println!("machine: {} cores, {}; load average before: {}", machine.cores, machine.cpu, Machine::load_average());
    println!(
        "host: --mode {:?}, --header-timeout {:?}, --body-timeout {:?}, --idle-timeout {:?}, mail body {} bytes",
        args.mode, args.header_timeout, args.body_timeout, args.idle_timeout, args.body_bytes
    );
    let baseline = sampler.now();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = match args.scenario {
        Scenario::Mixed => runtime.block_on(mixed(args, host.addr)),
        attack => attack_with_normal_client(&runtime, args, attack, &host.url, host.addr),
    };
    let peak = sampler.peak();
    let after_load = sampler.now();
    std::thread::sleep(args.settle);
    let settled = sampler.now();
    sampler.stop();
    host.stop();
    let passed = outcome?;
    println!("memory (VmRSS, MiB)   host   enclave");
    for (label, sample) in [("before load", baseline), ("peak during load", peak), ("end of load", after_load)]
        .into_iter()
        .chain([(&*format!("{} s after load", args.settle.as_secs()), settled)])
    {
        println!("  {label:<20} {:>6} {:>9}", mib(sample.host), mib(sample.enclave));
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_owned(), |kib| format!("{:.1}", kib as f64 / 1024.0))
}

// ---------------------------------------------------------------- the host

/// The `conclave host` child process under load.
struct SoakHost {
    child: Child,
    url: String,
    addr: SocketAddr,
}

impl SoakHost {
    fn start(args: &SoakArgs, data: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this program to start the host")?;
        let mode = match args.mode {
            Mode::Simulation => "simulation",
            Mode::Mock => "mock",
        };
        let secs = |d: Duration| format!("{}", d.as_secs_f64());
        let mut child = Command::new(exe)
            .args(["host", "--example", "reverse", "--mode", mode, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.join("host"))
            .args(["--header-timeout", &secs(args.header_timeout)])
            .args(["--body-timeout", &secs(args.body_timeout)])
            .args(["--idle-timeout", &secs(args.idle_timeout)])
            .args(["--max-connections", &(args.connections * 2 + 64).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start conclave host")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?)
            .read_line(&mut line)
            .context("cannot read the host's address")?;
        let url = line.trim().strip_prefix("listening on ").ok_or_else(|| anyhow!("the host said {line:?}"))?;
        let addr = url.trim_start_matches("http://").parse().context("the host printed no address")?;
        Ok(Self { child, url: url.to_owned(), addr })
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SoakHost {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

// ---------------------------------------------------------------- memory

/// RSS of the host and its enclave process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    host: Option<u64>,
    enclave: Option<u64>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The host's child process (the simulation enclave), if any.
fn child_of(pid: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let children = std::fs::read_to_string(task.path().join("children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    })
}

/// Samples RSS every 250 ms in a thread and keeps the peak.
struct Sampler {
    host: u32,
    peak: Arc<Mutex<Sample>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(host: u32) -> Self {
        let peak = Arc::new(Mutex::new(Sample::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak_in, stop_in) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                let now = sample(host);
                let mut peak = peak_in.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                peak.host = peak.host.max(now.host);
                peak.enclave = peak.enclave.max(now.enclave);
                drop(peak);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Self { host, peak, stop, thread: Some(thread) }
    }

    fn now(&self) -> Sample {
        sample(self.host)
    }

    fn peak(&self) -> Sample {
        *self.peak.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sample(host: u32) -> Sample {
    Sample { host: rss_kib(host), enclave: child_of(host).and_then(rss_kib) }
}

// ---------------------------------------------------------------- attacks

/// One misbehaving connection: opens, misbehaves until the host closes it,
/// and returns how long that took (`None`: still open at the end of the run).
async fn attacker(
    addr: SocketAddr,
    scenario: Scenario,
    id: usize,
    give_up: Instant,
) -> anyhow::Result<Option<Duration>> {
    let mut stream = TcpStream::connect(addr).await?;
    let opened = Instant::now();
    let (mut read, mut write) = stream.split();
    let head =
        format!("POST /v1/mail HTTP/1.1\r\nHost: soak\r\nCorrelation-ID: soak-{id}\r\nContent-Length: 1000000\r\n\r\n");
    let misbehave = async {
        match scenario {
            Scenario::Stalled => {
                write.write_all(head.as_bytes()).await?;
                write.write_all(b"0123456789").await?;
                std::future::pending::<()>().await;
            }
            Scenario::SlowBody => {
                write.write_all(head.as_bytes()).await?;
                loop {
                    write.write_all(b"x").await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Scenario::Slowloris | Scenario::Mixed => {
                write.write_all(b"GET /v1/health HTTP/1.1\r\nHost: soak\r\n").await?;
                for line in 0u64.. {
                    write.write_all(format!("X-Slow-{line}: {line}\r\n").as_bytes()).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        // The host's answer (a 408 for a body) then its close, or a reset.
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = closed => Ok(Some(opened.elapsed())),
        // A write failing means the host closed the connection.
        _ = misbehave => Ok(Some(opened.elapsed())),
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(give_up)) => Ok(None),
    }
}

/// What the normal client saw while the attack was on.
#[derive(Debug, Default)]
struct NormalClient {
    attempts: u64,
    delivered: u64,
    failures: BTreeMap<String, u64>,
}

/// Sends mail through HttpRelay until `stop`, resending the same bytes after a failure.
fn normal_client(url: &str, body_bytes: usize, stop: &AtomicBool) -> anyhow::Result<NormalClient> {
    let mut relay = HttpRelay::with_timeout(url, Duration::from_secs(30))?;
    let info = EnclaveInstanceInfo::decode(&relay.attestation()?)?;
    let mut post_office = PostOffice::new(PrivateKey::generate(&mut OsRng), *info.encryption_key(), "soak")?;
    let mut seen = NormalClient::default();
    let mut body = vec![0u8; body_bytes];
    let mut pending: Option<Vec<u8>> = None;
    while !stop.load(Ordering::Relaxed) {
        let mail = match pending.take() {
            Some(mail) => mail,
            None => {
                OsRng.fill_bytes(&mut body);
                post_office.encrypt_mail(&body, &mut OsRng)?
            }
        };
        seen.attempts += 1;
        match relay.deliver("soak-normal", &mail) {
            Ok(reply) => {
                seen.delivered += 1;
                if let Some(reply) = reply {
                    relay.acknowledge("soak-normal", &[reply.id])?;
                }
            }
            Err(error) => {
                *seen.failures.entry(error.code.clone()).or_default() += 1;
                pending = Some(mail);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(seen)
}

fn attack_with_normal_client(
    runtime: &tokio::runtime::Runtime,
    args: &SoakArgs,
    scenario: Scenario,
    url: &str,
    addr: SocketAddr,
) -> anyhow::Result<bool> {
    let timeout = match scenario {
        Scenario::SlowBody | Scenario::Stalled => args.body_timeout,
        _ => args.header_timeout,
    };
    let give_up = Instant::now() + args.duration.max(timeout + GRACE * 2);
    let attackers: Vec<_> =
        (0..args.connections).map(|id| runtime.spawn(attacker(addr, scenario, id, give_up))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_in, url_in, body_bytes) = (stop.clone(), url.to_owned(), args.body_bytes);
    let normal = std::thread::spawn(move || normal_client(&url_in, body_bytes, &stop_in));
    // The normal client sends while the slow connections are open: for
    // their timeout, and for the rest of --duration as new ones replace them.
    let mut replaced = 0usize;
    let mut closed = Vec::new();
    let mut open_at_end = 0usize;
    let deadline = Instant::now() + args.duration;
    let mut pending = attackers;
    while Instant::now() < deadline && !pending.is_empty() {
        let mut still = Vec::new();
        for handle in pending {
            if handle.is_finished() {
                match runtime.block_on(handle) {
                    Ok(Ok(Some(took))) => closed.push(took),
                    Ok(Ok(None)) => open_at_end += 1,
                    Ok(Err(_)) | Err(_) => {}
                }
                if Instant::now() + timeout + GRACE < deadline {
                    // Keep the pressure on: a new slow connection replaces a closed one.
                    still.push(runtime.spawn(attacker(addr, scenario, args.connections + replaced, give_up)));
                    replaced += 1;
                }
            } else {
                still.push(handle);
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for handle in pending {
        match runtime.block_on(handle) {
            Ok(Ok(Some(took))) => closed.push(took),
            Ok(Ok(None)) => open_at_end += 1,
            _ => {}
        }
    }
    let normal = normal.join().map_err(|_| anyhow!("the normal client panicked"))??;
    closed.sort();
    let late = closed.iter().filter(|took| **took > timeout + GRACE).count();
    let rate = if normal.attempts == 0 { 0.0 } else { normal.delivered as f64 / normal.attempts as f64 };
    println!(
        "slow connections: {} opened ({} replacements), {} closed by the host, {} still open at the end",
        args.connections + replaced,
        replaced,
        closed.len(),
        open_at_end
    );
    if !closed.is_empty() {
        let at = |q: f64| closed[((closed.len() - 1) as f64 * q) as usize].as_secs_f64();
        println!(
            "  time to close: median {:.2} s, p99 {:.2} s, max {:.2} s (timeout {:.1} s); {} later than timeout + {} s",
            at(0.5),
            at(0.99),
            at(1.0),
            timeout.as_secs_f64(),
            late,
            GRACE.as_secs()
        );
    }
    println!(
        "normal client: {} of {} mails delivered ({:.2} %); failures by code: {:?}",
        normal.delivered,
        normal.attempts,
        rate * 100.0,
        normal.failures
    );
    let passed = rate >= 0.99 && late == 0 && open_at_end == 0 && normal.attempts > 0;
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}

// ---------------------------------------------------------------- mixed

/// Statuses seen per endpoint; `503-no-retry-after` and `transport` are failures too.
type Tally = BTreeMap<(&'static str, String), u64>;

fn note(tally: &Mutex<Tally>, endpoint: &'static str, outcome: String) {
    *tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry((endpoint, outcome)).or_default() += 1;
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One request; returns the status, whether Retry-After was set, and the body.
async fn request(
    sender: &mut Sender,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> anyhow::Result<(u16, bool, Bytes)> {
    let mut builder = hyper::Request::builder().method(method).uri(path).header("host", "soak");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    sender.ready().await?;
    let response = sender.send_request(builder.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, retry_after, body))
}

fn outcome(status: u16, retry_after: bool) -> String {
    match (status, retry_after) {
        (503, false) => "503-no-retry-after".to_owned(),
        (status, _) => status.to_string(),
    }
}

/// One mixed client: its own connection, key and correlation id.
async fn mixed_client(addr: SocketAddr, id: usize, body_bytes: usize, until: Instant, tally: Arc<Mutex<Tally>>) {
    let correlation_id = format!("soak-mixed-{id}");
    let mut post_office: Option<PostOffice> = None;
    let mut pending: Option<Vec<u8>> = None;
    let mut sender: Option<Sender> = None;
    let mut body = vec![0u8; body_bytes];
    // The id is unknown to the host (404) until a first mail is delivered under it.
    let mut known = false;
    while Instant::now() < until {
        let connection = match &mut sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => match connect(addr).await {
                Ok(new) => sender.insert(new),
                Err(_) => {
                    note(&tally, "connect", "transport".into());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        // Attestation.
        match request(connection, "GET", "/v1/attestation", &[], Bytes::new()).await {
            Ok((status, retry, bytes)) => {
                note(&tally, "attestation", outcome(status, retry));
                if status == 200 && post_office.is_none() {
                    let key: Option<PublicKey> =
                        EnclaveInstanceInfo::decode(&bytes).ok().map(|info| *info.encryption_key());
                    post_office =
                        key.and_then(|key| PostOffice::new(PrivateKey::generate(&mut OsRng), key, "soak").ok());
                }
            }
            Err(_) => {
                note(&tally, "attestation", "transport".into());
                sender = None;
                continue;
            }
        }
        // Mail, and the acknowledgement of its reply.
        let Some(office) = &mut post_office else { continue };
        let mail = match pending.take() {
            Some(mail) => mail,
            None => {
                OsRng.fill_bytes(&mut body);
                match office.encrypt_mail(&body, &mut OsRng) {
                    Ok(mail) => mail,
                    Err(_) => continue,
                }
            }
        };
        let headers = [("correlation-id", correlation_id.clone())];
        let mut back_off = None;
        match request(connection, "POST", "/v1/mail", &headers, Bytes::from(mail.clone())).await {
            Ok((status, retry, _)) => {
                note(&tally, "mail", outcome(status, retry));
                match status {
                    200 | 204 => known = true,
                    429 | 503 => {
                        pending = Some(mail);
                        back_off = Some(Duration::from_secs(1));
                    }
                    _ => {}
                }
            }
            Err(_) => {
                note(&tally, "mail", "transport".into());
                pending = Some(mail);
                sender = None;
                continue;
            }
        }
        // Poll (which also finds the direct reply), then acknowledge what it found.
        if !known {
            if let Some(wait) = back_off {
                tokio::time::sleep(wait).await;
            }
            continue;
        }
        let poll_path = format!("/v1/mail/{correlation_id}");
        match request(connection, "GET", &poll_path, &[], Bytes::new()).await {
            Ok((status, retry, bytes)) => {
                note(&tally, "poll", outcome(status, retry));
                let ids: Vec<u64> = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["replies"].as_array().map(|r| r.iter().filter_map(|r| r["id"].as_u64()).collect()))
                    .unwrap_or_default();
                if !ids.is_empty() {
                    let ack = Bytes::from(serde_json::json!({ "ids": ids }).to_string());
                    let outcome_of = match request(connection, "POST", &format!("{poll_path}/ack"), &[], ack).await {
                        Ok((status, retry, _)) => outcome(status, retry),
                        Err(_) => "transport".into(),
                    };
                    note(&tally, "ack", outcome_of);
                }
            }
            Err(_) => {
                note(&tally, "poll", "transport".into());
                sender = None;
            }
        }
        if let Some(wait) = back_off {
            tokio::time::sleep(wait).await;
        }
    }
}

async fn mixed(args: &SoakArgs, addr: SocketAddr) -> anyhow::Result<bool> {
    let tally = Arc::new(Mutex::new(Tally::new()));
    let started = Instant::now();
    let until = started + args.duration;
    let clients: Vec<_> = (0..args.connections)
        .map(|id| tokio::spawn(mixed_client(addr, id, args.body_bytes, until, tally.clone())))
        .collect();
    for client in clients {
        let _ = client.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let tally = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    println!("requests by endpoint and outcome over {elapsed:.1} s:");
    let mut bad = 0;
    let mut attestation_refused = 0;
    for ((endpoint, outcome), count) in &tally {
        let allowed = matches!(outcome.as_str(), "200" | "204" | "429" | "503");
        if !allowed {
            bad += count;
        }
        if *endpoint == "attestation" && outcome != "200" {
            attestation_refused += count;
        }
        println!(
            "  {endpoint:<12} {outcome:<20} {count:>9} ({:.0}/s){}",
            *count as f64 / elapsed,
            if allowed { "" } else { "  <- not allowed" }
        );
    }
    let passed = bad == 0 && attestation_refused == 0;
    println!("attestation refused: {attestation_refused}; outcomes outside 200/204/429/503+Retry-After: {bad}");
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}
