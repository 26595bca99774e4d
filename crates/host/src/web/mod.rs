//! The web host: the HTTP API of one [`HostService`].
//!
//! ```text
//!  TCP ─► accept loop (connection cap) ─► TLS? ─► hyper HTTP/1.1 (header, idle timeouts)
//!        ─► axum handlers (body deadline, body byte budget, typed requests)
//!             ├─ POST /v1/mail ──(Job)──► bounded queue ──► worker thread ──► HostService (enclave, store)
//!             ├─ GET /v1/attestation ──► bytes the worker published for this enclave run (JSON view cached)
//!             ├─ GET /v1/mail/{id}, POST /v1/mail/{id}/ack ──► second SQLite connection (StoreReader)
//!             └─ GET /v1/health, /metrics ──► counters and the worker's published status
//! ```
//!
//! Only delivery waits for the enclave: reads are served beside it, so a
//! queue full of mail never refuses an attestation or a poll. Limits and the
//! figures measured under slow and hostile clients are in `docs/reliability.md`.
//!
//! The library serves; the binary binds. [`run`] takes an already bound
//! listener, the service and a shutdown future, like mini-redis'
//! `server::run`, so tests bind port 0 and the CLI binds what it was told.
//! The API is documented in `docs/http-api.md` and `docs/openapi.yaml`.
//!
//! ```no_run
//! # async fn example() -> Result<(), conclave_host::HostError> {
//! use conclave_host::{EnclaveHost, HostService, web::{WebConfig, run}};
//! # #[derive(Default)] struct Echo;
//! # impl conclave_enclave::Enclave for Echo {
//! #     fn receive_mail(&mut self, ctx: &mut conclave_enclave::EnclaveContext<'_>,
//! #         mail: conclave_enclave::EnclaveMail, hint: Option<&str>) -> Result<(), conclave_enclave::EnclaveError> {
//! #         ctx.reply(&mail, &mail.body, hint)
//! #     }
//! # }
//! let service = HostService::in_memory(EnclaveHost::load_mock_restartable::<Echo>())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
//! run(listener, service, WebConfig::default(), async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod api;
mod body;
mod error;
mod health;
mod memory;
mod metrics;
mod page;
mod reads;
mod server;
mod tls;
mod worker;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

pub use error::{WebError, http_status};
pub use tls::TlsConfig;

use crate::{HostError, HostService};

/// The longest correlation id, in bytes (the store enforces the same).
pub const MAX_CORRELATION_ID_LEN: usize = crate::store::MAX_CORRELATION_ID_LEN;

/// Settings of the web host. Every limit is also a `conclave host` flag
/// (see `docs/http-api.md`, "Limits and timeouts").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebConfig {
    /// The largest mail body accepted, in bytes (413 `PAYLOAD_TOO_LARGE` beyond,
    /// refused from `Content-Length` before any of it is read).
    pub max_body_bytes: usize,
    /// The largest acknowledgement body accepted, in bytes.
    pub max_ack_bytes: usize,
    /// How many mails may wait for the enclave worker; more get 503 `BUSY`.
    pub queue_capacity: usize,
    /// What `Retry-After` says on a 503.
    pub retry_after: Duration,
    /// The most replies one poll returns.
    pub poll_limit: usize,
    /// About the most reply bytes one poll returns (always at least one reply).
    pub poll_max_bytes: usize,
    /// How long a connection may take to send a complete request head: from
    /// its opening, or from the first byte of a later request on it (the TLS
    /// handshake counts). Beyond it the connection is closed.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive once its head is read.
    /// Beyond it the request gets 408 `BODY_TIMEOUT` and the connection closes.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// The most connections open at once; further ones are closed at once
    /// (counted and logged), and health reports `connections_at_cap`.
    pub max_connections: usize,
    /// The most bytes of request bodies held at once (being read or waiting
    /// for the worker). A body takes budget only for bytes that arrived, so
    /// slow or stalled uploads hold little, and none past `body_timeout`.
    pub body_budget_bytes: usize,
    /// The most replies stored over all correlation ids; while the store
    /// holds this many, mail is refused before delivery (507 `REPLY_STORE_FULL`).
    pub max_stored_replies: u64,
    /// Correlation ids with no queued reply and no activity for this long are forgotten.
    pub correlation_id_max_idle: Duration,
    /// How often idle correlation ids are pruned.
    pub prune_interval: Duration,
    /// How long a refusal or failure keeps `/v1/health` degraded.
    pub health_window: Duration,
    /// Database connections serving polls and acknowledgements beside the worker.
    pub reader_connections: usize,
    /// How often freed memory is given back to the system while connections
    /// come and go (glibc only; zero never).
    pub memory_trim_interval: Duration,
    /// TLS for every connection; `None` serves plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Allows plain HTTP on an address that is not loopback.
    pub insecure_http: bool,
    /// The sample enclave the host runs, if it is one: the party's page at
    /// `/` shows that sample's form (`GET /v1/page`).
    pub page_sample: Option<String>,
}

impl Default for WebConfig {
    /// 4 MiB mails, 64 KiB acknowledgements, 64 waiting mails, retry after 1 s,
    /// 100 replies or 8 MiB per poll, 10 s for a request head, 30 s for a body, 60 s
    /// idle, 4,096 connections, a 64 MiB body budget, 100,000 stored replies,
    /// ids forgotten after 30 idle days (checked hourly), health degraded for
    /// 30 s after a refusal, 4 reader connections, freed memory returned every
    /// 10 s of connection churn, plain HTTP on loopback only.
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_ack_bytes: 64 * 1024,
            queue_capacity: 64,
            retry_after: Duration::from_secs(1),
            poll_limit: 100,
            poll_max_bytes: 8 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            body_budget_bytes: 64 * 1024 * 1024,
            max_stored_replies: 100_000,
            correlation_id_max_idle: Duration::from_secs(30 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
            health_window: Duration::from_secs(30),
            reader_connections: 4,
            memory_trim_interval: Duration::from_secs(10),
            tls: None,
            insecure_http: false,
            page_sample: None,
        }
    }
}

impl WebConfig {
    /// Sets the mail body size limit.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the acknowledgement body size limit.
    pub fn with_max_ack_bytes(mut self, bytes: usize) -> Self {
        self.max_ack_bytes = bytes;
        self
    }

    /// Sets how many mails may wait for the enclave worker (at least 1).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets the `Retry-After` of 503 responses (whole seconds, at least 1).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Names the sample enclave the party's page offers a form for.
    pub fn with_page_sample(mut self, sample: impl Into<String>) -> Self {
        self.page_sample = Some(sample.into());
        self
    }

    /// Sets the most replies one poll returns (at least 1).
    pub fn with_poll_limit(mut self, limit: usize) -> Self {
        self.poll_limit = limit.max(1);
        self
    }

    /// Sets about the most reply bytes one poll returns (always at least one reply).
    pub fn with_poll_max_bytes(mut self, bytes: usize) -> Self {
        self.poll_max_bytes = bytes;
        self
    }

    /// Sets the time allowed for a request head (and TLS handshake).
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets the time allowed for a request body.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets how long an idle kept-alive connection stays open.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the most connections open at once (at least 1).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets the most bytes of request bodies held at once (at least one mail's worth).
    pub fn with_body_budget_bytes(mut self, bytes: usize) -> Self {
        self.body_budget_bytes = bytes;
        self
    }

    /// Sets the most replies stored over all correlation ids.
    pub fn with_max_stored_replies(mut self, replies: u64) -> Self {
        self.max_stored_replies = replies;
        self
    }

    /// Sets how long an empty, unused correlation id is kept, and how often that is checked.
    pub fn with_correlation_id_pruning(mut self, max_idle: Duration, interval: Duration) -> Self {
        self.correlation_id_max_idle = max_idle;
        self.prune_interval = interval;
        self
    }

    /// Sets how long a refusal or failure keeps health degraded.
    pub fn with_health_window(mut self, window: Duration) -> Self {
        self.health_window = window;
        self
    }

    /// Serves every connection over TLS.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Allows plain HTTP on a non-loopback address, where anyone on the
    /// network can read the traffic and impersonate the host.
    pub fn with_insecure_http(mut self, allow: bool) -> Self {
        self.insecure_http = allow;
        self
    }

    /// The limits as the server uses them: never below what a single request needs.
    fn normalised(mut self) -> Self {
        self.queue_capacity = self.queue_capacity.max(1);
        self.poll_limit = self.poll_limit.max(1);
        self.max_connections = self.max_connections.max(1);
        self.reader_connections = self.reader_connections.max(1);
        self.body_budget_bytes = self.body_budget_bytes.max(self.max_body_bytes).max(self.max_ack_bytes);
        self
    }
}

/// Refuses plain HTTP on an address other than loopback unless
/// `insecure_http` allows it: without TLS anyone on the path can read the
/// traffic and answer in the host's place. [`run`] checks this; a binary may
/// call it before announcing its address.
pub fn check_transport(address: SocketAddr, config: &WebConfig) -> Result<(), WebError> {
    if config.tls.is_none() && !config.insecure_http && !address.ip().is_loopback() {
        return Err(WebError::PlainHttpOnNetwork { address });
    }
    Ok(())
}

/// Serves the HTTP API of `service` on `listener` until `shutdown` completes,
/// then finishes the requests in flight, stops the enclave worker and returns.
///
/// The service moves into a dedicated worker thread; it is dropped (the store
/// closed) before this returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    service: HostService,
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    let config = Arc::new(config.normalised());
    let address = listener.local_addr().map_err(|source| WebError::Io { action: "read the bound address", source })?;
    check_transport(address, &config)?;
    let metrics = Arc::new(metrics::Metrics::new());
    // Stores do blocking IO (a PostgreSQL client cannot even connect on an
    // async thread): open the readers and start the worker on a blocking thread.
    let (blocking_config, blocking_metrics) = (config.clone(), metrics.clone());
    let started = tokio::task::spawn_blocking(move || -> Result<_, HostError> {
        let mut service = service;
        let readers = reads::Readers::open(service.store_mut(), blocking_config.reader_connections)?;
        let (worker, thread) = worker::spawn(service, &blocking_config, blocking_metrics)?;
        Ok((readers, worker, thread))
    })
    .await
    .map_err(|_| WebError::WorkerStopped)?;
    let (readers, worker, thread) = started?;
    let state = api::AppState::new(worker, readers, metrics, config.clone());
    let app = api::router(state.clone());
    tracing::info!(%address, tls = config.tls.is_some(), max_connections = config.max_connections, "web host serving");
    let served = server::serve(listener, app, state.clone(), shutdown).await;
    // The router and every worker handle are gone now, so the worker's queue
    // closes and the thread ends after its current job.
    drop(state);
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    served?;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the enclave worker ended by a panic");
    }
    Ok(())
}
