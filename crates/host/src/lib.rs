//! Conclave host: the untrusted side that runs an enclave and carries its mail.
//!
//! ```text
//!  clients ──mail──► LocalRelayHandle / web host ──► HostService ──► EnclaveHost ──► enclave (mock: in process)
//!          ◄─reply──        queues by hint ◄── HostCommand batch ◄──┘
//! ```
//!
//! The host never sees plaintext: it passes encrypted mail in, and carries
//! out the ordered commands the enclave returns (post this mail with this
//! routing hint, store this sealed state).
//!
//! # Getting started
//!
//! ```
//! use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
//! use conclave_host::EnclaveHost;
//!
//! #[derive(Default)]
//! struct Echo { seen: usize }
//!
//! impl Enclave for Echo {
//!     fn receive_mail(&mut self, ctx: &mut EnclaveContext<'_>, mail: EnclaveMail, hint: Option<&str>)
//!         -> Result<(), EnclaveError>
//!     {
//!         self.seen += 1;
//!         ctx.reply(&mail, &mail.body, hint)
//!     }
//! }
//!
//! let mut host = EnclaveHost::load_mock(Echo::default());
//! host.start(None)?;
//! let info = host.enclave_instance_info()?;
//! assert_eq!(info.verify(0)?.mode.as_str(), "MOCK");
//! assert_eq!(host.mock_enclave::<Echo>().unwrap().seen, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod host;
pub mod relay;
pub mod service;
pub mod simulation;
pub mod store;
pub mod web;

pub use conclave_enclave::KdsCall;
pub use host::{EnclaveFactory, EnclaveHost, HostCallback, KdsTransport, mock_identity};
pub use relay::{LocalRelay, LocalRelayHandle};
pub use service::{HostService, ServiceConfig, Traffic};

use conclave_core::RelayError;
use conclave_enclave::EnclaveError;

/// Why a host operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The enclave was used before `start`.
    #[error("enclave is not started: call start first")]
    NotStarted,
    /// `start` was called twice.
    #[error("enclave is already started")]
    AlreadyStarted,
    /// A mock enclave loaded from a value cannot be started again.
    #[error("this mock enclave cannot be restarted: load it with load_mock_restartable")]
    NotRestartable,
    /// A poll or acknowledgement named a correlation id the host never saw.
    #[error("unknown correlation id {0:?}: no mail was ever delivered with it")]
    UnknownCorrelationId(String),
    /// The client's reply queue is full: it must poll and acknowledge first.
    #[error(
        "{queued} replies wait unacknowledged for correlation id {correlation_id:?}: poll and acknowledge them first"
    )]
    ReplyQueueFull {
        /// The correlation id.
        correlation_id: String,
        /// How many replies wait.
        queued: u64,
    },
    /// The host's store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A simulation enclave could not be loaded or run, or its process died.
    #[error(transparent)]
    Simulation(#[from] simulation::SimulationError),
    /// A simulation enclave refused or failed a call. Only the code crosses
    /// the boundary: error text could carry enclave data.
    #[error("enclave failed the call ({code})")]
    EnclaveRemote {
        /// The stable code the enclave gave.
        code: String,
    },
    /// The enclave refused or failed the call.
    #[error(transparent)]
    Enclave(#[from] EnclaveError),
    /// The web host refused a request or could not serve.
    #[error(transparent)]
    Web(#[from] web::WebError),
}

impl HostError {
    /// The stable code a remote party sees for this error. This is the one
    /// place errors become codes; the web host maps codes to HTTP statuses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotStarted | Self::AlreadyStarted | Self::NotRestartable => "ENCLAVE_UNAVAILABLE",
            Self::UnknownCorrelationId(_) => "UNKNOWN_CORRELATION_ID",
            Self::ReplyQueueFull { .. } => "REPLY_QUEUE_FULL",
            Self::Store(e) if e.is_full() => "STORE_FULL",
            Self::Store(_) => "STORE_FAILED",
            Self::Enclave(e) => e.code(),
            // A simulation enclave reports the code its own error maps to;
            // only codes an enclave can produce pass through.
            Self::EnclaveRemote { code } => match code.as_str() {
                "MAIL_INVALID" => "MAIL_INVALID",
                "ENCLAVE_REFUSED" => "ENCLAVE_REFUSED",
                "STATE_REFUSED" => "STATE_REFUSED",
                "KDS_UNTRUSTED" => "KDS_UNTRUSTED",
                "KDS_REFUSED" => "KDS_REFUSED",
                "KDS_FAILED" => "KDS_FAILED",
                _ => "ENCLAVE_FAILED",
            },
            Self::Simulation(_) => "ENCLAVE_FAILED",
            // The web layer's own codes live beside its errors.
            Self::Web(e) => e.code(),
        }
    }

    /// This error as a relay error: the stable code and the message.
    pub fn to_relay_error(&self) -> RelayError {
        RelayError::new(self.code(), self.to_string())
    }
}
