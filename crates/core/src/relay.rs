//! MailRelay: what a client needs from whoever carries its mail to the enclave.
//!
//! A host offers it in-process (mock mode, tests) or over HTTP; the client is
//! written once against this trait. Errors carry a stable code, the same one
//! the web host puts in its JSON errors, so a client reacts the same way to a
//! local and a remote host.

use core::fmt;

/// A reply waiting in a host's queue for a correlation id.
#[derive(Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// The host's id for this reply; acknowledge it once it is safely handled.
    pub id: u64,
    /// The encrypted reply.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for QueuedMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedMail").field("id", &self.id).field("len", &self.bytes.len()).finish()
    }
}

/// A relay's refusal, with a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RelayError {
    /// Stable code, such as `MAIL_MALFORMED`, `SEQUENCE_REPLAYED` or `ENCLAVE_FAILED`.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

impl RelayError {
    /// Builds an error from a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

/// Carries mail between one client and an enclave's host.
pub trait MailRelay {
    /// The enclave's encoded `EnclaveInstanceInfo`.
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError>;

    /// Delivers one mail; the host routes the enclave's replies by
    /// `correlation_id`. Returns the first reply for that id, if the enclave
    /// sent one during the call. Every reply, that one included, stays queued
    /// until acknowledged, so a lost response loses nothing.
    fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError>;

    /// Replies queued for `correlation_id`, oldest first. They stay queued
    /// until acknowledged.
    fn poll(&mut self, correlation_id: &str) -> Result<Vec<QueuedMail>, RelayError>;

    /// Deletes the given replies from the queue of `correlation_id`.
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<(), RelayError>;
}
