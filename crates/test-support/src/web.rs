//! A real web host on a loopback port for integration tests, what a test
//! client needs to talk to it (HTTP helpers, a sending party, an enclave that
//! blocks on demand), and TLS certificates made on the spot.

use std::{
    net::SocketAddr,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::{
    EnclaveInstanceInfo, PostOffice, PrivateKey, PublicKey, Rejection, ReplyChain, RequestFrame, ResponseFrame,
    ResponseKind,
};
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use conclave_host::{
    HostError, HostService,
    web::{WebConfig, run},
};
use rand_core::OsRng;
use serde_json::Value;

/// `conclave_host::web::run` serving on `127.0.0.1:0` in a background thread
/// with its own tokio runtime; stopped (and waited for) when dropped.
#[derive(Debug)]
pub struct WebHost {
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub base: String,
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), HostError>>>,
}

impl WebHost {
    /// Starts serving `service` with `config`.
    pub fn start(service: HostService, config: WebConfig) -> Self {
        let tls = config.tls.is_some();
        let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                run(listener, service, config, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("the web host did not bind");
        let base = if tls { format!("https://localhost:{}", addr.port()) } else { format!("http://{addr}") };
        Self { base, addr, stop: Some(stop), thread: Some(thread) }
    }

    /// The URL of `path` on this host.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the host and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), HostError> {
        self.stop.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for WebHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A certificate chain and key in PEM, made for tests.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// The server's certificate chain (leaf first), PEM.
    pub chain_pem: String,
    /// The server's private key, PEM.
    pub key_pem: String,
    /// The certificate a client must trust (the CA, or the leaf itself when self-signed), PEM.
    pub trust_pem: String,
}

/// A self-signed certificate for `localhost` and `127.0.0.1`.
pub fn self_signed_localhost() -> TestCertificate {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).unwrap();
    TestCertificate { chain_pem: cert.pem(), key_pem: signing_key.serialize_pem(), trust_pem: cert.pem() }
}

/// A CA, and a certificate for `localhost` and `127.0.0.1` that it issued.
pub fn ca_issued_localhost() -> TestCertificate {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "conclave test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    TestCertificate {
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: leaf_key.serialize_pem(),
        trust_pem: ca.pem(),
    }
}

/// A plain-HTTP agent that hands back error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: ureq::http::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts a JSON error with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        assert!(self.header("content-type").unwrap().starts_with("application/json"));
        let json = self.json();
        assert_eq!(json["error"], code, "{json}");
        assert!(!json["message"].as_str().unwrap().is_empty(), "{json}");
    }
}

/// Reads a response whole (panics if the request failed at the transport).
pub fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("HTTP request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.body_mut().with_config().limit(64 * 1024 * 1024).read_to_vec().unwrap();
    Answer { status, headers, body }
}

/// `GET path`.
pub fn get(host: &WebHost, path: &str) -> Answer {
    answer(agent().get(host.url(path)).call())
}

/// `POST /v1/mail` with an optional correlation id.
pub fn post_mail(host: &WebHost, correlation_id: Option<&str>, body: &[u8]) -> Answer {
    let mut request = agent().post(host.url("/v1/mail")).header("content-type", "application/octet-stream");
    if let Some(id) = correlation_id {
        request = request.header("Correlation-ID", id);
    }
    answer(request.send(body))
}

/// `POST /v1/mail/{id}/ack` with these ids.
pub fn ack(host: &WebHost, correlation_id: &str, ids: &[u64]) -> Answer {
    let body = serde_json::json!({ "ids": ids }).to_string();
    answer(
        agent()
            .post(host.url(&format!("/v1/mail/{correlation_id}/ack")))
            .header("content-type", "application/json")
            .send(body.as_bytes()),
    )
}

/// Polls and decodes `{"replies": [{"id", "mail"}]}` (asserts 200).
pub fn poll(host: &WebHost, correlation_id: &str) -> Vec<(u64, Vec<u8>)> {
    let answer = get(host, &format!("/v1/mail/{correlation_id}"));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    answer.json()["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), BASE64.decode(r["mail"].as_str().unwrap()).unwrap()))
        .collect()
}

/// A sender: a key and a post office to the host's enclave.
#[derive(Debug)]
pub struct Party {
    post_office: PostOffice,
}

impl Party {
    /// A new key, writing on `topic` to the enclave behind `host`.
    pub fn new(host: &WebHost, topic: &str) -> Self {
        let info = get(host, "/v1/attestation");
        assert_eq!(info.status, 200);
        let enclave_key: PublicKey = *EnclaveInstanceInfo::decode(&info.body).unwrap().encryption_key();
        Self { post_office: PostOffice::new(PrivateKey::generate(&mut OsRng), enclave_key, topic).unwrap() }
    }

    /// Encrypts the next mail.
    pub fn mail(&mut self, body: &[u8]) -> Vec<u8> {
        let frame = RequestFrame { request_id: [1; 16], chain: ReplyChain::START, runs: Vec::new() };
        self.post_office.encrypt_mail(&frame.wrap(body), &mut OsRng).unwrap()
    }

    /// Decrypts an answer: its frame and its body.
    pub fn answer(&self, reply: &[u8]) -> (ResponseFrame, Vec<u8>) {
        let mail = self.post_office.decrypt_mail(reply).unwrap();
        assert_eq!(&mail.sender, self.post_office.destination(), "reply not from the enclave");
        let (frame, body) = ResponseFrame::unwrap(&mail.body).unwrap();
        (frame, body.to_vec())
    }

    /// Decrypts a reply and strips its response frame.
    pub fn open(&self, reply: &[u8]) -> Vec<u8> {
        let (frame, body) = self.answer(reply);
        assert_eq!(frame.kind, ResponseKind::Reply, "not an application reply");
        body
    }

    /// The rejection an answer carries.
    pub fn rejection(&self, reply: &[u8]) -> Rejection {
        match self.answer(reply).0.kind {
            ResponseKind::Rejected(rejection, _) => rejection,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

/// An enclave whose every mail waits until the test releases it, then echoes it.
#[derive(Debug)]
pub struct Gate {
    entered: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl Gate {
    /// The enclave, the receiver told of each mail that entered it, and the
    /// sender that lets one mail through per message.
    pub fn new() -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered, entered_rx) = mpsc::channel();
        let (release_tx, release) = mpsc::channel();
        (Self { entered, release }, entered_rx, release_tx)
    }
}

impl Enclave for Gate {
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        let _ = self.entered.send(());
        // A test that ended drops the sender: let the mail through then.
        let _ = self.release.recv();
        ctx.reply(&mail, &mail.body, hint)
    }
}

/// A [`Gate`] host's worker held busy with a full queue of one: one mail
/// blocks inside the enclave, a second waits in the queue.
#[derive(Debug)]
pub struct BlockedWorker {
    blocked: JoinHandle<u16>,
    queued: JoinHandle<u16>,
    release: mpsc::Sender<()>,
}

impl BlockedWorker {
    /// Sends the two mails from two new parties (the host's queue capacity must be 1).
    pub fn start(host: &WebHost, entered: &mpsc::Receiver<()>, release: mpsc::Sender<()>) -> Self {
        let send = |host: &WebHost, id: &'static str| {
            let mail = Party::new(host, "blocker").mail(id.as_bytes());
            let url = host.url("/v1/mail");
            std::thread::spawn(move || answer(agent().post(url).header("Correlation-ID", id).send(&mail[..])).status)
        };
        let blocked = send(host, "blocked-in-the-enclave");
        entered.recv_timeout(Duration::from_secs(20)).expect("the enclave was not called");
        let queued = send(host, "waiting-in-the-queue");
        wait_for("a full worker queue", || get(host, "/v1/health").json()["worker_queue"] == 1);
        Self { blocked, queued, release }
    }

    /// Lets both mails through; returns their statuses.
    pub fn release(self) -> (u16, u16) {
        self.release.send(()).unwrap();
        self.release.send(()).unwrap();
        (self.blocked.join().unwrap(), self.queued.join().unwrap())
    }
}

/// Waits (up to 20 s, then panics) until `condition` holds.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
