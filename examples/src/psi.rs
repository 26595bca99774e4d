//! `psi`: private set intersection between two parties.
//!
//! Every message is a JSON object with a version `"v": 1` and a `"kind"`.
//!
//! ```text
//!  party A ── {"kind":"submit","items":["x","y"]} ──► enclave ── {"kind":"waiting"}
//!  party B ── {"kind":"submit","items":["y","z"]} ──► enclave ── {"kind":"intersection","items":["y"]} to B
//!                                                            └─ {"kind":"intersection","items":["y"]} queued for A
//! ```
//!
//! Rules:
//!
//! - **Parties**: the first two distinct senders to submit are the parties.
//!   Any other sender is refused, whatever it sends.
//! - **Submit**: at most [`MAX_ITEMS`] strings of at most [`MAX_ITEM_LEN`]
//!   bytes each; duplicates count once; an empty set is allowed. Until the
//!   second party submits, the first may replace its set (the latest counts).
//! - **Result**: when the second set arrives, the enclave computes the
//!   intersection once. The second party gets it in the reply, the first
//!   party gets it queued under the routing hint of its latest submission and
//!   fetches it by polling. After that every submission is refused: the sets
//!   are fixed, so nobody can probe the other set with a second query.
//!
//! Who learns what: each party learns the intersection, sorted (so its order
//! says nothing about the other party's input), and nothing else from the
//! enclave: not the other set's size nor its other items. The `waiting`
//! acknowledgement tells the first party only that the other has not
//! submitted yet. What the host sees: mail sizes, which reveal set sizes
//! roughly unless the client pads its mail; a client that cares pads.
//!
//! Bad input (not JSON, wrong version, unknown kind, too many or too long
//! items, a refused action) is answered with an `error` reply to its sender
//! that says what is wrong; the enclave's state is unchanged and the call
//! succeeds. The enclave never panics on input.

use std::collections::BTreeSet;

use conclave_core::PublicKey;
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use serde::{Deserialize, Serialize};

/// The protocol version this module speaks: the `"v"` of every message.
pub const VERSION: u64 = 1;

/// The most items one party may submit.
pub const MAX_ITEMS: usize = 100_000;

/// The longest item, in bytes.
pub const MAX_ITEM_LEN: usize = 1024;

/// A message a party sends to the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The sender's set.
    Submit {
        /// Up to [`MAX_ITEMS`] strings; duplicates count once.
        items: Vec<String>,
    },
}

/// A message the enclave sends to a party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The sender's set was recorded; the other party has not submitted yet.
    Waiting,
    /// The items both sets hold, sorted.
    Intersection {
        /// The common items, in byte order, without duplicates.
        items: Vec<String>,
    },
    /// The request was refused; the message says why.
    Error {
        /// What was wrong, for the sender to fix.
        message: String,
    },
}

pub use crate::message::BadMessage;
use crate::message::Refusal;

crate::message::json_messages!(Request: "request", Response: "response");

/// Checks what the enclave checks of a set.
pub fn check_items<S: AsRef<str>>(items: &[S]) -> Result<(), BadMessage> {
    if items.len() > MAX_ITEMS {
        return Err(BadMessage(format!("too many items: {} (at most {MAX_ITEMS})", items.len())));
    }
    if let Some(i) = items.iter().position(|item| item.as_ref().len() > MAX_ITEM_LEN) {
        return Err(BadMessage(format!("item {i} is longer than {MAX_ITEM_LEN} bytes")));
    }
    Ok(())
}

/// The body of a submission of `items`, checked first.
pub fn submit<S: AsRef<str>>(items: &[S]) -> Result<Vec<u8>, BadMessage> {
    check_items(items)?;
    Ok(Request::Submit { items: items.iter().map(|s| s.as_ref().to_owned()).collect() }.to_body())
}

/// A party's set and where to send it the result.
#[derive(Serialize, Deserialize)]
struct Party {
    key: PublicKey,
    items: BTreeSet<String>,
    topic: String,
    routing_hint: Option<String>,
}

/// The PSI enclave. Holds both sets; releases only their intersection. Its
/// state is sealed after every change, so a round survives restarts.
#[derive(Default, Serialize, Deserialize)]
pub struct PsiEnclave {
    /// The first party to submit.
    first: Option<Party>,
    /// Set once the second party submitted; the round is then over.
    done: Option<PublicKey>,
}

impl core::fmt::Debug for PsiEnclave {
    // Sets are secret: show only how far the round has come.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PsiEnclave")
            .field("first_submitted", &self.first.is_some())
            .field("done", &self.done.is_some())
            .finish()
    }
}

impl PsiEnclave {
    /// Whether both parties have submitted and the result is out.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    fn handle(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: &EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<Response, Refusal> {
        let sender = mail.sender;
        let is_party = |key: &PublicKey| self.first.as_ref().is_some_and(|p| p.key == *key) || self.done == Some(*key);
        // Checked before parsing: a third party learns nothing but its refusal.
        if self.done.is_some() && !is_party(&sender) {
            return Err("this intersection already has two parties".into());
        }
        let Request::Submit { items } = Request::parse(&mail.body)?;
        if self.done.is_some() {
            return Err("the intersection is already computed: sets cannot be resubmitted".into());
        }
        check_items(&items)?;
        let items: BTreeSet<String> = items.into_iter().collect();
        let topic = mail.header.topic().to_owned();
        let routing_hint = routing_hint.map(str::to_owned);
        match &self.first {
            Some(first) if first.key != sender => {
                let common: Vec<String> = first.items.intersection(&items).cloned().collect();
                let body = Response::Intersection { items: common.clone() }.to_body();
                // A failed send fails the whole call: no mail leaves and the round stays open.
                ctx.send(&first.key, &first.topic, &body, first.routing_hint.as_deref())?;
                self.done = Some(sender);
                // Neither set is needed any more.
                if let Some(first) = &mut self.first {
                    first.items.clear();
                }
                Ok(Response::Intersection { items: common })
            }
            // The first party, submitting or replacing its set.
            _ => {
                self.first = Some(Party { key: sender, items, topic, routing_hint });
                Ok(Response::Waiting)
            }
        }
    }
}

impl Enclave for PsiEnclave {
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        // A refusal is a reply, not a failed call: the sender learns what to fix.
        // `handle` changes state only once nothing can fail any more.
        crate::message::answer(self, STATE_KEY, ctx, &mail, routing_hint, Self::handle)
    }

    /// Resumes the round an earlier run sealed, if any.
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        crate::message::resume(self, STATE_KEY, ctx)
    }
}

/// Where the round is kept in the persistent map.
const STATE_KEY: &str = "psi";
