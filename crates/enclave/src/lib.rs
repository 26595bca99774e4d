//! Conclave enclave SDK: the trait an enclave implements and the runtime that drives it.
//!
//! ```text
//!  host ── mail bytes ──► EnclaveRuntime ── decrypt, check sequence ──► Enclave::receive_mail
//!                              ▲                                               │
//!  host ◄── HostCommand batch ─┴──────────── EnclaveContext::reply / post_mail ┘
//! ```
//!
//! The runtime decrypts every mail with the enclave's private key (fresh at
//! every start), checks the sequence number per (authenticated sender, topic)
//! and the client's view of the enclave's state, so replayed, reordered or
//! skipped mail, and mail from a client that has seen a state this enclave
//! does not descend from, never reach application code (the sender gets an
//! authenticated rejection instead). Every accepted mail gets an answer in
//! the call that handles it (the application's reply, or a receipt), every
//! call that changes anything seals a new state, and everything the enclave
//! emits during a call comes out as one ordered batch.
//!
//! # Getting started
//!
//! An enclave that answers each mail with its body reversed:
//!
//! ```
//! use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
//!
//! #[derive(Default)]
//! struct Reverse;
//!
//! impl Enclave for Reverse {
//!     fn receive_mail(
//!         &mut self,
//!         ctx: &mut EnclaveContext<'_>,
//!         mail: EnclaveMail,
//!         routing_hint: Option<&str>,
//!     ) -> Result<(), EnclaveError> {
//!         let reversed: Vec<u8> = mail.body.iter().rev().copied().collect();
//!         ctx.reply(&mail, &reversed, routing_hint)
//!     }
//! }
//! ```
#![deny(missing_docs)]

mod kds_client;
pub mod persistence;
pub mod process;
mod runtime;
pub mod sandbox;
pub mod sequence;
pub mod tee;

pub use conclave_core::kds::{KDS_TOPIC, MAIL_KEY, PERSISTENCE_KEY};
pub use persistence::PersistentMap;
pub use runtime::{CallOutcome, Delivered, EnclaveContext, EnclaveIdentity, EnclaveRuntime, HostInterface, StartInput};

use conclave_core::{MailError, MailHeader, PublicKey};

/// Makes a fresh enclave value: how the runtime rebuilds the application in
/// place (same keys, same run) after a panic or a failed commit.
pub type EnclaveFactory = Box<dyn Fn() -> Box<dyn Enclave> + Send>;

/// A mail that decrypted and passed every check, as the application sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct EnclaveMail {
    /// The authenticated header.
    pub header: MailHeader,
    /// The sender's static X25519 key, proven by the Noise handshake.
    pub sender: PublicKey,
    /// The body (the request frame removed).
    pub body: Vec<u8>,
    /// The request id of this attempt; answers name it.
    pub(crate) request_id: [u8; 16],
}

impl core::fmt::Debug for EnclaveMail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Bodies are private data: show only their length.
        f.debug_struct("EnclaveMail")
            .field("header", &self.header)
            .field("sender", &self.sender)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The trait an enclave implements. Every method runs inside the enclave;
/// the context is how it talks to the outside.
pub trait Enclave: std::any::Any + Send {
    /// Called once after the enclave's keys exist and before any mail.
    fn on_startup(&mut self, _ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        Ok(())
    }

    /// A mail that decrypted and passed the sequence check. `routing_hint`
    /// is the host's opaque label for replies to it.
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError>;

    /// Bytes the host sends directly (not mail: the host sees them in clear).
    fn receive_from_untrusted_host(
        &mut self,
        _ctx: &mut EnclaveContext<'_>,
        _bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, EnclaveError> {
        Ok(None)
    }

    /// A mail this enclave posted to itself in an earlier run, handed back
    /// at start in the order it was posted (after `on_startup`, before any
    /// client mail). Call [`EnclaveContext::delete_mail_to_self`] with its id
    /// once its content is absorbed.
    fn receive_mail_from_self(&mut self, _ctx: &mut EnclaveContext<'_>, _mail: SelfMail) -> Result<(), EnclaveError> {
        Ok(())
    }

    /// Who may unseal what this enclave seals (its persistent map and
    /// mail-to-self): only enclaves with the same code hash (the default), or
    /// any enclave from the same signer and product id, so that a newer signed
    /// version can read an older one's data. Fixed by the enclave's code; data
    /// sealed under another policy is refused.
    fn sealing_policy(&self) -> conclave_core::SealingPolicy {
        conclave_core::SealingPolicy::CodeHash
    }

    /// Called once before the enclave stops.
    fn on_shutdown(&mut self, _ctx: &mut EnclaveContext<'_>) {}

    /// The key derivation service this enclave trusts and the keys it wants
    /// from it, or `None` (the default) for per-start keys and the
    /// platform's sealing secret. Asked once at every start, before
    /// anything is unsealed; `identity` is this enclave's own measured
    /// identity. Fixed by the enclave's code, so the host cannot substitute
    /// another KDS.
    fn kds(&self, _identity: &EnclaveIdentity) -> Option<KdsConfig> {
        None
    }
}

/// Which key derivation service an enclave trusts, and which keys it wants.
///
/// With a mail key, the enclave's encryption key is the same at every start
/// and on every host (clients need not attest again after a restart); with a
/// persistence key, its sealed state opens on any machine whose enclave
/// satisfies the key's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdsConfig {
    /// The constraint the KDS's own attestation must satisfy.
    pub constraint: String,
    /// The policy for the mail key (`None`: a fresh key at every start).
    pub mail_key_policy: Option<String>,
    /// The policy for the persistence key (`None`: seal with the platform's secret).
    pub persistence_key_policy: Option<String>,
}

/// What an enclave asks its host to carry to the KDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdsCall {
    /// Fetch the KDS's encoded `EnclaveInstanceInfo`.
    Attestation,
    /// Deliver this mail to the KDS and return its direct answer.
    Deliver(Vec<u8>),
}

/// A mail-to-self handed back at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfMail {
    /// The host's id for it: pass it to `delete_mail_to_self`.
    pub id: u64,
    /// The topic it was posted on.
    pub topic: String,
    /// Its body.
    pub body: Vec<u8>,
}

/// Why an enclave call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// The mail could not be decrypted or built.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// The application refused the call.
    #[error("enclave refused the call: {0}")]
    Application(String),
    /// Sealed data could not be sealed or unsealed.
    #[error(transparent)]
    Sealing(#[from] conclave_core::SealingError),
    /// Sealed state or mail-to-self is inconsistent (for instance, rolled back).
    #[error("persistent state refused: {0}")]
    Persistence(String),
    /// The host failed to do what the enclave asked.
    #[error("host failed: {0}")]
    Host(String),
    /// The key derivation service could not be used: unreachable, not the
    /// one this enclave trusts, or it refused to issue the keys.
    #[error("key derivation service: {0}")]
    Kds(KdsProblem),
    /// An impossible state; a bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// What went wrong with the key derivation service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KdsProblem {
    /// The host could not carry the exchange (no KDS configured, unreachable).
    #[error("the host could not reach it: {0}")]
    Unreachable(String),
    /// The KDS's attestation does not satisfy this enclave's KDS constraint.
    #[error("it does not satisfy this enclave's KDS constraint: {0}")]
    Untrusted(String),
    /// The KDS refused the request (the message names the failing token).
    #[error("it refused to issue the keys: {0}")]
    Refused(String),
    /// The KDS's answer is not what the protocol says.
    #[error("its answer is invalid: {0}")]
    BadAnswer(String),
}

impl EnclaveError {
    /// The stable code a remote party sees for this error. The host maps
    /// codes to HTTP statuses; this is the one place enclave errors become codes.
    ///
    /// None of these is authenticated: a client must never give up a mail
    /// because of one. The enclave's authenticated answers travel as mail.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Mail(_) => "MAIL_INVALID",
            Self::Application(_) => "ENCLAVE_REFUSED",
            Self::Sealing(_) | Self::Persistence(_) => "STATE_REFUSED",
            Self::Kds(KdsProblem::Untrusted(_)) => "KDS_UNTRUSTED",
            Self::Kds(KdsProblem::Refused(_)) => "KDS_REFUSED",
            Self::Kds(_) => "KDS_FAILED",
            _ => "ENCLAVE_FAILED",
        }
    }

    /// An application-level refusal with a message for the host's log.
    pub fn application(message: impl Into<String>) -> Self {
        Self::Application(message.into())
    }

    pub(crate) fn bug(message: &str) -> Self {
        Self::Internal(message.to_owned())
    }
}
