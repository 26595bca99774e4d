//! Routes and handlers: each request is checked and decoded into a typed
//! [`Job`] before it reaches the worker, and each answer is encoded here.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, Request, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::EnclaveInstanceInfo;
use serde::Deserialize;

use super::{
    MAX_CORRELATION_ID_LEN, WebConfig, WebError,
    error::{ApiError, ErrorCode},
    metrics::Metrics,
    worker::{Job, WorkerHandle},
};

/// The request header that carries the correlation id.
pub(crate) const CORRELATION_ID: &str = "correlation-id";
/// The response header that carries the queue id of a direct reply.
pub(crate) const REPLY_ID: &str = "reply-id";

/// What every handler shares.
#[derive(Debug, Clone)]
struct AppState {
    worker: WorkerHandle,
    metrics: Arc<Metrics>,
    config: Arc<WebConfig>,
    /// Deliveries allowed to read their body at once: one being handled plus
    /// a full worker queue. It bounds the memory held by mail bodies to
    /// (queue capacity + 1) × the body limit, however many clients connect.
    admission: Arc<tokio::sync::Semaphore>,
}

pub(crate) fn router(worker: WorkerHandle, metrics: Arc<Metrics>, config: WebConfig) -> Router {
    let limit = config.max_body_bytes;
    let admission = Arc::new(tokio::sync::Semaphore::new(config.queue_capacity.max(1) + 1));
    let page = super::page::routes(config.page_sample.clone());
    let state = AppState { worker, metrics, config: Arc::new(config), admission };
    Router::new()
        .route("/v1/attestation", get(attestation))
        .route("/v1/mail", post(deliver).layer(middleware::from_fn_with_state(state.clone(), admit)))
        .route("/v1/mail/{correlation_id}", get(poll))
        .route("/v1/mail/{correlation_id}/ack", post(acknowledge))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics_text))
        .merge(page)
        .fallback(|| async { ApiError::from(WebError::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::from(WebError::MethodNotAllowed) })
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Lets a delivery read its body only if it may be queued: otherwise 503
/// BUSY at once, before a byte of the body is held in memory.
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.admission.clone().try_acquire_owned() {
        // The permit is held until the response is ready.
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::from(WebError::Busy).into_response(),
    }
}

/// Counts error responses by code and adds `Retry-After` to every 503.
async fn count_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(code);
    }
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        let seconds = state.config.retry_after.as_secs().max(1);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
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

fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

async fn attestation(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let encoded = state.worker.call(Job::Attestation).await?;
    if !wants_json(&headers) {
        return Ok(octets(encoded));
    }
    // Verifying hardware evidence takes milliseconds of CPU: keep it off the
    // threads that serve connections.
    let verified = tokio::task::spawn_blocking(move || {
        EnclaveInstanceInfo::decode(&encoded).and_then(|info| info.verify(now_unix()))
    })
    .await
    .map_err(|_| WebError::WorkerStopped)?
    .map_err(WebError::Attestation)?;
    Ok(Json(verified.to_json()).into_response())
}

async fn deliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let correlation_id = match headers.get(CORRELATION_ID) {
        None => return Err(WebError::MissingCorrelationId.into()),
        Some(value) => value.to_str().map_err(|_| WebError::InvalidCorrelationId("it is not ASCII"))?.to_owned(),
    };
    check_correlation_id(&correlation_id)?;
    let mail = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => WebError::PayloadTooLarge { limit: state.config.max_body_bytes },
        _ => WebError::BadRequest(format!("cannot read the body: {}", rejection.body_text())),
    })?;
    if mail.is_empty() {
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
    let limit = query.limit.unwrap_or(most).clamp(1, most);
    let replies = state.worker.call(|reply| Job::Poll { correlation_id, limit, reply }).await?;
    let replies: Vec<_> =
        replies.into_iter().map(|r| serde_json::json!({ "id": r.id, "mail": BASE64.encode(&r.bytes) })).collect();
    Ok(Json(serde_json::json!({ "replies": replies })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    ids: Vec<u64>,
}

async fn acknowledge(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_correlation_id(&correlation_id)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => WebError::PayloadTooLarge { limit: state.config.max_body_bytes },
        _ => WebError::BadRequest(format!("cannot read the body: {}", rejection.body_text())),
    })?;
    let AckRequest { ids } = serde_json::from_slice(&body)
        .map_err(|e| WebError::BadRequest(format!("expected {{\"ids\": [numbers]}}: {e}")))?;
    let deleted = state.worker.call(|reply| Job::Acknowledge { correlation_id, ids, reply }).await?;
    Ok(Json(serde_json::json!({ "deleted": deleted })).into_response())
}

/// Answers from the worker's published status, without queueing a job, so
/// it answers even when the worker is busy.
async fn health(State(state): State<AppState>) -> Response {
    let status = state.worker.status();
    let running = status.enclave_running.load(Ordering::SeqCst);
    let body = serde_json::json!({
        "status": if running { "ok" } else { "unavailable" },
        "enclave": if running { "running" } else { "stopped" },
        "worker_queue": status.queued.load(Ordering::SeqCst),
        "worker_queue_capacity": state.config.queue_capacity,
        "stored_replies": status.stored_replies.load(Ordering::SeqCst),
    });
    let code = if running { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
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
