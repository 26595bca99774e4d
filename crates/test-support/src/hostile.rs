//! A hostile HTTP proxy: it stands between clients and real web hosts, as
//! the host's operator or anyone on the network can, and does what the test
//! tells it: forward, drop, forge errors, withhold or swap replies, corrupt
//! mail, inject queued mail, serve a forged attestation, or switch clients
//! to another host (a fork). Clients talk plain HTTP to it, like to a host.
//!
//! ```text
//!  client (library or CLI) ──HTTP──► HostileProxy ──HTTP──► WebHost A | WebHost B
//!                                      rules: what to do with the next request
//! ```

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

/// What to do with the next delivery (`POST /v1/mail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Forward it, then close the connection without an answer (a lost response).
    ForwardThenDrop,
    /// Close the connection without forwarding (the host looks unreachable).
    Drop,
    /// Do not forward; answer this status and JSON error code.
    Forge {
        /// The HTTP status.
        status: u16,
        /// The error code in the JSON body.
        code: &'static str,
    },
    /// Forward it, then answer this status and code instead of the real answer.
    ForwardThenForge {
        /// The HTTP status.
        status: u16,
        /// The error code in the JSON body.
        code: &'static str,
    },
    /// Forward it, keep the direct reply in [`Control::kept`], answer 503.
    Withhold,
    /// Forward it, but answer with these bytes as the direct reply.
    ReplaceReply(Vec<u8>),
    /// Flip one byte of the mail, then forward it.
    Corrupt,
}

/// What to do with the next poll (`GET /v1/mail/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollRule {
    /// Add these (id, mail) replies to the answer.
    Inject(Vec<(u64, Vec<u8>)>),
    /// Answer with no replies at all.
    Hide,
}

/// The proxy's script and its record of what passed.
#[derive(Debug, Default)]
pub struct Control {
    /// Where requests go.
    pub upstream: String,
    /// Rules for the next deliveries, first first.
    pub rules: VecDeque<Rule>,
    /// Rules for the next polls, first first.
    pub poll_rules: VecDeque<PollRule>,
    /// Applied to every delivery until cleared.
    pub always: Option<Rule>,
    /// Served instead of the real attestation while set.
    pub attestation: Option<Vec<u8>>,
    /// After the next delivery is forwarded, send everything to this host instead.
    pub then_switch_to: Option<String>,
    /// Direct replies withheld by [`Rule::Withhold`].
    pub kept: Vec<Vec<u8>>,
    /// Every delivered mail, as the proxy saw it.
    pub deliveries: Vec<Vec<u8>>,
    /// Every direct reply the upstream gave.
    pub direct_replies: Vec<Vec<u8>>,
}

/// A running proxy.
#[derive(Debug)]
pub struct HostileProxy {
    url: String,
    control: Arc<Mutex<Control>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The reason a connection is closed without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the hostile proxy dropped the connection")
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

fn respond(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Full::new(Bytes::from(body))).map_err(|_| Dropped)
}

fn forged(status: u16, code: &str) -> Answer {
    let body = serde_json::json!({ "error": code, "message": format!("{code} (forged by the proxy)") });
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if status == 503 {
        headers.push(("retry-after", "1".to_owned()));
    }
    respond(status, &headers, body.to_string().into_bytes())
}

/// The upstream's answer: status, the headers worth passing on, body.
struct Upstream {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Forwards one request upstream with a blocking client.
fn forward(upstream: &str, method: &str, path: &str, headers: &[(String, String)], body: Vec<u8>) -> Option<Upstream> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("{upstream}{path}");
    let result = match method {
        "POST" => {
            let mut request = agent.post(&url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send(&body[..])
        }
        _ => {
            let mut request = agent.get(&url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.call()
        }
    };
    let mut response = result.ok()?;
    let status = response.status().as_u16();
    let mut kept = Vec::new();
    for name in ["content-type", "reply-id", "retry-after"] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            kept.push((name, value.to_owned()));
        }
    }
    let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().ok()?;
    Some(Upstream { status, headers: kept, body })
}

impl HostileProxy {
    /// A proxy that forwards to `upstream` until told otherwise.
    pub fn start(upstream: &str) -> Self {
        let control = Arc::new(Mutex::new(Control { upstream: upstream.to_owned(), ..Control::default() }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = control.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
                addr_tx.send(listener.local_addr().expect("a local address")).expect("report the address");
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = &mut stopped => break,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let control = shared.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| handle(request, control.clone()));
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(20)).expect("the proxy did not bind");
        Self { url: format!("http://{addr}"), control, stop: Some(stop), thread: Some(thread) }
    }

    /// The proxy's base URL: give it to clients as the host.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The script and the record.
    pub fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `rule` to the next delivery.
    pub fn next(&self, rule: Rule) {
        self.control().rules.push_back(rule);
    }

    /// Sends every later request to `upstream` (another copy of the host).
    pub fn switch_to(&self, upstream: &str) {
        self.control().upstream = upstream.to_owned();
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(request: Request<hyper::body::Incoming>, control: Arc<Mutex<Control>>) -> Answer {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "correlation-id" | "content-type" | "accept"))
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    let body = request.into_body().collect().await.map_err(|_| Dropped)?.to_bytes().to_vec();
    let upstream = control.lock().unwrap_or_else(std::sync::PoisonError::into_inner).upstream.clone();
    let go = |method: String, path: String, headers: Vec<(String, String)>, body: Vec<u8>, upstream: String| async move {
        tokio::task::spawn_blocking(move || forward(&upstream, &method, &path, &headers, body)).await.ok().flatten()
    };

    if method == "GET" && path.starts_with("/v1/attestation") {
        let forged = control.lock().unwrap_or_else(std::sync::PoisonError::into_inner).attestation.clone();
        if let Some(bytes) = forged {
            return respond(200, &[("content-type", "application/octet-stream".to_owned())], bytes);
        }
    }
    if method == "POST" && path == "/v1/mail" {
        let rule = {
            let mut c = control.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            c.deliveries.push(body.clone());
            c.rules.pop_front().or_else(|| c.always.clone())
        };
        let mut body = body;
        match &rule {
            Some(Rule::Drop) => return Err(Dropped),
            Some(Rule::Forge { status, code }) => return forged(*status, code),
            Some(Rule::Corrupt) => {
                let at = body.len() / 2;
                if let Some(byte) = body.get_mut(at) {
                    *byte ^= 0x40;
                }
            }
            _ => {}
        }
        let answer = go(method, path, headers, body, upstream).await.ok_or(Dropped)?;
        {
            let mut c = control.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if answer.status == 200 {
                c.direct_replies.push(answer.body.clone());
            }
            if let Some(next) = c.then_switch_to.take() {
                c.upstream = next;
            }
        }
        return match rule {
            Some(Rule::ForwardThenDrop) => Err(Dropped),
            Some(Rule::ForwardThenForge { status, code }) => forged(status, code),
            Some(Rule::Withhold) => {
                if answer.status == 200 {
                    control.lock().unwrap_or_else(std::sync::PoisonError::into_inner).kept.push(answer.body);
                }
                forged(503, "BUSY")
            }
            Some(Rule::ReplaceReply(bytes)) => {
                // Another id than the real reply's, so acknowledging it deletes nothing.
                let mut headers: Vec<_> = answer.headers.into_iter().filter(|(n, _)| *n != "reply-id").collect();
                headers.push(("reply-id", (1u64 << 50).to_string()));
                respond(200, &headers, bytes)
            }
            _ => respond(answer.status, &answer.headers, answer.body),
        };
    }
    let is_poll = method == "GET" && path.starts_with("/v1/mail/") && !path.ends_with("/ack");
    let answer = go(method, path, headers, body, upstream).await.ok_or(Dropped)?;
    if is_poll && answer.status == 200 {
        let rule = control.lock().unwrap_or_else(std::sync::PoisonError::into_inner).poll_rules.pop_front();
        if let Some(rule) = rule {
            let mut json: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| Dropped)?;
            let replies = json["replies"].as_array_mut().ok_or(Dropped)?;
            match rule {
                PollRule::Hide => replies.clear(),
                PollRule::Inject(extra) => {
                    for (id, mail) in extra {
                        replies.push(serde_json::json!({ "id": id, "mail": BASE64.encode(mail) }));
                    }
                }
            }
            return respond(200, &[("content-type", "application/json".to_owned())], json.to_string().into_bytes());
        }
    }
    respond(answer.status, &answer.headers, answer.body)
}
