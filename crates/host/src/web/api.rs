//! Routes and handlers: each request is checked and decoded into a typed
//! [`Job`] (or a read) before it touches the enclave or the store, and each
//! answer is encoded here.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::EnclaveInstanceInfo;
use serde::Deserialize;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::{
    MAX_CORRELATION_ID_LEN, WebConfig, WebError,
    body::{self, Budget},
    error::{ApiError, ErrorCode},
    health::{self, Signals},
    metrics::Metrics,
    reads::Readers,
    worker::{Job, WorkerHandle},
};

/// The request header that carries the correlation id.
pub(crate) const CORRELATION_ID: &str = "correlation-id";
/// The response header that carries the queue id of a direct reply.
pub(crate) const REPLY_ID: &str = "reply-id";

/// What every handler and the accept loop share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    worker: WorkerHandle,
    /// Reader connections for polls and acknowledgements; `None` for a store in memory.
    readers: Option<Arc<Readers>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: Arc<WebConfig>,
    /// Bytes of bodies held at once (being read, or waiting for the worker).
    budget: Budget,
    pub(crate) signals: Arc<Signals>,
}

impl AppState {
    pub(crate) fn new(
        worker: WorkerHandle,
        readers: Option<Arc<Readers>>,
        metrics: Arc<Metrics>,
        config: Arc<WebConfig>,
    ) -> Self {
        let budget = Budget::new(config.body_budget_bytes, metrics.clone());
        Self { worker, readers, metrics, config, budget, signals: Arc::new(Signals::new()) }
    }

    fn body_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.config.body_timeout
    }

    /// Reads a body of at most `limit` bytes: refused from its declared
    /// length before any byte is read, then under the deadline and budget.
    async fn read_body(&self, headers: &HeaderMap, body: Body, limit: usize) -> Result<body::Held, ApiError> {
        let deadline = self.body_deadline();
        if body::content_length(headers).is_some_and(|declared| declared > limit as u64) {
            self.metrics.refuse("payload_too_large");
            body::discard(body, headers, 0, deadline);
            return Err(WebError::PayloadTooLarge { limit }.into());
        }
        let seconds = self.config.body_timeout.as_secs_f64();
        Ok(self.budget.read(body, body::content_length(headers), limit, deadline, seconds).await?)
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        // Server faults are logged where they become responses (error.rs),
        // and refusals under load are counted, not logged one by one.
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG));
    let page = super::page::routes(state.config.page_sample.clone());
    Router::new()
        .route("/v1/attestation", get(attestation))
        .route("/v1/mail", post(deliver))
        .route("/v1/mail/{correlation_id}", get(poll))
        .route("/v1/mail/{correlation_id}/ack", post(acknowledge))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics_text))
        .merge(page)
        .fallback(|| async { ApiError::from(WebError::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::from(WebError::MethodNotAllowed) })
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(trace)
        .with_state(state)
}

/// Counts error responses by code, keeps the health signals, and adds
/// `Retry-After` to every 503 and 507.
async fn count_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let delivery = request.uri().path() == "/v1/mail";
    let mut response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(code);
        let now = Instant::now();
        match code.as_str() {
            "BUSY" => {
                state.metrics.refuse("busy");
                if delivery {
                    state.signals.note(&state.signals.busy, now);
                }
            }
            "REPLY_STORE_FULL" => state.metrics.refuse("reply_store_full"),
            "REPLY_QUEUE_FULL" => state.metrics.refuse("reply_queue_full"),
            "STORE_FAILED" => state.signals.note(&state.signals.store_failed, now),
            "STORE_FULL" => state.signals.note(&state.signals.store_full, now),
            _ => {}
        }
    }
    if matches!(response.status(), StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE) {
        let seconds = state.config.retry_after.as_secs().max(1);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body may still be on its way: start afresh.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Checks a correlation id: 1 to 256 bytes of ASCII letters, digits, '-', '_' and '.'.
/// The narrow alphabet keeps ids safe in paths, headers and logs.
pub(crate) fn check_correlation_id(id: &str) -> Result<(), WebError> {
    if id.is_empty() {
        return Err(WebError::InvalidCorrelationId("it is empty"));
    }
    if id.len() > MAX_CORRELATION_ID_LEN {
        return Err(WebError::InvalidCorrelationId("it is longer than 256 characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(WebError::InvalidCorrelationId("use only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|part| part.trim().starts_with("application/json")))
}

fn octets(bytes: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes.into()).into_response()
}

/// The attestation the worker published for this enclave run: never queued
/// behind mail. Its JSON view is verified once per run, on first request.
async fn attestation(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let status = state.worker.status();
    let published = status.attestation().filter(|_| status.enclave_running.load(Ordering::SeqCst));
    let Some(published) = published else { return Err(WebError::WorkerStopped.into()) };
    if !wants_json(&headers) {
        return Ok(octets(published.encoded.clone()));
    }
    let encoded = published.encoded.clone();
    let view = published
        .json
        .get_or_init(|| async move {
            // Verifying hardware evidence takes milliseconds of CPU: keep it
            // off the threads that serve connections.
            tokio::task::spawn_blocking(move || {
                EnclaveInstanceInfo::decode(&encoded)
                    .and_then(|info| info.verify(now_unix()))
                    .map(|verified| Arc::new(verified.to_json()))
            })
            .await
            .unwrap_or_else(|_| Err(conclave_core::InfoError::Malformed { reason: "verification panicked" }))
        })
        .await;
    match view {
        Ok(json) => Ok(Json(json.as_ref().clone()).into_response()),
        Err(error) => Err(WebError::Attestation(error.clone()).into()),
    }
}

/// The checks a delivery passes before its body is read. A refusal here
/// reaches the client intact: see [`body::discard`].
fn admit_delivery(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let correlation_id = match headers.get(CORRELATION_ID) {
        None => return Err(WebError::MissingCorrelationId.into()),
        Some(value) => value.to_str().map_err(|_| WebError::InvalidCorrelationId("it is not ASCII"))?.to_owned(),
    };
    check_correlation_id(&correlation_id)?;
    let limit = state.config.max_body_bytes;
    if body::content_length(headers).is_some_and(|declared| declared > limit as u64) {
        state.metrics.refuse("payload_too_large");
        return Err(WebError::PayloadTooLarge { limit }.into());
    }
    if state.worker.is_full() {
        return Err(WebError::Busy.into());
    }
    let stored = state.worker.status().stored_replies.load(Ordering::SeqCst);
    if stored >= state.config.max_stored_replies {
        return Err(WebError::ReplyStoreFull { stored }.into());
    }
    Ok(correlation_id)
}

async fn deliver(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let started = Instant::now();
    let correlation_id = match admit_delivery(&state, &headers) {
        Ok(id) => id,
        Err(refusal) => {
            body::discard(body, &headers, state.config.max_body_bytes, state.body_deadline());
            return Err(refusal);
        }
    };
    let mail = state.read_body(&headers, body, state.config.max_body_bytes).await?;
    if mail.bytes.is_empty() {
        return Err(WebError::BadRequest("the body is empty: send the encrypted mail as the body".into()).into());
    }
    let result = state.worker.call(|reply| Job::Deliver { correlation_id, mail, reply }).await;
    state.metrics.delivery_seconds.observe(started.elapsed().as_secs_f64());
    Ok(match result? {
        Some(reply) => {
            let mut response = octets(reply.bytes);
            response.headers_mut().insert(REPLY_ID, HeaderValue::from(reply.id));
            response
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    limit: Option<usize>,
}

async fn poll(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
    query: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    check_correlation_id(&correlation_id)?;
    let Query(query) = query.map_err(|e| WebError::BadRequest(format!("bad query: {}", e.body_text())))?;
    let most = state.config.poll_limit.max(1);
    let limit = match query.limit {
        None => most,
        Some(0) => return Err(WebError::BadRequest("the query parameter limit must be at least 1".into()).into()),
        Some(limit) => limit.min(most),
    };
    let replies = match &state.readers {
        Some(readers) => readers.poll(correlation_id, limit, state.config.poll_max_bytes).await?,
        None => state.worker.call(|reply| Job::Poll { correlation_id, limit, reply }).await?,
    };
    let replies: Vec<_> =
        replies.into_iter().map(|r| serde_json::json!({ "id": r.id, "mail": BASE64.encode(&r.bytes) })).collect();
    let json = serde_json::to_vec(&serde_json::json!({ "replies": replies }))
        .map_err(|e| WebError::BadRequest(format!("cannot encode the replies: {e}")))?;
    drop(replies);
    // A poll answer can be large: it takes budget like a request body until sent.
    let deadline = tokio::time::Instant::now() + state.config.retry_after.max(std::time::Duration::from_secs(1));
    let body = state.budget.hold_response(json.into(), deadline).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    ids: Vec<u64>,
}

async fn acknowledge(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Err(invalid) = check_correlation_id(&correlation_id) {
        body::discard(body, &headers, state.config.max_ack_bytes, state.body_deadline());
        return Err(invalid.into());
    }
    let body = state.read_body(&headers, body, state.config.max_ack_bytes).await?;
    let AckRequest { ids } = serde_json::from_slice(&body.bytes)
        .map_err(|e| WebError::BadRequest(format!("expected {{\"ids\": [numbers]}}: {e}")))?;
    drop(body);
    let deleted = match &state.readers {
        Some(readers) => {
            let (deleted, depth) = readers.acknowledge(correlation_id, ids).await?;
            if let Some(depth) = depth {
                state.worker.status().stored_replies.store(depth, Ordering::SeqCst);
                state.metrics.stored_replies.set(i64::try_from(depth).unwrap_or(i64::MAX));
            }
            deleted
        }
        None => state.worker.call(|reply| Job::Acknowledge { correlation_id, ids, reply }).await?,
    };
    Ok(Json(serde_json::json!({ "deleted": deleted })).into_response())
}

/// Answers from published status and counters, without queueing a job, so
/// it answers even when the worker is busy; and says why it is not "ok".
async fn health(State(state): State<AppState>) -> Response {
    let status = state.worker.status();
    let config = &state.config;
    let now = Instant::now();
    let signals = &state.signals;
    let running = status.enclave_running.load(Ordering::SeqCst);
    let stored = status.stored_replies.load(Ordering::SeqCst);
    let open = signals.connections_open.load(Ordering::Relaxed);
    let (word, reasons) = health::assess(health::Inputs {
        enclave_running: running,
        busy_recently: signals.within(&signals.busy, config.health_window, now),
        store_failed_recently: signals.within(&signals.store_failed, config.health_window, now),
        store_full_recently: signals.within(&signals.store_full, config.health_window, now),
        connections_at_cap: open >= config.max_connections
            || signals.within(&signals.connection_cap, config.health_window, now),
        reply_store_full: stored >= config.max_stored_replies,
    });
    let body = serde_json::json!({
        "status": word,
        "reasons": reasons,
        "enclave": if running { "running" } else { "stopped" },
        "worker_queue": status.queued.load(Ordering::SeqCst),
        "worker_queue_capacity": config.queue_capacity,
        "stored_replies": stored,
        "stored_replies_limit": config.max_stored_replies,
        "connections": open,
        "connections_limit": config.max_connections,
    });
    let code = if running { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut response = (code, Json(body)).into_response();
    if !running {
        let seconds = config.retry_after.as_secs().max(1);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let queued = state.worker.status().queued.load(Ordering::SeqCst);
    state.metrics.worker_queue.set(i64::try_from(queued).unwrap_or(i64::MAX));
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids() {
        assert!(check_correlation_id("a").is_ok());
        assert!(check_correlation_id("client-1_A.b").is_ok());
        assert!(check_correlation_id(&"x".repeat(256)).is_ok());
        assert!(check_correlation_id("").is_err());
        assert!(check_correlation_id(&"x".repeat(257)).is_err());
        for bad in ["a b", "a/b", "é", "a\n", "a%2f"] {
            assert!(check_correlation_id(bad).is_err(), "{bad:?}");
        }
    }
}
