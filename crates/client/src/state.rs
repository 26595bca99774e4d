//! What a client keeps across its own restarts.

use std::collections::BTreeMap;

use conclave_core::{EnclaveConstraint, PrivateKey, PublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::ClientError;

/// One run of the enclave (one key), as this client has seen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveRun {
    /// The run's encryption key, hex.
    pub key: String,
    /// The state counter the run started from (from its replies' frames).
    pub start: Option<u64>,
    /// The highest state counter seen in its replies.
    pub highest: Option<u64>,
}

/// Which reply sequence numbers arrived on one (enclave key, topic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenReplies {
    /// Every number below this one has arrived.
    pub below: u64,
    /// Numbers at or above `below` that have arrived (replies can overtake each other).
    pub above: Vec<u64>,
}

impl SeenReplies {
    /// Whether `n` has arrived.
    pub fn contains(&self, n: u64) -> bool {
        n < self.below || self.above.contains(&n)
    }

    /// Records `n`.
    pub fn insert(&mut self, n: u64) {
        if self.contains(n) {
            return;
        }
        self.above.push(n);
        self.above.sort_unstable();
        while self.above.first() == Some(&self.below) {
            self.above.remove(0);
            self.below += 1;
        }
    }
}

/// The version of the saved state format this code writes and reads.
pub const STATE_VERSION: u32 = 1;

/// A client's saved state. Holds the private key: store it like a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientState {
    /// Format version.
    pub version: u32,
    /// The client's X25519 private key, hex.
    pub private_key: String,
    /// The constraint, canonical form.
    pub constraint: String,
    /// The id the host files this client's replies under.
    pub correlation_id: String,
    /// The enclave key the sequence numbers below belong to, hex.
    pub enclave_key: Option<String>,
    /// Next sequence number per topic, for `enclave_key`.
    pub next_sequence_numbers: BTreeMap<String, u64>,
    /// What this client has seen of each run of the enclave (newest last):
    /// its key, the state counter it started from, and the highest counter
    /// it showed. Replies from these runs are accepted; comparing them
    /// reveals a rollback.
    #[serde(default)]
    pub enclave_runs: Vec<EnclaveRun>,
    /// Reply sequence numbers already received, per (enclave key, topic), so
    /// a replayed reply is refused even after the client restarts.
    #[serde(default)]
    pub seen_replies: BTreeMap<String, SeenReplies>,
    /// The host this state was used with (set by tools such as the CLI, so a
    /// state file is not used against another host by mistake).
    #[serde(default)]
    pub host: Option<String>,
    /// Per topic, a mail (hex) whose delivery failed midway: it is delivered
    /// again, unchanged, before the next mail on that topic.
    #[serde(default)]
    pub unsent: BTreeMap<String, String>,
}

impl core::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientState")
            .field("version", &self.version)
            .field("private_key", &"<redacted>")
            .field("constraint", &self.constraint)
            .field("correlation_id", &self.correlation_id)
            .field("enclave_key", &self.enclave_key)
            .field("next_sequence_numbers", &self.next_sequence_numbers)
            .field("enclave_runs", &self.enclave_runs)
            .finish()
    }
}

impl ClientState {
    /// A new identity: fresh key, fresh correlation id.
    pub fn generate(constraint: &EnclaveConstraint) -> Self {
        let key = PrivateKey::generate(&mut OsRng);
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        Self {
            version: STATE_VERSION,
            private_key: hex::encode(key.secret_bytes()),
            constraint: constraint.to_string(),
            correlation_id: hex::encode(id),
            enclave_key: None,
            next_sequence_numbers: BTreeMap::new(),
            enclave_runs: Vec::new(),
            seen_replies: BTreeMap::new(),
            unsent: BTreeMap::new(),
            host: None,
        }
    }

    /// Serialises the state as JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and maps cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks saved state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClientError> {
        let state: Self = serde_json::from_slice(bytes)
            .map_err(|e| ClientError::BadState(format!("not a client state file: {e}")))?;
        if state.version != STATE_VERSION {
            return Err(ClientError::BadState(format!(
                "state version {} is not supported (this client reads version {STATE_VERSION})",
                state.version
            )));
        }
        state.private_key()?;
        state.enclave_key()?;
        EnclaveConstraint::parse(&state.constraint).map_err(|e| ClientError::BadState(format!("constraint: {e}")))?;
        Ok(state)
    }

    pub(crate) fn private_key(&self) -> Result<PrivateKey, ClientError> {
        let bytes: [u8; 32] = hex::decode(&self.private_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ClientError::BadState("private_key must be 64 hex digits".into()))?;
        Ok(PrivateKey::from_bytes(bytes))
    }

    pub(crate) fn enclave_key(&self) -> Result<Option<PublicKey>, ClientError> {
        self.enclave_key
            .as_ref()
            .map(|k| {
                hex::decode(k)
                    .ok()
                    .and_then(|b| PublicKey::from_slice(&b))
                    .ok_or_else(|| ClientError::BadState("enclave_key must be 64 hex digits".into()))
            })
            .transpose()
    }
}
