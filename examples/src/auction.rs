//! `auction`: a sealed-bid, second-price (Vickrey) auction.
//!
//! Every message is a JSON object with a version `"v": 1` and a `"kind"`.
//!
//! ```text
//!  auctioneer ── {"kind":"open"} ──────────────► enclave ── {"kind":"opened"}
//!  bidder     ── {"kind":"bid","amount":120,"name":"alice"} ── {"kind":"bid_accepted"}
//!  auctioneer ── {"kind":"close"} ─────────────► enclave ── {"kind":"result",...} to the auctioneer
//!                                                        └─ {"kind":"result",...} queued for every bidder
//! ```
//!
//! Rules:
//!
//! - **Auctioneer**: the first party to send `open` becomes the auctioneer
//!   (first come, first served; a deployment that needs a fixed auctioneer
//!   would pin its key in the enclave). Only the auctioneer may `close`, and
//!   it may not bid: a seller bidding in a second-price auction could push
//!   the price up. A party that has already bid cannot become the auctioneer.
//! - **Bids**: `amount` is a whole number of at least 1. `name` is optional:
//!   the alias by which the winner is announced; without it the bidder is
//!   named by the hex of its public key. Names are unique among bidders. A
//!   bidder may re-bid before the close: its latest bid (amount and name)
//!   replaces the earlier one.
//! - **Close**: the auctioneer's `close` succeeds once at least
//!   [`MIN_BIDDERS`] distinct bidders have bid. Bids and `close` after the
//!   close are refused.
//! - **Price**: the highest bid wins and pays the second-highest bid.
//! - **Ties**: between equal highest bids, the bid that arrived first wins (a
//!   re-bid counts as arriving when it was re-sent); the price is then the
//!   tied amount.
//!
//! Who learns what: a bidder's acknowledgement says only that its bid was
//! accepted. At the close, each bidder (on the topic and with the routing
//! hint of its latest bid, so it fetches the result by polling) and the
//! auctioneer (in the reply to `close`) learn the winner's name and the price,
//! and each bidder learns whether it won. Nobody learns the losing bids, with
//! the unavoidable exception of second-price auctions: the price *is* the
//! second-highest bid. Side channels of the rules, documented rather than
//! hidden: a refused `close` tells the auctioneer that fewer than
//! [`MIN_BIDDERS`] bidders have bid, and a bid refused because its name is
//! taken tells the bidder that someone else chose that name.
//!
//! Bad input (not JSON, wrong version, unknown kind, out-of-range amount, a
//! refused action) is answered with an `error` reply to its sender that says
//! what is wrong; the enclave's state is unchanged and the call succeeds, so
//! a client learns what to fix. The enclave never panics on input.

use std::collections::HashMap;

use conclave_core::PublicKey;
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use serde::{Deserialize, Serialize};

/// The protocol version this module speaks: the `"v"` of every message.
pub const VERSION: u64 = 1;

/// The fewest bidders for which the auctioneer may close the auction.
pub const MIN_BIDDERS: usize = 2;

/// The longest bidder name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A message a party sends to the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Claim the auctioneer role (only the first `open` succeeds).
    Open,
    /// A sealed bid; replaces the sender's earlier bid.
    Bid {
        /// The amount offered, at least 1.
        amount: u64,
        /// The alias the winner is announced by; defaults to the bidder's key in hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// End the bidding and announce the result (auctioneer only).
    Close,
}

/// A message the enclave sends to a party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The sender is now the auctioneer.
    Opened,
    /// The sender's bid was recorded; says nothing about other bids.
    BidAccepted,
    /// The auction's outcome.
    Result {
        /// The winning bidder's name.
        winner: String,
        /// What the winner pays: the second-highest bid.
        price: u64,
        /// Whether the recipient is the winner (always `false` for the auctioneer).
        you_won: bool,
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

/// The body of an `open` request.
pub fn open() -> Vec<u8> {
    Request::Open.to_body()
}

/// The body of a bid of `amount`, announced as `name` if it wins.
pub fn bid(amount: u64, name: Option<&str>) -> Vec<u8> {
    Request::Bid { amount, name: name.map(str::to_owned) }.to_body()
}

/// The body of a `close` request.
pub fn close() -> Vec<u8> {
    Request::Close.to_body()
}

/// A party's current bid and where to send it the result.
#[derive(Serialize, Deserialize)]
struct Bid {
    amount: u64,
    name: String,
    /// Arrival order of this bid (re-bids get a new one): the tie-breaker.
    arrival: u64,
    topic: String,
    routing_hint: Option<String>,
}

/// The outcome, kept after the close.
#[derive(Serialize, Deserialize)]
struct Outcome {
    winner: PublicKey,
    winner_name: String,
    price: u64,
}

/// The auction enclave. Holds every bid; shows none of them. Its state is
/// sealed after every change, so the auction survives restarts.
#[derive(Default, Serialize, Deserialize)]
pub struct AuctionEnclave {
    auctioneer: Option<PublicKey>,
    bids: HashMap<PublicKey, Bid>,
    next_arrival: u64,
    outcome: Option<Outcome>,
}

impl core::fmt::Debug for AuctionEnclave {
    // Bids are secret: show only how far the auction has come.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuctionEnclave")
            .field("has_auctioneer", &self.auctioneer.is_some())
            .field("bidders", &self.bids.len())
            .field("closed", &self.outcome.is_some())
            .finish()
    }
}

impl AuctionEnclave {
    /// Whether bidding has closed.
    pub fn is_closed(&self) -> bool {
        self.outcome.is_some()
    }

    fn handle(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: &EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<Response, Refusal> {
        let request = Request::parse(&mail.body)?;
        let sender = mail.sender;
        if self.outcome.is_some() {
            return Err("the auction is closed: bids and close requests are refused".into());
        }
        match request {
            Request::Open => {
                if self.auctioneer.is_some() {
                    return Err("the auction already has an auctioneer".into());
                }
                if self.bids.contains_key(&sender) {
                    return Err("a bidder cannot become the auctioneer".into());
                }
                self.auctioneer = Some(sender);
                Ok(Response::Opened)
            }
            Request::Bid { amount, name } => {
                if self.auctioneer == Some(sender) {
                    return Err("the auctioneer cannot bid".into());
                }
                if amount == 0 {
                    return Err("amount must be at least 1".into());
                }
                let name = match name {
                    Some(name) => check_name(name)?,
                    None => sender.to_hex(),
                };
                if self.bids.iter().any(|(key, bid)| *key != sender && bid.name == name) {
                    return Err(format!("name {name:?} is taken by another bidder: choose another").into());
                }
                let arrival = self.next_arrival;
                self.next_arrival += 1;
                let bid = Bid {
                    amount,
                    name,
                    arrival,
                    topic: mail.header.topic().to_owned(),
                    routing_hint: routing_hint.map(str::to_owned),
                };
                self.bids.insert(sender, bid);
                Ok(Response::BidAccepted)
            }
            Request::Close => {
                if self.auctioneer != Some(sender) {
                    return Err("only the auctioneer can close the auction".into());
                }
                if self.bids.len() < MIN_BIDDERS {
                    return Err(format!("cannot close yet: at least {MIN_BIDDERS} bidders must have bid").into());
                }
                let outcome = self.decide().ok_or_else(|| Refusal::Bad("cannot close yet: no bids".into()))?;
                // Every bidder learns the result, queued under its latest routing hint.
                // If a send fails the whole call fails: no mail leaves and the auction stays open.
                for (key, bid) in &self.bids {
                    let result = Response::Result {
                        winner: outcome.winner_name.clone(),
                        price: outcome.price,
                        you_won: *key == outcome.winner,
                    };
                    ctx.send(key, &bid.topic, &result.to_body(), bid.routing_hint.as_deref())?;
                }
                let reply =
                    Response::Result { winner: outcome.winner_name.clone(), price: outcome.price, you_won: false };
                self.outcome = Some(outcome);
                Ok(reply)
            }
        }
    }

    /// The winner and the second price, or `None` without bids.
    fn decide(&self) -> Option<Outcome> {
        let mut ranked: Vec<(&PublicKey, &Bid)> = self.bids.iter().collect();
        // Highest amount first; among equal amounts, the earliest arrival.
        ranked.sort_by(|(_, a), (_, b)| b.amount.cmp(&a.amount).then(a.arrival.cmp(&b.arrival)));
        let (winner, top) = ranked.first()?;
        let price = ranked.get(1).map_or(top.amount, |(_, second)| second.amount);
        Some(Outcome { winner: **winner, winner_name: top.name.clone(), price })
    }
}

fn check_name(name: String) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name must be 1 to {MAX_NAME_LEN} bytes long"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name)
}

impl Enclave for AuctionEnclave {
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

    /// Resumes the auction an earlier run sealed, if any.
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        crate::message::resume(self, STATE_KEY, ctx)
    }
}

/// Where the auction is kept in the persistent map.
const STATE_KEY: &str = "auction";
