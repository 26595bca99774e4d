//! Several hosts, one enclave: a key derivation service and three `conclave
//! host` processes on one throwaway PostgreSQL, serving the `tally` sample.
//! Eight clients mail random hosts while one host is killed with SIGKILL;
//! every reply must count exactly the client's own mails, a replay through
//! another host is refused by the enclave, the enclave key stays the same
//! across hosts and restarts, and an old dump of the database restored by
//! the operator is reported as a rollback.
//!
//! Skipped loudly when PostgreSQL is not installed, unless
//! `CONCLAVE_REQUIRE_POSTGRES=1` (as in CI).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use conclave_client::{ClientError, EnclaveClient, FailoverRelay, HttpRelay};
use conclave_core::{
    EnclaveConstraint, MailRelay, PrivateKey, QueuedMail, Rejection, RelayError, ResponseFrame, ResponseKind,
    decrypt_mail,
};
use conclave_examples::tally::{self, Response};
use conclave_test_support::{postgres::TempPostgres, process::ServingProcess};
use rand_core::{OsRng, RngCore};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");
const HOSTS: usize = 3;

/// A free loopback port, so a host can be restarted where clients look for it.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

struct Cluster {
    dir: tempfile::TempDir,
    pg: TempPostgres,
    database: String,
    kds: ServingProcess,
    addresses: Vec<String>,
    hosts: Vec<Option<ServingProcess>>,
}

impl Cluster {
    fn start() -> Option<Self> {
        let pg = TempPostgres::start()?;
        let database = pg.database("cluster");
        let dir = tempfile::tempdir().unwrap();
        let kds_dir = dir.path().join("kds");
        let kds = ServingProcess::start(
            Path::new(BIN),
            ["kds", "--mode", "mock", "--listen", "127.0.0.1:0", "--data-dir", kds_dir.to_str().unwrap()],
        );
        let addresses = (0..HOSTS).map(|_| free_address()).collect();
        let mut cluster = Self { dir, pg, database, kds, addresses, hosts: Vec::new() };
        for i in 0..HOSTS {
            let host = cluster.start_host(i);
            cluster.hosts.push(Some(host));
        }
        Some(cluster)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("host{i}"))
    }

    fn start_host(&self, i: usize) -> ServingProcess {
        let data = self.data_dir(i);
        ServingProcess::start(
            Path::new(BIN),
            [
                "host",
                "--mode",
                "mock",
                "--example",
                "tally",
                "--kds",
                &self.kds.url,
                "--store",
                &self.database,
                "--listen",
                &self.addresses[i],
                "--data-dir",
                data.to_str().unwrap(),
            ],
        )
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}", self.addresses[i])
    }

    fn urls(&self) -> Vec<String> {
        (0..HOSTS).map(|i| self.url(i)).collect()
    }

    fn kill(&mut self, i: usize) {
        self.hosts[i].take().expect("the host runs").sigkill();
    }

    fn restart(&mut self, i: usize) {
        assert!(self.hosts[i].is_none(), "host {i} still runs");
        let host = self.start_host(i);
        self.hosts[i] = Some(host);
    }
}

/// The enclave's attestation as JSON, from one host.
fn attestation(url: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let bytes = agent
        .get(format!("{url}/v1/attestation"))
        .header("Accept", "application/json")
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn constraint(cluster: &Cluster) -> EnclaveConstraint {
    let info = attestation(&cluster.url(0));
    // The sample's KDS variant: its own product id (5 + 16).
    assert_eq!(info["product_id"], 21, "{info}");
    EnclaveConstraint::parse(&format!("C:{} SEC:INSECURE", info["code_hash"].as_str().unwrap())).unwrap()
}

type Client = EnclaveClient<FailoverRelay<HttpRelay>>;

fn client(urls: &[String], constraint: &EnclaveConstraint) -> Client {
    let relays = urls.iter().map(|url| HttpRelay::with_timeout(url, Duration::from_secs(20)).unwrap()).collect();
    let mut client = EnclaveClient::new(FailoverRelay::new(relays).unwrap(), constraint.clone());
    client.start().unwrap();
    client
}

/// Sends `body` on topic "t" until the enclave answers it (a host dying
/// under the mail leaves it unsettled; the client delivers it again).
fn send(client: &mut Client, body: &[u8]) -> Response {
    let mut reply = client.send_mail("t", body);
    for _ in 0..100 {
        match reply {
            Err(ClientError::Unsettled { .. }) => {
                std::thread::sleep(Duration::from_millis(50));
                reply = client.resend_pending("t");
            }
            _ => break,
        }
    }
    let reply = reply.unwrap_or_else(|e| panic!("the mail was not answered: {e}")).expect("tally answers every mail");
    Response::parse(&reply.body).unwrap()
}

#[test]
fn eight_clients_on_three_hosts_lose_nothing_and_double_nothing_when_a_host_is_killed() {
    let Some(mut cluster) = Cluster::start() else { return };
    let constraint = constraint(&cluster);
    let key = attestation(&cluster.url(0))["encryption_key"].clone();
    for i in 1..HOSTS {
        assert_eq!(attestation(&cluster.url(i))["encryption_key"], key, "host {i} serves another enclave key");
    }

    const CLIENTS: usize = 8;
    const MAILS: usize = 12;
    let done = Arc::new(AtomicUsize::new(0));
    let urls = cluster.urls();
    let parties: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (urls, constraint, done) = (urls.clone(), constraint.clone(), done.clone());
            std::thread::spawn(move || {
                let mut client = client(&urls, &constraint);
                let mut total = 0;
                for m in 0..MAILS {
                    // Each mail goes to a random host first.
                    client.relay_mut().prefer(OsRng.next_u32() as usize);
                    let amount = (c * 1000 + m) as u64;
                    total += amount;
                    let answer = send(&mut client, &tally::add(amount).unwrap());
                    // Exactly this client's mails so far: none lost, none applied twice.
                    assert_eq!(answer, Response::Added { mails: m as u64 + 1, total }, "client {c}, mail {m}");
                    done.fetch_add(1, Ordering::SeqCst);
                }
                (client, total)
            })
        })
        .collect();
    // Half-way through, host 0 dies.
    while done.load(Ordering::SeqCst) < CLIENTS * MAILS / 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.kill(0);
    let mut finished: Vec<(Client, u64)> = parties.into_iter().map(|p| p.join().unwrap()).collect();

    // Every client's own figures, and the enclave's over all of them.
    let expected_total: u64 = finished.iter().map(|(_, total)| total).sum();
    for (c, (client, total)) in finished.iter_mut().enumerate() {
        let answer = send(client, &tally::totals());
        let Response::Totals { mails, total: seen, all_mails, all_total } = answer else { panic!("{answer:?}") };
        assert_eq!((mails, seen), (MAILS as u64, *total), "client {c}");
        assert_eq!((all_mails, all_total), ((CLIENTS * MAILS) as u64, expected_total));
        assert_eq!(client.enclave_info().unwrap().encryption_key.to_hex(), key.as_str().unwrap());
    }

    // The killed host comes back on its data directory with the same enclave key,
    // and serves the shared state.
    cluster.restart(0);
    assert_eq!(attestation(&cluster.url(0))["encryption_key"], key, "the key changed across a host restart");
    let (client, _) = &mut finished[0];
    client.relay_mut().prefer(0);
    let answer = send(client, &tally::totals());
    assert!(
        matches!(answer, Response::Totals { all_mails, .. } if all_mails == (CLIENTS * MAILS) as u64),
        "{answer:?}"
    );
    assert_eq!(client.relay_mut().current(), 0, "the restarted host did not answer");
}

/// Delivers through its relay and keeps every mail it delivered.
struct Recording<R> {
    inner: R,
    delivered: Vec<Vec<u8>>,
}

impl<R: MailRelay> MailRelay for Recording<R> {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        self.inner.attestation()
    }
    fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        self.delivered.push(mail.to_vec());
        self.inner.deliver(correlation_id, mail)
    }
    fn poll(&mut self, correlation_id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        self.inner.poll(correlation_id)
    }
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.inner.acknowledge(correlation_id, ids)
    }
}

#[test]
fn a_mail_taken_through_one_host_and_replayed_through_another_is_refused_as_a_replay() {
    let Some(cluster) = Cluster::start() else { return };
    let constraint = constraint(&cluster);
    let relay = Recording { inner: HttpRelay::new(&cluster.url(1)).unwrap(), delivered: Vec::new() };
    let mut alice = EnclaveClient::new(relay, constraint);
    alice.start().unwrap();
    let answer = alice.send_mail("t", &tally::add(7).unwrap()).unwrap().unwrap();
    assert_eq!(Response::parse(&answer.body).unwrap(), Response::Added { mails: 1, total: 7 });
    let mail = alice.relay_mut().delivered.pop().unwrap();

    // The operator (or anyone on the wire) replays it through host 2.
    let answer = HttpRelay::new(&cluster.url(2)).unwrap().deliver("replayer", &mail).unwrap().expect("an answer");
    let key: [u8; 32] = hex::decode(alice.save().private_key).unwrap().try_into().unwrap();
    let opened = decrypt_mail(&PrivateKey::from_bytes(key), &answer.bytes).unwrap();
    let (frame, _) = ResponseFrame::unwrap(&opened.body).unwrap();
    assert!(matches!(frame.kind, ResponseKind::Rejected(Rejection::Replayed, _)), "{:?}", frame.kind);

    // Nothing was applied twice.
    let totals = alice.send_mail("t", &tally::totals()).unwrap().unwrap();
    assert_eq!(
        Response::parse(&totals.body).unwrap(),
        Response::Totals { mails: 1, total: 7, all_mails: 1, all_total: 7 }
    );
}

#[test]
fn restoring_an_old_dump_of_the_database_is_reported_as_a_rollback() {
    let Some(mut cluster) = Cluster::start() else { return };
    let constraint = constraint(&cluster);
    let urls = cluster.urls();
    let mut alice = client(&urls, &constraint);
    send(&mut alice, &tally::add(1).unwrap());
    let backup = cluster.pg.dump("cluster");
    send(&mut alice, &tally::add(2).unwrap());
    send(&mut alice, &tally::add(3).unwrap());

    // The operator stops every host, restores the old dump, and starts them again.
    for i in 0..HOSTS {
        cluster.kill(i);
    }
    cluster.pg.restore("cluster", &backup);
    for i in 0..HOSTS {
        cluster.restart(i);
    }
    let rolled_back = alice.send_mail("t", &tally::add(4).unwrap());
    assert!(matches!(rolled_back, Err(ClientError::Rollback { .. })), "{rolled_back:?}");
}
