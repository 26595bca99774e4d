//! Freshness: how clients and the enclave notice rollbacks and forks of the
//! enclave's state, whatever progress the host makes in between.
//!
//! Three pieces, all pure functions of bytes (no IO), so the Rust,
//! TypeScript and Python clients apply the same rules:
//!
//! - **State chain.** Every state the enclave seals has a
//!   [`StateCheckpoint`]: a counter that grows by one and an id that hashes
//!   the previous id, so an id commits to the whole history before it.
//! - **Reply chain.** For each client, the enclave numbers the mail it sends
//!   that client (1, 2, 3, …) and chains their states into a running digest
//!   ([`ReplyChain`]). The client checks every reply links to the previous
//!   one ([`ReplyChainVerifier`]); the enclave stores the chain's head per
//!   client in its sealed state, and every client mail says how far the
//!   client has verified it. A rolled-back enclave does not know replies the
//!   client has seen; a forked one gives a different digest at the same
//!   position. Either way one side notices at the client's next exchange.
//! - **Run checkpoints.** Each start of the enclave (a *run*) seals a state
//!   first and signs its checkpoint in the attestation. A client reports the
//!   runs it has attested until a reply confirms them; an enclave whose
//!   history lacks one is on another fork.
//!
//! ```text
//!  state n-1 ──H──► state n ──H──► state n+1        (one chain of sealed states)
//!                     │                 │
//!  reply chain of C:  k ────H────────► k+1          (what the enclave showed client C)
//!  C's next mail:     "I have verified up to k+1, digest D"  → enclave compares with its record
//! ```

use sha2::{Digest, Sha256};

/// Domain separation of state ids.
const STATE_ID_DOMAIN: &[u8] = b"conclave-state-id-v1\0";
/// Domain separation of reply-chain digests.
const REPLY_CHAIN_DOMAIN: &[u8] = b"conclave-reply-chain-v1\0";

/// One sealed state of the enclave: its position and its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StateCheckpoint {
    /// How many states were sealed before this one plus one; 0 is the
    /// genesis (nothing sealed yet).
    pub counter: u64,
    /// `SHA-256("conclave-state-id-v1\0" ‖ previous id ‖ counter ‖ nonce)`;
    /// all zeros for the genesis.
    pub id: [u8; 32],
}

impl core::fmt::Debug for StateCheckpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "StateCheckpoint({self})")
    }
}

impl core::fmt::Display for StateCheckpoint {
    /// `counter:id`, the printable checkpoint users compare.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.counter, hex::encode(self.id))
    }
}

impl core::str::FromStr for StateCheckpoint {
    type Err = &'static str;

    /// Parses `counter:id` (id as 64 hex digits).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (counter, id) = text.split_once(':').ok_or("a checkpoint is written counter:id")?;
        let counter = counter.parse().map_err(|_| "the counter of a checkpoint is a whole number")?;
        let id =
            hex::decode(id).ok().and_then(|b| b.try_into().ok()).ok_or("the id of a checkpoint is 64 hex digits")?;
        Ok(Self { counter, id })
    }
}

impl serde::Serialize for StateCheckpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StateCheckpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl StateCheckpoint {
    /// The state before anything was sealed.
    pub const GENESIS: Self = Self { counter: 0, id: [0; 32] };

    /// The checkpoint of the state sealed after this one, with a fresh
    /// random `nonce` (so two states sealed from the same parent always
    /// differ). `None` if the counter would overflow.
    pub fn next(&self, nonce: &[u8; 16]) -> Option<Self> {
        let counter = self.counter.checked_add(1)?;
        Some(Self { counter, id: state_id(&self.id, counter, nonce) })
    }

    /// Encodes as `counter:u64 ‖ id[32]` (40 bytes).
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.counter.to_be_bytes());
        out[8..].copy_from_slice(&self.id);
        out
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 40]) -> Self {
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&bytes[..8]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[8..]);
        Self { counter: u64::from_be_bytes(counter), id }
    }
}

/// The id of the state at `counter` whose parent has id `previous`.
pub fn state_id(previous: &[u8; 32], counter: u64, nonce: &[u8; 16]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(STATE_ID_DOMAIN);
    h.update(previous);
    h.update(counter.to_be_bytes());
    h.update(nonce);
    h.finalize().into()
}

/// The head of one client's reply chain: how many in-chain replies the
/// enclave sent that client, and their running digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplyChain {
    /// How many in-chain replies there are (0: none yet).
    pub index: u64,
    /// Their digest; all zeros when `index` is 0.
    #[serde(with = "hex32")]
    pub digest: [u8; 32],
}

impl core::fmt::Debug for ReplyChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ReplyChain({}:{})", self.index, hex::encode(self.digest))
    }
}

impl ReplyChain {
    /// No replies yet.
    pub const START: Self = Self { index: 0, digest: [0; 32] };

    /// The chain after one more reply, produced from `state`. `None` if the
    /// index would overflow.
    pub fn extend(&self, state: &StateCheckpoint) -> Option<Self> {
        let index = self.index.checked_add(1)?;
        Some(Self { index, digest: chain_digest(&self.digest, index, state) })
    }

    /// The link a reply carries to sit after this head.
    pub fn link(&self) -> Option<ChainLink> {
        Some(ChainLink { index: self.index.checked_add(1)?, previous: self.digest })
    }
}

/// `SHA-256("conclave-reply-chain-v1\0" ‖ previous ‖ index ‖ state counter ‖ state id)`.
pub fn chain_digest(previous: &[u8; 32], index: u64, state: &StateCheckpoint) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(REPLY_CHAIN_DOMAIN);
    h.update(previous);
    h.update(index.to_be_bytes());
    h.update(state.counter.to_be_bytes());
    h.update(state.id);
    h.finalize().into()
}

/// Where an in-chain reply sits: its index, and the digest of the chain
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainLink {
    /// 1 for the first reply to a client, then one more each time.
    pub index: u64,
    /// The chain digest after the reply before it.
    pub previous: [u8; 32],
}

/// What a client does with an in-chain reply, by [`ReplyChainVerifier::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVerdict {
    /// The next reply: accept it and [`ReplyChainVerifier::advance`].
    Next,
    /// A reply further ahead: hold it (do not show or acknowledge it) until
    /// the replies before it arrive. If they never do, the host withheld them.
    Held {
        /// The index the client waits for.
        missing: u64,
    },
    /// A reply already accepted, delivered again: drop it silently.
    Duplicate,
    /// An old reply this client no longer remembers: drop it (it cannot
    /// have been accepted twice, and an old fork shows up elsewhere).
    Stale,
    /// Two different replies at one position, or a reply that does not link
    /// to the one before: the enclave was forked or rolled back.
    Fork {
        /// The position where the chains disagree.
        index: u64,
    },
    /// A reply from an older state than a reply before it in the chain:
    /// impossible on one branch.
    Regressed {
        /// The state counter of the previous reply.
        previous: u64,
        /// The state counter of this one.
        received: u64,
    },
}

/// How many recent chain positions a client remembers to tell a replayed
/// reply from a forked one.
pub const RECENT_LINKS: usize = 32;

/// A client's view of its reply chain: what it has verified, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplyChainVerifier {
    /// The verified head.
    pub head: ReplyChain,
    /// The state the last verified reply came from.
    pub state: StateCheckpoint,
    /// Digests of the last [`RECENT_LINKS`] verified positions, oldest first.
    #[serde(default)]
    pub recent: Vec<ReplyChain>,
}

impl ReplyChainVerifier {
    /// The verdict on a reply that sits at `link` and came from `state`.
    pub fn check(&self, link: &ChainLink, state: &StateCheckpoint) -> ChainVerdict {
        let next = self.head.index.saturating_add(1);
        if link.index > next {
            return ChainVerdict::Held { missing: next };
        }
        let digest = chain_digest(&link.previous, link.index, state);
        if link.index == next {
            if link.previous != self.head.digest {
                return ChainVerdict::Fork { index: link.index };
            }
            if state.counter < self.state.counter {
                return ChainVerdict::Regressed { previous: self.state.counter, received: state.counter };
            }
            return ChainVerdict::Next;
        }
        // An index at or below the head: a copy of an accepted reply, or another branch.
        let known = if link.index == self.head.index {
            Some(self.head)
        } else {
            self.recent.iter().find(|c| c.index == link.index).copied()
        };
        match known {
            Some(c) if c.digest == digest => ChainVerdict::Duplicate,
            Some(_) => ChainVerdict::Fork { index: link.index },
            None => ChainVerdict::Stale,
        }
    }

    /// Accepts a reply that [`Self::check`] called [`ChainVerdict::Next`].
    pub fn advance(&mut self, link: &ChainLink, state: &StateCheckpoint) {
        let head = ReplyChain { index: link.index, digest: chain_digest(&link.previous, link.index, state) };
        if self.head.index > 0 {
            self.recent.push(self.head);
            let excess = self.recent.len().saturating_sub(RECENT_LINKS);
            self.recent.drain(..excess);
        }
        self.head = head;
        self.state = *state;
    }
}

/// Why the enclave refuses a client's mail on freshness grounds; see [`check_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessRefusal {
    /// The client has verified more replies than this enclave ever sent it:
    /// the enclave's state is older than one the client was shown.
    Rollback {
        /// How many replies this enclave's state records for the client.
        enclave_index: u64,
        /// How many the client has verified.
        client_index: u64,
    },
    /// The client's chain disagrees with the enclave's at the same position,
    /// or the client attested a run this enclave's history does not contain.
    Fork {
        /// How many replies this enclave's state records for the client.
        enclave_index: u64,
        /// How many the client has verified.
        client_index: u64,
    },
}

/// The enclave's check of a client's mail: `recorded` is the client's reply
/// chain in the enclave's state, `claimed` what the mail says the client
/// verified, `runs` the run checkpoints the mail reports and `history` the
/// run checkpoints in the enclave's state.
///
/// A client behind the enclave (`claimed.index < recorded.index`) is fine:
/// replies are in flight, and the client checks they link up when they come.
pub fn check_request(
    recorded: &ReplyChain,
    claimed: &ReplyChain,
    runs: &[StateCheckpoint],
    history: &[StateCheckpoint],
) -> Result<(), FreshnessRefusal> {
    let (enclave_index, client_index) = (recorded.index, claimed.index);
    if claimed.index > recorded.index {
        return Err(FreshnessRefusal::Rollback { enclave_index, client_index });
    }
    if claimed.index == recorded.index && claimed.digest != recorded.digest {
        return Err(FreshnessRefusal::Fork { enclave_index, client_index });
    }
    if runs.iter().any(|run| !history.contains(run)) {
        return Err(FreshnessRefusal::Fork { enclave_index, client_index });
    }
    Ok(())
}

mod hex32 {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        hex::decode(text.as_ref())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(n: u64, nonce: u8) -> Vec<StateCheckpoint> {
        let mut out = vec![StateCheckpoint::GENESIS];
        for _ in 0..n {
            let last = *out.last().unwrap();
            out.push(last.next(&[nonce; 16]).unwrap());
        }
        out
    }

    #[test]
    fn ids_chain_and_siblings_differ() {
        let a = StateCheckpoint::GENESIS.next(&[1; 16]).unwrap();
        let b = StateCheckpoint::GENESIS.next(&[2; 16]).unwrap();
        assert_eq!((a.counter, b.counter), (1, 1));
        assert_ne!(a.id, b.id);
        assert_ne!(a.next(&[1; 16]).unwrap().id, b.next(&[1; 16]).unwrap().id);
        let text = a.to_string();
        assert_eq!(text.parse::<StateCheckpoint>().unwrap(), a);
        assert_eq!(StateCheckpoint::from_bytes(&a.to_bytes()), a);
        assert!("7".parse::<StateCheckpoint>().is_err());
        assert!(StateCheckpoint { counter: u64::MAX, id: [0; 32] }.next(&[0; 16]).is_none());
    }

    #[test]
    fn a_verifier_accepts_in_order_holds_ahead_and_spots_forks() {
        let s = states(5, 7);
        let mut enclave = ReplyChain::START;
        let mut links = Vec::new();
        for state in &s[1..] {
            links.push((enclave.link().unwrap(), *state));
            enclave = enclave.extend(state).unwrap();
        }
        let mut client = ReplyChainVerifier::default();
        assert_eq!(client.check(&links[1].0, &links[1].1), ChainVerdict::Held { missing: 1 });
        for (link, state) in &links[..3] {
            assert_eq!(client.check(link, state), ChainVerdict::Next);
            client.advance(link, state);
        }
        assert_eq!(client.check(&links[1].0, &links[1].1), ChainVerdict::Duplicate);
        // The same position from another branch.
        let other = StateCheckpoint { counter: 2, id: [9; 32] };
        assert_eq!(client.check(&links[1].0, &other), ChainVerdict::Fork { index: 2 });
        // A reply that does not link to what the client verified.
        let bad = ChainLink { index: 4, previous: [1; 32] };
        assert_eq!(client.check(&bad, &links[3].1), ChainVerdict::Fork { index: 4 });
        // An older state than the last one is impossible on one branch.
        assert!(matches!(client.check(&links[3].0, &s[1]), ChainVerdict::Regressed { .. }));
        for (link, state) in &links[3..] {
            client.advance(link, state);
        }
        assert_eq!(client.head, enclave);
    }

    #[test]
    fn the_enclave_refuses_rollback_fork_and_unknown_runs() {
        let s = states(3, 1);
        let one = ReplyChain::START.extend(&s[1]).unwrap();
        let two = one.extend(&s[2]).unwrap();
        assert_eq!(check_request(&two, &one, &[], &[]), Ok(()));
        assert_eq!(check_request(&two, &two, &[s[1]], &[s[1]]), Ok(()));
        assert!(matches!(check_request(&one, &two, &[], &[]), Err(FreshnessRefusal::Rollback { .. })));
        let sibling = ReplyChain::START.extend(&StateCheckpoint { counter: 1, id: [5; 32] }).unwrap();
        assert!(matches!(check_request(&one, &sibling, &[], &[]), Err(FreshnessRefusal::Fork { .. })));
        assert!(matches!(check_request(&two, &two, &[s[3]], &[s[1]]), Err(FreshnessRefusal::Fork { .. })));
    }
}
