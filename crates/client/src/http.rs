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
//!
//! Transport: `https://` is verified against the bundled web roots, plus any
//! CA given with [`HttpRelayOptions::trust_ca_pem`]. Plain `http://` is
//! refused unless the host is a loopback address or
//! [`HttpRelayOptions::insecure_http`] says the caller accepts that anyone on
//! the network can read and answer in the host's place. Large mails are
//! sent with `Expect: 100-continue`, so a host that refuses one (busy, too
//! large) answers before the body is sent and the refusal is read intact.

use std::{net::IpAddr, path::Path, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::{MailRelay, QueuedMail, RelayError};
use serde::Deserialize;

/// The largest response body read (a poll returns at most the host's poll limit of replies).
const MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;
/// Mails from this size on ask the host before sending the body.
const EXPECT_CONTINUE_FROM: usize = 64 * 1024;

/// How an [`HttpRelay`] connects: timeout, extra trusted CAs, plain HTTP.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpRelayOptions {
    /// Every request gives up after this long (default 60 s).
    pub timeout: Duration,
    /// Certificates trusted besides the bundled web roots (a private CA, or
    /// a host's self-signed certificate).
    pub extra_roots: Vec<ureq::tls::Certificate<'static>>,
    /// Allows `http://` to a host that is not a loopback address.
    pub insecure_http: bool,
}

impl Default for HttpRelayOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(60), extra_roots: Vec::new(), insecure_http: false }
    }
}

impl HttpRelayOptions {
    /// Sets the per-request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts the certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks) as roots.
    pub fn trust_ca_pem(mut self, pem: &[u8]) -> Result<Self, RelayError> {
        let invalid = |reason: String| RelayError::new("INVALID_CA", reason);
        let mut found = 0;
        for item in ureq::tls::parse_pem(pem) {
            match item.map_err(|e| invalid(format!("cannot parse the CA certificate: {e}")))? {
                ureq::tls::PemItem::Certificate(cert) => {
                    self.extra_roots.push(cert);
                    found += 1;
                }
                _ => continue,
            }
        }
        if found == 0 {
            return Err(invalid("no certificate in the CA file: expected PEM \"BEGIN CERTIFICATE\" blocks".into()));
        }
        Ok(self)
    }

    /// As [`trust_ca_pem`](Self::trust_ca_pem), from a file.
    pub fn trust_ca_file(self, path: &Path) -> Result<Self, RelayError> {
        let pem = std::fs::read(path)
            .map_err(|e| RelayError::new("INVALID_CA", format!("cannot read the CA file {}: {e}", path.display())))?;
        self.trust_ca_pem(&pem).map_err(|e| RelayError::new(e.code, format!("{}: {}", path.display(), e.message)))
    }

    /// Allows plain HTTP to a host that is not a loopback address: anyone on
    /// the network can then read the traffic and impersonate the host.
    pub fn insecure_http(mut self, allow: bool) -> Self {
        self.insecure_http = allow;
        self
    }
}

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

/// Whether `host` (from a URL) is a loopback address: `localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

    /// A relay to the web host at `base_url` (`https://host:port`, or
    /// `http://` on loopback, optionally with a path prefix), with a 60 s
    /// timeout per request.
    pub fn new(base_url: &str) -> Result<Self, RelayError> {
        Self::with_options(base_url, HttpRelayOptions::default())
    }

    /// A relay whose requests give up after `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, RelayError> {
        Self::with_options(base_url, HttpRelayOptions::default().timeout(timeout))
    }

    /// A relay with these transport options.
    pub fn with_options(base_url: &str, options: HttpRelayOptions) -> Result<Self, RelayError> {
        let base = base_url.trim_end_matches('/');
        let invalid = || {
            RelayError::new(
                "INVALID_URL",
                format!("invalid host URL {base_url:?}: expected https://HOST:PORT (or http://127.0.0.1:PORT)"),
            )
        };
        let uri: ureq::http::Uri = base.parse().map_err(|_| invalid())?;
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(invalid)?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if options.insecure_http || is_loopback(host) => {}
            Some("http") => {
                return Err(RelayError::new(
                    "INSECURE_URL",
                    format!(
                        "refusing plain http to {host}, which is not a loopback address: anyone on the network could \
                         read the traffic and answer as the host; use https:// (with --tls-ca for a private CA), or \
                         --insecure-http to accept the risk"
                    ),
                ));
            }
            _ => return Err(invalid()),
        }
        let roots = if options.extra_roots.is_empty() {
            ureq::tls::RootCerts::WebPki
        } else {
            let mut roots: Vec<ureq::tls::Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            roots.extend(options.extra_roots.iter().cloned());
            ureq::tls::RootCerts::Specific(Arc::new(roots))
        };
        let tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls).root_certs(roots).build();
        let agent = ureq::Agent::config_builder()
            // Error statuses carry the host's JSON error; read them ourselves.
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .tls_config(tls)
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
        let mut request = self
            .agent
            .post(self.url("/v1/mail"))
            .header("Correlation-ID", correlation_id)
            .header("Content-Type", "application/octet-stream");
        if mail.len() >= EXPECT_CONTINUE_FROM {
            // A refusal (busy, too large) then comes before the body is sent.
            request = request.header("Expect", "100-continue");
        }
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
        for good in ["https://example.invalid", "http://localhost:1", "http://[::1]:80", "http://127.1.2.3:9/prefix"] {
            assert!(HttpRelay::new(good).is_ok(), "{good:?}");
        }
        for bad in ["127.0.0.1:8080", "ftp://127.0.0.1", "http://", "https://", ""] {
            assert_eq!(HttpRelay::new(bad).unwrap_err().code, "INVALID_URL", "{bad:?}");
        }
    }

    #[test]
    fn plain_http_off_loopback_needs_consent() {
        for remote in ["http://10.0.0.1:8080", "http://example.invalid", "http://[2001:db8::1]:80"] {
            let error = HttpRelay::new(remote).unwrap_err();
            assert_eq!(error.code, "INSECURE_URL", "{remote:?}");
            assert!(error.message.contains("--insecure-http"), "{}", error.message);
            let allowed = HttpRelay::with_options(remote, HttpRelayOptions::default().insecure_http(true));
            assert!(allowed.is_ok(), "{remote:?}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let error = HttpRelayOptions::default().trust_ca_pem(b"no pem here").unwrap_err();
        assert_eq!(error.code, "INVALID_CA");
        let missing = HttpRelayOptions::default().trust_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(missing.message.contains("/nonexistent/ca.pem"), "{}", missing.message);
    }

    #[test]
    fn correlation_ids_are_checked_before_sending() {
        let mut relay = HttpRelay::new("http://127.0.0.1:9").unwrap();
        assert_eq!(relay.poll("a/../b").unwrap_err().code, "INVALID_CORRELATION_ID");
        assert_eq!(relay.deliver("", b"x").unwrap_err().code, "INVALID_CORRELATION_ID");
    }
}
