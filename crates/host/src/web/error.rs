//! Errors of the web host, and the one place a stable code becomes an HTTP status.
//!
//! [`HostError::code`] turns every error into a stable code; [`http_status`]
//! turns a code into a status. The wire gets `{"error": CODE, "message": TEXT}`.
//! For server-side failures the message is generic and the detail goes to the
//! host's log only: the remote party learns less than the operator.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::HostError;

/// What went wrong in the web layer itself (requests, queueing, serving).
/// Reaches callers as [`HostError::Web`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The enclave worker's queue is full.
    #[error("the host is busy: too many requests are waiting for the enclave; retry later")]
    Busy,
    /// The enclave worker has stopped (it failed, or the host is shutting down).
    #[error("the enclave is not available")]
    WorkerStopped,
    /// `POST /v1/mail` without a `Correlation-ID` header.
    #[error("missing Correlation-ID header: set it to 1 to 256 letters, digits, '-', '_' or '.'")]
    MissingCorrelationId,
    /// A correlation id that breaks the rules.
    #[error("invalid correlation id: {0}")]
    InvalidCorrelationId(&'static str),
    /// A request body over the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A request that cannot be understood (bad JSON, unreadable body).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such endpoint.
    #[error("no such endpoint: see docs/http-api.md")]
    NotFound,
    /// The endpoint exists but not with this method.
    #[error("method not allowed for this endpoint")]
    MethodNotAllowed,
    /// The enclave's own attestation does not verify.
    #[error("the enclave's attestation does not verify: {0}")]
    Attestation(conclave_core::InfoError),
    /// A request body did not arrive within the configured time.
    #[error("the request body did not arrive within {seconds:.1} s: send it faster or raise the host's body timeout")]
    BodyTimeout {
        /// The body timeout in seconds.
        seconds: f64,
    },
    /// The store holds as many replies as the host allows over all clients.
    #[error("the host stores {stored} unacknowledged replies, its limit: retry after clients acknowledge theirs")]
    ReplyStoreFull {
        /// Replies stored.
        stored: u64,
    },
    /// Plain HTTP on an address other than loopback, without explicit consent.
    #[error(
        "refusing to serve plain HTTP on {address}, which is not a loopback address: give a TLS certificate and \
         key (conclave host --tls-cert/--tls-key), or accept that anyone on the network can read and forge the \
         traffic (--insecure-http)"
    )]
    PlainHttpOnNetwork {
        /// The listening address.
        address: std::net::SocketAddr,
    },
    /// The TLS certificate or key cannot be used.
    #[error("cannot set up TLS: {what} {path}: {reason}")]
    Tls {
        /// What was wrong, such as "cannot read the certificate file".
        what: &'static str,
        /// The file involved.
        path: std::path::PathBuf,
        /// The detail.
        reason: String,
    },
    /// Serving failed at the OS level.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl WebError {
    /// The stable code of this error (what [`HostError::code`] returns for it).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Busy => "BUSY",
            Self::WorkerStopped => "ENCLAVE_UNAVAILABLE",
            Self::MissingCorrelationId => "MISSING_CORRELATION_ID",
            Self::InvalidCorrelationId(_) => "INVALID_CORRELATION_ID",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Attestation(_) => "ATTESTATION_INVALID",
            Self::BodyTimeout { .. } => "BODY_TIMEOUT",
            Self::ReplyStoreFull { .. } => "REPLY_STORE_FULL",
            Self::PlainHttpOnNetwork { .. } | Self::Tls { .. } | Self::Io { .. } => "HOST_FAILED",
        }
    }
}

/// The HTTP status of a stable error code. The only such mapping: every
/// error response's status comes from here.
pub fn http_status(code: &str) -> StatusCode {
    match code {
        "MAIL_INVALID" | "MISSING_CORRELATION_ID" | "INVALID_CORRELATION_ID" | "BAD_REQUEST" => StatusCode::BAD_REQUEST,
        "UNKNOWN_CORRELATION_ID" | "NOT_FOUND" => StatusCode::NOT_FOUND,
        "METHOD_NOT_ALLOWED" => StatusCode::METHOD_NOT_ALLOWED,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "BODY_TIMEOUT" => StatusCode::REQUEST_TIMEOUT,
        "REPLY_QUEUE_FULL" => StatusCode::TOO_MANY_REQUESTS,
        "REPLY_STORE_FULL" | "STORE_FULL" => StatusCode::INSUFFICIENT_STORAGE,
        // The mail was well formed and in sequence; the application said no.
        "ENCLAVE_REFUSED" => StatusCode::UNPROCESSABLE_ENTITY,
        // Nothing of the call was committed and the enclave is back at its
        // committed state: the same mail can be sent again.
        "BUSY" | "ENCLAVE_UNAVAILABLE" | "STORE_FAILED" => StatusCode::SERVICE_UNAVAILABLE,
        // ENCLAVE_FAILED, HOST_FAILED, ATTESTATION_INVALID and any code added later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error code a response carried, left in its extensions for the
/// metrics middleware.
#[derive(Debug, Clone)]
pub(crate) struct ErrorCode(pub(crate) String);

/// A [`HostError`] on its way to becoming a JSON error response.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) HostError);

impl<E: Into<HostError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code().to_owned();
        let status = http_status(&code);
        // Application refusals may carry the enclave's private reasoning, and
        // server failures name files and internals: log them, send a summary.
        let message = match code.as_str() {
            "ENCLAVE_REFUSED" => {
                tracing::warn!(code = %code, "{}", self.0);
                "the enclave refused the mail".to_owned()
            }
            // Server-side failures name files, databases and internals.
            _ if status == StatusCode::INTERNAL_SERVER_ERROR || code.starts_with("STORE_") => {
                tracing::warn!(code = %code, "{}", self.0);
                "the host failed to handle the request; the operator's log has the detail".to_owned()
            }
            _ => self.0.to_string(),
        };
        let mut response = (status, Json(serde_json::json!({ "error": &code, "message": message }))).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}
