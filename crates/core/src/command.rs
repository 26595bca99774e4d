//! What an enclave asks its host to do after a call.
//!
//! The host carries out a call's commands in order and, once persistence is
//! involved, commits them as one batch: replies and sealed state never get out
//! of step.

/// One instruction from the enclave to its host.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum HostCommand {
    /// Deliver this encrypted mail. `routing_hint` is the opaque string the
    /// host gave when it delivered the mail being answered; `None` means the
    /// host decides (for instance, mail the enclave posted on its own).
    PostMail {
        /// The encrypted mail.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Where the host should route it.
        routing_hint: Option<String>,
    },
    /// Store this sealed state blob, replacing the previous one.
    ///
    /// The state's checkpoint is given in clear: it is not secret, the host
    /// needs the counter to order commits, and publishing the chain
    /// (counter, nonce) lets anyone check that one checkpoint descends from
    /// another (`crate::freshness::state_id`).
    StoreSealedState {
        /// The sealed blob; the host cannot read it.
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        /// The new state's counter: one more than the state it replaces.
        counter: u64,
        /// The new state's id.
        state_id: [u8; 32],
        /// The nonce that made the id from its parent's.
        nonce: [u8; 16],
    },
    /// Keep this sealed mail-to-self and hand it back, in order with the
    /// others, at the enclave's next start.
    StoreMailToSelf {
        /// The sealed mail; the host cannot read it.
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
    },
    /// The enclave has absorbed the mail-to-self with this host id: delete it.
    DeleteMailToSelf {
        /// The id the host gave the mail when it handed it back.
        id: u64,
    },
}

impl core::fmt::Debug for HostCommand {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PostMail { bytes, routing_hint } => {
                f.debug_struct("PostMail").field("len", &bytes.len()).field("routing_hint", routing_hint).finish()
            }
            Self::StoreSealedState { blob, counter, .. } => {
                f.debug_struct("StoreSealedState").field("len", &blob.len()).field("counter", counter).finish()
            }
            Self::StoreMailToSelf { blob } => f.debug_struct("StoreMailToSelf").field("len", &blob.len()).finish(),
            Self::DeleteMailToSelf { id } => f.debug_struct("DeleteMailToSelf").field("id", id).finish(),
        }
    }
}
