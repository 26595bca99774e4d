//! `stats`: joint statistics (count, mean, min, max) over numbers that
//! several parties keep from each other.
//!
//! Every message is a JSON object with a version `"v": 1` and a `"kind"`.
//!
//! ```text
//!  party ── {"kind":"submit","values":[1.5,2.0]} ──► enclave ── {"kind":"submitted","count":2}
//!  party ── {"kind":"compute"} ────────────────────► enclave ── {"kind":"result",...} to the asker
//!                                                           └── {"kind":"result",...} queued for
//!                                                               every other submitter
//! ```
//!
//! Rules:
//!
//! - **Submit**: 1 to [`MAX_VALUES`] finite numbers (`f64`; NaN and
//!   infinities are refused, and JSON cannot carry them anyway). A party's
//!   latest submission replaces its earlier one, so a mistake can be fixed
//!   before the result is released.
//! - **Compute**: any party that has submitted may ask for the result once at
//!   least [`MIN_PARTIES`] distinct parties have submitted. The first result
//!   freezes the round: every submitter receives it (the asker in the reply,
//!   the others queued under the routing hint of their latest submission, so
//!   they fetch it by polling), later submissions are refused, and a later
//!   `compute` returns the same result. A party that did not submit learns
//!   nothing.
//!
//! Who learns what: a submitter's acknowledgement repeats only how many
//! values *it* sent. The result gives every submitter the number of parties,
//! the number of values, their mean, minimum and maximum. A refused
//! `compute` says how many parties have submitted so far.
//!
//! The limits of aggregate privacy, stated honestly: [`MIN_PARTIES`] is 3 so
//! that no single party can subtract its own data from the result and be
//! left with exactly one other party's sum and count. It does not stop two
//! colluding parties from doing exactly that to a third; the minimum and the
//! maximum are always some party's real value; and a party that sent a single
//! value leaks it to anyone who can guess the rest. Freezing the round at the
//! first result prevents the simplest differencing attack (ask, change a
//! submission, ask again). This is a sample, not differential privacy.
//!
//! Bad input (not JSON, wrong version, unknown kind, non-finite or too many
//! values, a refused action) is answered with an `error` reply to its sender
//! that says what is wrong; the enclave's state is unchanged and the call
//! succeeds. The enclave never panics on input.

use std::collections::HashMap;

use conclave_core::PublicKey;
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use serde::{Deserialize, Serialize};

/// The protocol version this module speaks: the `"v"` of every message.
pub const VERSION: u64 = 1;

/// The fewest distinct submitting parties before a result is released.
pub const MIN_PARTIES: usize = 3;

/// The most values one party may submit.
pub const MAX_VALUES: usize = 100_000;

/// A message a party sends to the enclave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The sender's numbers; replace its earlier submission.
    Submit {
        /// 1 to [`MAX_VALUES`] finite numbers.
        values: Vec<f64>,
    },
    /// Ask for the result (submitters only, once [`MIN_PARTIES`] have submitted).
    Compute,
}

/// The joint result every submitter receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// How many distinct parties submitted.
    pub parties: usize,
    /// How many values there are in all.
    pub count: usize,
    /// Their arithmetic mean.
    pub mean: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

/// A message the enclave sends to a party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The sender's submission was recorded.
    Submitted {
        /// How many values the sender submitted (its own, not the total).
        count: usize,
    },
    /// The result of the round.
    Result(Summary),
    /// The request was refused; the message says why.
    Error {
        /// What was wrong, for the sender to fix.
        message: String,
    },
}

pub use crate::message::BadMessage;
use crate::message::Refusal;

crate::message::json_messages!(Request: "request", Response: "response");

/// Checks what the enclave checks of a submission.
pub fn check_values(values: &[f64]) -> Result<(), BadMessage> {
    if values.is_empty() {
        return Err(BadMessage("values must not be empty".into()));
    }
    if values.len() > MAX_VALUES {
        return Err(BadMessage(format!("too many values: {} (at most {MAX_VALUES})", values.len())));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(BadMessage(format!("value {i} is not a finite number")));
    }
    Ok(())
}

/// The body of a submission of `values`, checked first so a client learns of
/// a NaN before it sends anything.
pub fn submit(values: &[f64]) -> Result<Vec<u8>, BadMessage> {
    check_values(values)?;
    Ok(Request::Submit { values: values.to_vec() }.to_body())
}

/// The body of a `compute` request.
pub fn compute() -> Vec<u8> {
    Request::Compute.to_body()
}

/// A party's current submission and where to send it the result.
#[derive(Serialize, Deserialize)]
struct Submission {
    values: Vec<f64>,
    topic: String,
    routing_hint: Option<String>,
}

/// The stats enclave. Holds every party's values; releases only the
/// summary. Its round is sealed after every change, so it survives restarts.
#[derive(Default, Serialize, Deserialize)]
pub struct StatsEnclave {
    submissions: HashMap<PublicKey, Submission>,
    result: Option<Summary>,
}

impl core::fmt::Debug for StatsEnclave {
    // Values are secret: show only how far the round has come.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StatsEnclave")
            .field("parties", &self.submissions.len())
            .field("released", &self.result.is_some())
            .finish()
    }
}

/// Where the round is kept in the persistent map.
const STATE_KEY: &str = "stats-round";

impl StatsEnclave {
    /// How many parties have submitted so far.
    pub fn parties(&self) -> usize {
        self.submissions.len()
    }

    /// Whether the result has been released (and the round frozen).
    pub fn is_released(&self) -> bool {
        self.result.is_some()
    }

    fn handle(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: &EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<Response, Refusal> {
        let request = Request::parse(&mail.body)?;
        match request {
            Request::Submit { values } => {
                if self.result.is_some() {
                    return Err("the result is released: submissions are closed".into());
                }
                check_values(&values)?;
                let count = values.len();
                let submission = Submission {
                    values,
                    topic: mail.header.topic().to_owned(),
                    routing_hint: routing_hint.map(str::to_owned),
                };
                self.submissions.insert(mail.sender, submission);
                Ok(Response::Submitted { count })
            }
            Request::Compute => {
                if !self.submissions.contains_key(&mail.sender) {
                    return Err("only parties that submitted values may ask for the result".into());
                }
                if let Some(summary) = &self.result {
                    return Ok(Response::Result(summary.clone()));
                }
                if self.submissions.len() < MIN_PARTIES {
                    return Err(format!(
                        "not enough parties yet: {} of {MIN_PARTIES} have submitted",
                        self.submissions.len()
                    )
                    .into());
                }
                let summary = self.summarise();
                // The others get it queued; a failed send fails the whole call
                // so no mail leaves and the round stays open.
                for (key, submission) in &self.submissions {
                    if *key != mail.sender {
                        let body = Response::Result(summary.clone()).to_body();
                        ctx.send(key, &submission.topic, &body, submission.routing_hint.as_deref())?;
                    }
                }
                self.result = Some(summary.clone());
                Ok(Response::Result(summary))
            }
        }
    }

    fn summarise(&self) -> Summary {
        let count: usize = self.submissions.values().map(|s| s.values.len()).sum();
        let all = || self.submissions.values().flat_map(|s| s.values.iter().copied());
        // Summing value / count never overflows (each term is at most the
        // largest magnitude divided by count), unlike summing then dividing.
        let n = count as f64;
        let mean = all().map(|v| v / n).sum();
        let min = all().fold(f64::INFINITY, f64::min);
        let max = all().fold(f64::NEG_INFINITY, f64::max);
        Summary { parties: self.submissions.len(), count, mean, min, max }
    }
}

impl Enclave for StatsEnclave {
    /// Restores the round sealed by an earlier run, if any.
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        crate::message::resume(self, STATE_KEY, ctx)
    }

    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        // A refusal is a reply, not a failed call: the sender learns what to fix.
        // `handle` changes state only once nothing can fail any more.
        // Sealed with this call's replies: a restart resumes the round.
        crate::message::answer(self, STATE_KEY, ctx, &mail, routing_hint, Self::handle)
    }
}
