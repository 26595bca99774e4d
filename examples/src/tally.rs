//! `tally`: every party adds amounts to its own running total; the enclave
//! counts every mail it applied. A small ledger, and the sample the crash and
//! failover harnesses check: a party knows what it sent, so its totals show
//! whether any mail was lost or applied twice.
//!
//! Every message is a JSON object with a version `"v": 1` and a `"kind"`.
//!
//! ```text
//!  party ── {"kind":"add","amount":5} ──► enclave ── {"kind":"added","mails":3,"total":12}
//!  party ── {"kind":"totals"} ──────────► enclave ── {"kind":"totals","mails":3,"total":12,
//!                                                     "all_mails":40,"all_total":310}
//! ```
//!
//! Rules:
//!
//! - **Add**: a whole `amount` from 0 to [`MAX_AMOUNT`]; the sender's count
//!   of applied mails and its total go up, and so do the enclave's.
//! - **Totals**: the sender's own count and total, and the counts over all
//!   parties (which tell how many mails the enclave applied, nothing about
//!   any one party).
//!
//! Who learns what: a party learns its own figures and the sums over all
//! parties; with two parties, each can subtract its own and learn the
//! other's. It is a test workload, not a privacy sample.
//!
//! Bad input is answered with an `error` reply that says what is wrong; the
//! state is unchanged and the call succeeds.

use std::collections::BTreeMap;

use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use serde::{Deserialize, Serialize};

/// The protocol version this module speaks: the `"v"` of every message.
pub const VERSION: u64 = 1;

/// The largest amount one mail may add.
pub const MAX_AMOUNT: u64 = 1_000_000_000;

/// A message a party sends to the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Adds `amount` to the sender's total.
    Add {
        /// 0 to [`MAX_AMOUNT`].
        amount: u64,
    },
    /// Asks for the sender's figures and the ones over all parties.
    Totals,
}

/// A message the enclave sends to a party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The amount was added.
    Added {
        /// How many of the sender's mails have been applied, this one included.
        mails: u64,
        /// The sender's total.
        total: u64,
    },
    /// The figures asked for.
    Totals {
        /// How many of the sender's mails have been applied.
        mails: u64,
        /// The sender's total.
        total: u64,
        /// How many mails of every party have been applied.
        all_mails: u64,
        /// The total over every party.
        all_total: u64,
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

/// The body of a mail adding `amount`.
pub fn add(amount: u64) -> Result<Vec<u8>, BadMessage> {
    if amount > MAX_AMOUNT {
        return Err(BadMessage(format!("amount {amount} is over the limit of {MAX_AMOUNT}")));
    }
    Ok(Request::Add { amount }.to_body())
}

/// The body of a `totals` request.
pub fn totals() -> Vec<u8> {
    Request::Totals.to_body()
}

/// One party's figures.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Account {
    mails: u64,
    total: u64,
}

/// The tally enclave: one account per sender (by public key, in hex).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TallyEnclave {
    accounts: BTreeMap<String, Account>,
    all: Account,
}

/// Where the ledger is kept in the persistent map.
const STATE_KEY: &str = "tally-ledger";

impl TallyEnclave {
    fn handle(&mut self, _: &mut EnclaveContext<'_>, mail: &EnclaveMail, _: Option<&str>) -> Result<Response, Refusal> {
        let sender = mail.sender.to_hex();
        match Request::parse(&mail.body)? {
            Request::Add { amount } => {
                if amount > MAX_AMOUNT {
                    return Err(format!("amount {amount} is over the limit of {MAX_AMOUNT}").into());
                }
                let mut account = self.accounts.get(&sender).copied().unwrap_or_default();
                // Checked before anything changes: at 10^9 per mail these
                // overflow only after 10^10 mails, but never wrap silently.
                let overflow = || Refusal::from("the total would overflow");
                account.mails = account.mails.checked_add(1).ok_or_else(overflow)?;
                account.total = account.total.checked_add(amount).ok_or_else(overflow)?;
                let all = Account {
                    mails: self.all.mails.checked_add(1).ok_or_else(overflow)?,
                    total: self.all.total.checked_add(amount).ok_or_else(overflow)?,
                };
                self.accounts.insert(sender, account);
                self.all = all;
                Ok(Response::Added { mails: account.mails, total: account.total })
            }
            Request::Totals => {
                let account = self.accounts.get(&sender).copied().unwrap_or_default();
                Ok(Response::Totals {
                    mails: account.mails,
                    total: account.total,
                    all_mails: self.all.mails,
                    all_total: self.all.total,
                })
            }
        }
    }
}

impl Enclave for TallyEnclave {
    /// Restores the ledger sealed by an earlier run, if any.
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        crate::message::resume(self, STATE_KEY, ctx)
    }

    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        crate::message::answer(self, STATE_KEY, ctx, &mail, routing_hint, Self::handle)
    }
}
