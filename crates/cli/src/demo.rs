//! `conclave demo`: three parties pool private numbers in an enclave they
//! check remotely, through a web host they do not trust; the host restarts in
//! the middle and the enclave's state survives. Narrated step by step.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
};

use anyhow::{Context, anyhow, bail};
use conclave_client::{EnclaveClient, EnclaveReply, HttpRelay};
use conclave_core::{EnclaveConstraint, MailRelay, PaddingPolicy, QueuedMail, RelayError};
use conclave_examples::stats::{self, Response, Summary};
use conclave_host::{
    HostService, ServiceConfig,
    simulation::{load_or_create_secret, measure},
    store::SqliteStore,
    web::{self, WebConfig},
};
use rand_core::{OsRng, RngCore};

use crate::samples;

/// What crossed the host, as the host saw it: sizes only.
#[derive(Default)]
struct Seen {
    inbound: Vec<usize>,
    outbound: Vec<usize>,
}

/// A party's relay that also notes the size of every mail that crossed the host.
struct Recording {
    inner: HttpRelay,
    seen: Arc<Mutex<Seen>>,
}

impl Recording {
    fn note(&self, inbound: Option<usize>, outbound: Option<usize>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.inbound.extend(inbound);
            seen.outbound.extend(outbound);
        }
    }
}

impl MailRelay for Recording {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        self.inner.attestation()
    }
    fn deliver(&mut self, id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        let reply = self.inner.deliver(id, mail)?;
        self.note(Some(mail.len()), reply.as_ref().map(|r| r.bytes.len()));
        Ok(reply)
    }
    fn poll(&mut self, id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        let replies = self.inner.poll(id)?;
        for r in &replies {
            self.note(None, Some(r.bytes.len()));
        }
        Ok(replies)
    }
    fn acknowledge(&mut self, id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.inner.acknowledge(id, ids)
    }
}

/// A web host running on a background thread.
struct RunningHost {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

fn start_host(data_dir: &Path, addr: SocketAddr) -> anyhow::Result<(RunningHost, SocketAddr, String)> {
    let host = samples::simulation_host("stats", data_dir)?;
    let store = SqliteStore::open(&data_dir.join("host.db"))?;
    let secret = load_or_create_secret(&data_dir.join("platform.secret"), || {
        let mut s = vec![0u8; 32];
        OsRng.fill_bytes(&mut s);
        s
    })?;
    let secret: [u8; 32] = secret.try_into().map_err(|_| anyhow!("platform secret must be 32 bytes"))?;
    let mut service = HostService::new(host, store, ServiceConfig::new(secret)).context("cannot start the enclave")?;
    let sandbox = service.host_mut().sandbox_report().unwrap_or("sandbox: unknown").to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).context("cannot bind the web host")?;
    let bound = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime.block_on(web::run(listener, service, WebConfig::default(), async {
            let _ = stopped.await;
        }))?;
        Ok(())
    });
    Ok((RunningHost { stop, thread }, bound, sandbox))
}

impl RunningHost {
    fn shut_down(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.thread.join().map_err(|_| anyhow!("the web host thread panicked"))?
    }
}

fn result_of(reply: &EnclaveReply) -> anyhow::Result<Summary> {
    match Response::parse(&reply.body).map_err(|e| anyhow!("{}", e.0))? {
        Response::Result(summary) => Ok(summary),
        Response::Error { message } => bail!("the enclave refused: {message}"),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// Every file of the host's data directory, concatenated: what its operator can read at rest.
fn data_dir_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                all.extend_from_slice(&bytes);
            }
        }
    }
    all
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> anyhow::Result<TempDir> {
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    let path = std::env::temp_dir().join(format!("conclave-demo-{}", hex::encode(id)));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(TempDir(path))
}

pub fn run() -> anyhow::Result<ExitCode> {
    println!("Conclave for Rust: demo");
    println!("Three hospitals want the count, mean, minimum and maximum of their patients' ages,");
    println!("without showing their own numbers to each other or to whoever runs the server.");
    println!();
    println!("!! SIMULATION MODE: INSECURE. The enclave runs as a separate, sandboxed process, but");
    println!("!! the host's operator can read its memory, holds the key that signs its attestation,");
    println!("!! and can read the secret its sealed state is encrypted with. Real protection needs");
    println!("!! TEE hardware (see docs/threat-model.md). The protocol below is the same either way.");
    println!();

    let data = temp_dir()?;
    println!("1. The host prepares the `stats` sample enclave (data directory {}).", data.0.display());
    let key = samples::development_key(&data.0)?;
    let signer = conclave_core::signature::code_hash(key.verifying_key().as_bytes());
    let exe = std::env::current_exe()?;
    let code_hash = measure(&exe)?;
    let product_id = samples::find("stats")?.product_id;
    println!("   code hash (SHA-256 of the enclave binary): {}", hex::encode(code_hash));
    println!("   signed by development key {} as product {product_id}", hex::encode(signer));

    let (host, addr, sandbox) = start_host(&data.0, "127.0.0.1:0".parse()?)?;
    let url = format!("http://{addr}");
    println!("2. The web host serves on {url}; the enclave process is sandboxed:");
    println!("   {sandbox}");

    let attestation_key = conclave_host::simulation::simulated_attestation_key(&data.0)?;
    let constraint = EnclaveConstraint::parse(&format!(
        "C:{} S:{} PROD:{product_id} SEC:INSECURE SIMKEY:{}",
        hex::encode(code_hash),
        hex::encode(signer),
        hex::encode(attestation_key.verifying_key().as_bytes())
    ))?;
    println!("3. Each party fetches the attestation and checks it against this constraint:");
    println!("     {constraint}");
    println!("   (SEC:INSECURE must be written out: a simulated enclave is never trusted by default;");
    println!("   SIMKEY pins this host's simulated attestation key, so nobody else on the network can pose as it.)");

    let seen = Arc::new(Mutex::new(Seen::default()));
    let names = ["St Mary's", "Royal Free", "Addenbrooke's"];
    let ages: [&[f64]; 3] = [&[34.0, 51.0, 67.0], &[29.0, 72.0], &[45.0, 38.0, 80.0, 56.0]];
    let mut parties = Vec::new();
    for name in names {
        let relay = Recording { inner: HttpRelay::new(&url)?, seen: seen.clone() };
        let mut client = EnclaveClient::new(relay, constraint.clone());
        // Every mail is padded to 256 bytes, so its size says nothing about how many values it holds.
        client.set_padding(PaddingPolicy::fixed(256));
        let info = client.start().with_context(|| format!("{name} could not attest the enclave"))?;
        println!(
            "   {name:<14} accepted: mode {}, security {}, enclave key {}…",
            info.mode,
            info.identity.security,
            &info.encryption_key.to_hex()[..16]
        );
        parties.push(client);
    }
    if let Some(reason) = parties[0].enclave_info().map(|i| i.identity.security_reason.clone()) {
        println!("   why INSECURE: {reason}");
    }

    println!(
        "4. Each party encrypts its numbers to the enclave (padded to 256 bytes) and sends them through the host:"
    );
    for ((client, name), values) in parties.iter_mut().zip(names).zip(ages) {
        let reply = client.send_mail("ages", &stats::submit(values)?)?.context("the enclave did not answer")?;
        let answer = Response::parse(&reply.body).map_err(|e| anyhow!("{}", e.0))?;
        println!("   {name:<14} sent {} values; enclave answered {answer:?}", values.len());
    }

    println!("5. The host restarts (say, for maintenance). The enclave comes back with new keys,");
    println!("   its state unsealed from the host's store; the parties attest again.");
    host.shut_down()?;
    let (host, _, _) = start_host(&data.0, addr)?;
    for (client, name) in parties.iter_mut().zip(names) {
        let info = client.start()?;
        println!("   {name:<14} re-attested: new enclave key {}…", &info.encryption_key.to_hex()[..16]);
    }

    println!("6. St Mary's asks for the result; the others collect theirs from the host's queue.");
    let first = parties[0].send_mail("ages", &stats::compute())?.context("no result")?;
    let summary = result_of(&first)?;
    let mut results = vec![summary.clone()];
    for client in parties.iter_mut().skip(1) {
        let replies = client.poll_mail()?;
        let reply = replies.first().context("no result was queued for a party")?;
        results.push(result_of(reply)?);
    }
    for (name, result) in names.iter().zip(&results) {
        println!(
            "   {name:<14} learns: {} parties, {} ages, mean {:.1}, min {}, max {}",
            result.parties, result.count, result.mean, result.min, result.max
        );
    }
    host.shut_down()?;

    println!("7. The parties compare checkpoints: the latest enclave state each one verified. Every reply");
    println!("   names its state, and every mail tells the enclave which replies its sender verified, so a");
    println!("   host that rolls the enclave back or runs a second copy is caught at the next exchange;");
    println!("   comparing checkpoints also catches a host that keeps parties on separate copies forever.");
    let checkpoints: Vec<_> = parties.iter().map(EnclaveClient::checkpoint).collect();
    for (name, checkpoint) in names.iter().zip(&checkpoints) {
        let text = checkpoint.to_string();
        println!("   {name:<14} verified state {}…", &text[..text.len().min(24)]);
    }
    let same_history = checkpoints.windows(2).all(|w| w[0] == w[1]);
    println!(
        "   {}",
        if same_history {
            "all three saw the same state: one history, no fork"
        } else {
            "THE CHECKPOINTS DIFFER: the host showed the parties different histories"
        }
    );

    let all: Vec<f64> = ages.iter().flat_map(|v| v.iter().copied()).collect();
    let expected_mean = all.iter().sum::<f64>() / all.len() as f64;
    let correct = results.iter().all(|r| {
        r.parties == 3
            && r.count == all.len()
            && (r.mean - expected_mean).abs() < 1e-9
            && r.min == 29.0
            && r.max == 80.0
    });

    println!("8. What the host saw:");
    let seen = seen.lock().map_err(|_| anyhow!("lock poisoned"))?;
    println!("   {} mails in, sizes {:?} bytes: ciphertext only", seen.inbound.len(), seen.inbound);
    println!("   {} mails out, sizes {:?} bytes: ciphertext only", seen.outbound.len(), seen.outbound);
    let at_rest = data_dir_bytes(&data.0);
    let leaked = ages.iter().any(|values| {
        let needle = serde_json_fragment(values);
        at_rest.windows(needle.len()).any(|w| w == needle.as_bytes())
    });
    println!(
        "   its data directory ({} bytes: SQLite store, keys) {} any party's list of ages in plaintext",
        at_rest.len(),
        if leaked { "CONTAINS" } else { "does not contain" }
    );
    println!("   (in simulation mode its operator could still decrypt the sealed state with platform.secret,");
    println!("   or read the enclave's memory: only TEE hardware closes that gap)");
    println!();
    let ok = correct && !leaked && same_history;
    println!(
        "Summary: {} 3 parties pooled {} values in a SIMULATION (INSECURE) enclave behind an untrusted web host; \
         every party got the same result, no plaintext crossed the host or reached its disk, and the state survived \
         a host restart.",
        if ok { "OK:" } else { "FAILED:" },
        all.len()
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// How a list of values appears inside a submission's JSON.
fn serde_json_fragment(values: &[f64]) -> String {
    serde_json::to_string(values).unwrap_or_default()
}
