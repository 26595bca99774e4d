//! Conclave core: the protocol of Conclave for Rust, with no IO.
//!
//! Everything here works on bytes and explicit inputs (the current time, a
//! random source); nothing opens a file or a socket or reads the clock. The
//! enclave SDK, the host and the client build on it.
//!
//! ```text
//!  client                          host (untrusted)                 enclave
//!  ──────                          ────────────────                 ───────
//!  EnclaveConstraint::check ◄───── EnclaveInstanceInfo ◄─────────── keys + evidence
//!  PostOffice::encrypt_mail ─────► mail bytes (relayed) ──────────► decrypt_mail
//!  PostOffice::decrypt_mail ◄───── mail bytes (relayed) ◄────────── HostCommand::PostMail
//! ```
//!
//! # Getting started
//!
//! An enclave key, a client post office, one mail there and back:
//!
//! ```
//! use conclave_core::{PostOffice, PrivateKey, decrypt_mail};
//! use rand_core::OsRng;
//!
//! let enclave_key = PrivateKey::generate(&mut OsRng);
//! let client_key = PrivateKey::generate(&mut OsRng);
//!
//! let mut post_office = PostOffice::new(client_key.clone(), enclave_key.public_key(), "greetings")?;
//! let mail = post_office.encrypt_mail(b"hello, enclave", &mut OsRng)?;
//!
//! // The enclave decrypts it and learns who sent it.
//! let received = decrypt_mail(&enclave_key, &mail)?;
//! assert_eq!(received.body, b"hello, enclave");
//! assert_eq!(received.sender, client_key.public_key());
//! assert_eq!(received.header.sequence_number(), 0);
//! # Ok::<(), conclave_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod channel;
pub mod command;
pub mod constraint;
pub mod frame;
pub mod freshness;
pub mod info;
pub mod kds;
pub mod keys;
pub mod mail;
pub mod padding;
pub mod postoffice;
pub mod relay;
pub mod sealing;
pub mod security;
pub mod signature;

pub use command::HostCommand;
pub use constraint::{ConstraintError, EnclaveConstraint, Unsatisfied};
pub use frame::{Answer, FrameError, Rejection, RejectionDetail, RequestFrame, ResponseFrame, ResponseKind};
pub use freshness::{ChainLink, ChainVerdict, ReplyChain, ReplyChainVerifier, StateCheckpoint};
pub use info::{
    AttestedIdentity, EnclaveInstanceInfo, EnclaveMode, EnclaveReport, Evidence, InfoError, VerifiedEnclaveInfo,
    key_binding,
};
pub use keys::{PrivateKey, PublicKey};
pub use mail::{DecryptedMail, MailDecryptor, MailError, MailHeader, decrypt_mail, encrypt_mail};
pub use padding::PaddingPolicy;
pub use postoffice::PostOffice;
pub use relay::{MailRelay, QueuedMail, RelayError};
pub use sealing::{Sealer, SealingError, SealingIdentity, SealingPolicy, Unsealed};
pub use security::SecuritySummary;
pub use signature::{EnclaveSignature, SignatureError};

/// Any error of this crate, grouped by the part of the protocol that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Building or reading a mail failed.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// Decoding or verifying an EnclaveInstanceInfo failed.
    #[error(transparent)]
    Info(#[from] InfoError),
    /// Parsing or checking a constraint failed.
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// An enclave signature file is invalid.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Sealing or unsealing failed.
    #[error(transparent)]
    Sealing(#[from] SealingError),
}
