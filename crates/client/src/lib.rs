//! Conclave client: attest an enclave, then exchange encrypted mail with it.
//!
//! ```text
//!  EnclaveClient ── attestation() ──► relay ──► host     check against EnclaveConstraint
//!        │ PostOffice per topic
//!        ├─ deliver(correlation id, mail) ──► relay ──► host ──► enclave
//!        └◄ first reply, or poll() + acknowledge() for the rest
//! ```
//!
//! The relay (in-process or HTTP) is untrusted: everything the client accepts
//! is checked. Its state (private key, correlation id, sequence numbers) can
//! be saved and restored, so a client survives its own restarts.
//!
//! # Getting started
//!
//! ```
//! use conclave_client::EnclaveClient;
//! use conclave_core::EnclaveConstraint;
//! use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
//! use conclave_host::{EnclaveHost, LocalRelayHandle, mock_identity};
//!
//! #[derive(Default)]
//! struct Upper;
//! impl Enclave for Upper {
//!     fn receive_mail(&mut self, ctx: &mut EnclaveContext<'_>, mail: EnclaveMail, hint: Option<&str>)
//!         -> Result<(), EnclaveError>
//!     {
//!         ctx.reply(&mail, &mail.body.to_ascii_uppercase(), hint)
//!     }
//! }
//!
//! // An in-process host with an in-memory store; it starts the enclave.
//! let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock(Upper))?;
//!
//! // Mock enclaves are INSECURE: the constraint must say it accepts that.
//! let code_hash = hex::encode(mock_identity::<Upper>().code_hash);
//! let constraint = EnclaveConstraint::parse(&format!("C:{code_hash} SEC:INSECURE"))?;
//! let mut client = EnclaveClient::new(relay, constraint);
//! client.start()?;
//! let reply = client.send_mail("greeting", b"hello")?.expect("a reply");
//! assert_eq!(reply.body, b"HELLO");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod client;
mod failover;
mod http;
mod state;

pub use client::{ClientError, EnclaveClient, EnclaveReply};
pub use failover::FailoverRelay;
pub use http::{HttpRelay, HttpRelayOptions};
pub use state::{Attempt, ClientState, KnownRun, PendingMail, ReplyKind, StoredReply};
