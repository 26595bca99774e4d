//! The web host: the HTTP API of one [`HostService`].
//!
//! ```text
//!  HTTP clients ──► axum handlers ──(validated Job)──► bounded queue ──► worker thread ──► HostService
//!                   /v1/attestation, /v1/mail, /v1/mail/{id}, /v1/mail/{id}/ack, /v1/health, /metrics
//! ```
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
mod error;
mod metrics;
mod page;
mod worker;

use std::{future::Future, sync::Arc, time::Duration};

pub use error::{WebError, http_status};

use crate::{HostError, HostService};

/// The longest correlation id, in bytes (the store enforces the same).
pub const MAX_CORRELATION_ID_LEN: usize = crate::store::MAX_CORRELATION_ID_LEN;

/// Settings of the web host.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebConfig {
    /// The largest request body accepted, in bytes (413 `PAYLOAD_TOO_LARGE` beyond).
    pub max_body_bytes: usize,
    /// How many requests may wait for the enclave worker; more get 503 `BUSY`.
    pub queue_capacity: usize,
    /// What `Retry-After` says on a 503.
    pub retry_after: Duration,
    /// The most replies one poll returns.
    pub poll_limit: usize,
    /// The sample enclave the host runs, if it is one: the party's page at
    /// `/` shows that sample's form (`GET /v1/page`).
    pub page_sample: Option<String>,
}

impl Default for WebConfig {
    /// 4 MiB bodies, 64 waiting requests, retry after 1 s, 100 replies per poll.
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            queue_capacity: 64,
            retry_after: Duration::from_secs(1),
            poll_limit: 100,
            page_sample: None,
        }
    }
}

impl WebConfig {
    /// Sets the body size limit.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets how many requests may wait for the enclave worker (at least 1).
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
    let metrics = Arc::new(metrics::Metrics::new());
    let (worker, thread) = worker::spawn(service, config.queue_capacity.max(1), metrics.clone())?;
    let app = api::router(worker, metrics, config);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| WebError::Io { action: "serve HTTP", source });
    // The router (and with it every worker handle) is gone now, so the
    // worker's queue closes and the thread ends after its current job.
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    served?;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the enclave worker ended by a panic");
    }
    Ok(())
}
