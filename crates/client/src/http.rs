//! HttpRelay: the [`MailRelay`] of a Conclave web host, over HTTP/1.1.
//!
//! ```text
//!  attestation()  GET  {base}/v1/attestation             → encoded EnclaveInstanceInfo
//!  deliver()      POST {base}/v1/mail  (Correlation-ID)  → 200 reply + Reply-ID, or 204
//!  poll()         GET  {base}/v1/mail/{id}               → {"replies": [{"id", "mail" (base64)}]}
//!  acknowledge()  POST {base}/v1/mail/{id}/ack {"ids"}   → {"deleted": n}
//! ```
//!
//! The host's JSON errors become [`RelayError`]s with the same stable code;
//! a host that cannot be reached gives `UNREACHABLE`, and an answer that is
//! not what the API promises gives `BAD_RESPONSE`. The relay is blocking,
//! like [`crate::EnclaveClient`]. The API is described in `docs/http-api.md`.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::{MailRelay, QueuedMail, RelayError};
use serde::Deserialize;

/// The largest response body read (a poll returns at most the host's poll limit of replies).
const MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;

/// A [`MailRelay`] that talks to a web host at a base URL such as `http://127.0.0.1:8080`.
#[derive(Debug, Clone)]
pub struct HttpRelay {
    base: String,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
}

#[derive(Deserialize)]
struct PollBody {
    replies: Vec<PolledReply>,
}

#[derive(Deserialize)]
struct PolledReply {
    id: u64,
    mail: String,
}

fn bad_response(message: impl Into<String>) -> RelayError {
    RelayError::new(HttpRelay::BAD_RESPONSE, message)
}

/// The web host's rule: 1 to 256 letters, digits, '-', '_' or '.'. Checked
/// here too because the id becomes part of a URL path.
fn check_correlation_id(id: &str) -> Result<(), RelayError> {
    let valid = !id.is_empty()
        && id.len() <= 256
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(RelayError::new(
            "INVALID_CORRELATION_ID",
            "invalid correlation id: use 1 to 256 letters, digits, '-', '_' or '.'",
        ))
    }
}

impl HttpRelay {
    /// The code of a transport failure: no connection, a timeout, a reset.
    pub const UNREACHABLE: &'static str = "UNREACHABLE";
    /// The code of an answer that does not follow the API.
    pub const BAD_RESPONSE: &'static str = "BAD_RESPONSE";

    /// A relay to the web host at `base_url` (`http://host:port`, optionally
    /// with a path prefix), with a 60 s timeout per request.
    pub fn new(base_url: &str) -> Result<Self, RelayError> {
        Self::with_timeout(base_url, Duration::from_secs(60))
    }

    /// A relay whose requests give up after `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, RelayError> {
        let base = base_url.trim_end_matches('/');
        if !base.starts_with("http://") || base.len() == "http://".len() {
            return Err(RelayError::new(
                "INVALID_URL",
                format!("invalid host URL {base_url:?}: expected http://HOST:PORT (https is not built in)"),
            ));
        }
        let agent = ureq::Agent::config_builder()
            // Error statuses carry the host's JSON error; read them ourselves.
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(Self { base: base.to_owned(), agent })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Reads a response; statuses of 400 and above become the host's error.
    fn read(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>), RelayError> {
        let unreachable =
            |e: ureq::Error| RelayError::new(Self::UNREACHABLE, format!("cannot reach {}: {e}", self.base));
        let mut response = result.map_err(unreachable)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.body_mut().with_config().limit(MAX_RESPONSE_BYTES).read_to_vec().map_err(unreachable)?;
        if status >= 400 {
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(error) => RelayError::new(error.error, error.message),
                Err(_) => bad_response(format!("HTTP status {status} without a JSON error from {}", self.base)),
            });
        }
        Ok((status, headers, body))
    }
}

impl MailRelay for HttpRelay {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        let request = self.agent.get(self.url("/v1/attestation")).header("Accept", "application/octet-stream");
        let (_, _, body) = self.read(request.call())?;
        Ok(body)
    }

    fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        check_correlation_id(correlation_id)?;
        let request = self
            .agent
            .post(self.url("/v1/mail"))
            .header("Correlation-ID", correlation_id)
            .header("Content-Type", "application/octet-stream");
        let (status, headers, bytes) = self.read(request.send(mail))?;
        match status {
            204 => Ok(None),
            200 => {
                let id = headers
                    .get("reply-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad_response("a reply without a valid Reply-ID header"))?;
                Ok(Some(QueuedMail { id, bytes }))
            }
            other => Err(bad_response(format!("unexpected HTTP status {other} for a delivery"))),
        }
    }

    fn poll(&mut self, correlation_id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        check_correlation_id(correlation_id)?;
        let (_, _, body) = self.read(self.agent.get(self.url(&format!("/v1/mail/{correlation_id}"))).call())?;
        let polled: PollBody =
            serde_json::from_slice(&body).map_err(|e| bad_response(format!("unreadable poll answer: {e}")))?;
        polled
            .replies
            .into_iter()
            .map(|reply| {
                let bytes = BASE64
                    .decode(reply.mail)
                    .map_err(|e| bad_response(format!("reply {} is not base64: {e}", reply.id)))?;
                Ok(QueuedMail { id: reply.id, bytes })
            })
            .collect()
    }

    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<(), RelayError> {
        check_correlation_id(correlation_id)?;
        let body = serde_json::json!({ "ids": ids }).to_string();
        let request = self
            .agent
            .post(self.url(&format!("/v1/mail/{correlation_id}/ack")))
            .header("Content-Type", "application/json");
        self.read(request.send(body.as_bytes()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(HttpRelay::new("http://127.0.0.1:8080/").unwrap().base_url(), "http://127.0.0.1:8080");
        for bad in ["127.0.0.1:8080", "https://example.invalid", "http://", ""] {
            assert_eq!(HttpRelay::new(bad).unwrap_err().code, "INVALID_URL", "{bad:?}");
        }
    }

    #[test]
    fn correlation_ids_are_checked_before_sending() {
        let mut relay = HttpRelay::new("http://127.0.0.1:9").unwrap();
        assert_eq!(relay.poll("a/../b").unwrap_err().code, "INVALID_CORRELATION_ID");
        assert_eq!(relay.deliver("", b"x").unwrap_err().code, "INVALID_CORRELATION_ID");
    }
}
