//! What a client keeps across its own restarts (the state file).
//!
//! Everything that decides what the client accepts is here: the runs it has
//! attested, how far it has verified its reply chain, the mail it sent and
//! has no authenticated answer for yet (kept byte for byte, to be sent
//! again), and the replies it accepted but has not handed to the application.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use conclave_core::{EnclaveConstraint, PaddingPolicy, PrivateKey, PublicKey, ReplyChainVerifier, StateCheckpoint};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::ClientError;

/// The version of the state file this code writes and reads.
pub const STATE_VERSION: u32 = 2;

/// The most runs a client remembers. Confirmed runs are forgotten first.
pub const MAX_RUNS: usize = 64;

/// The most attempts of one mail a client remembers (older request ids are
/// forgotten; an old rejection naming one is then ignored).
pub const MAX_ATTEMPTS_KEPT: usize = 16;

/// One run of the enclave the client attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownRun {
    /// The run's encryption key (hex): replies from it are accepted.
    pub key: String,
    /// The checkpoint of the state the run started from, signed in its attestation.
    pub checkpoint: StateCheckpoint,
    /// Whether a reply has confirmed that the enclave's history holds this
    /// run; until then every mail reports it.
    pub confirmed: bool,
}

/// One encryption of a pending mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The run key it was encrypted to (hex).
    pub key: String,
    /// Its request id (hex): answers and rejections name it.
    pub request_id: String,
    /// The runs it reported as unconfirmed: an answer to it confirms them.
    pub runs: Vec<StateCheckpoint>,
    /// The encrypted mail (base64), kept for the newest attempt only, so it
    /// can be sent again byte for byte.
    #[serde(default)]
    pub mail: Option<String>,
}

/// A mail sent (or about to be) without an authenticated answer yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMail {
    /// Its sequence number on its topic.
    pub sequence_number: u64,
    /// The body (base64): a restarted enclave has new keys, so the mail may
    /// have to be encrypted again, with the same number.
    pub body: String,
    /// Its encryptions, oldest first.
    pub attempts: Vec<Attempt>,
    /// The enclave said (authenticated) it already processed this mail; its
    /// answer is in the reply chain and is being fetched.
    #[serde(default)]
    pub processed: bool,
}

impl PendingMail {
    /// The body bytes.
    pub fn body(&self) -> Result<Vec<u8>, ClientError> {
        BASE64.decode(&self.body).map_err(|_| ClientError::BadState("a pending mail's body is not base64".into()))
    }
}

/// How a reply came to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// The application's reply.
    Reply,
    /// The application refused the mail; the body is its message.
    Refused,
}

/// A reply accepted (verified and in order) but not yet handed to the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReply {
    /// The reply's topic.
    pub topic: String,
    /// Its position in the reply chain.
    pub index: u64,
    /// The body (base64).
    pub body: String,
    /// The state that produced it.
    pub state: StateCheckpoint,
    /// The sequence number of the mail it answers on its topic, if any.
    pub answers: Option<u64>,
    /// Reply or refusal.
    pub kind: ReplyKind,
}

/// A client's saved state. Holds the private key: store it like a key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientState {
    /// Format version.
    pub version: u32,
    /// The client's X25519 private key, hex.
    pub private_key: String,
    /// The constraint, canonical form.
    pub constraint: String,
    /// The id the host files this client's replies under.
    pub correlation_id: String,
    /// The host this state was used with (set by tools such as the CLI, so a
    /// state file is not used against another host by mistake).
    #[serde(default)]
    pub host: Option<String>,
    /// The runs of the enclave this client attested, oldest first.
    #[serde(default)]
    pub runs: Vec<KnownRun>,
    /// How far the client has verified its reply chain.
    #[serde(default)]
    pub chain: ReplyChainVerifier,
    /// Next sequence number per topic.
    #[serde(default)]
    pub next_sequence_numbers: BTreeMap<String, u64>,
    /// Per topic, the mail without an authenticated answer yet.
    #[serde(default)]
    pub pending: BTreeMap<String, PendingMail>,
    /// Accepted replies not yet handed to the application, in chain order.
    #[serde(default)]
    pub inbox: Vec<StoredReply>,
    /// Padding policy per topic, with its history, so padding keeps hiding
    /// lengths across the client's restarts.
    #[serde(default)]
    pub padding: BTreeMap<String, PaddingPolicy>,
}

impl core::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientState")
            .field("version", &self.version)
            .field("private_key", &"<redacted>")
            .field("constraint", &self.constraint)
            .field("correlation_id", &self.correlation_id)
            .field("runs", &self.runs)
            .field("chain", &self.chain.head)
            .field("next_sequence_numbers", &self.next_sequence_numbers)
            .field("pending", &self.pending.keys().collect::<Vec<_>>())
            .field("inbox", &self.inbox.len())
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
            host: None,
            runs: Vec::new(),
            chain: ReplyChainVerifier::default(),
            next_sequence_numbers: BTreeMap::new(),
            pending: BTreeMap::new(),
            inbox: Vec::new(),
            padding: BTreeMap::new(),
        }
    }

    /// Serialises the state as JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks saved state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClientError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| ClientError::BadState(format!("not a client state file: {e}")))?;
        if version.version != STATE_VERSION {
            return Err(ClientError::BadState(format!(
                "state version {} is not supported (this client reads version {STATE_VERSION}); a state file of an \
                 older conclave cannot be continued: start a new one",
                version.version
            )));
        }
        let state: Self = serde_json::from_slice(bytes)
            .map_err(|e| ClientError::BadState(format!("not a client state file: {e}")))?;
        state.private_key()?;
        for run in &state.runs {
            parse_key(&run.key)?;
        }
        for mail in state.pending.values() {
            mail.body()?;
        }
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

    /// The run checkpoints no reply has confirmed yet, oldest first.
    pub fn unconfirmed_runs(&self) -> Vec<StateCheckpoint> {
        self.runs.iter().filter(|r| !r.confirmed).map(|r| r.checkpoint).collect()
    }

    /// Remembers a run, forgetting the oldest confirmed ones beyond [`MAX_RUNS`].
    pub(crate) fn add_run(&mut self, run: KnownRun) {
        if self.runs.iter().any(|r| r.key == run.key && r.checkpoint == run.checkpoint) {
            return;
        }
        self.runs.push(run);
        while self.runs.len() > MAX_RUNS {
            let oldest = self.runs.iter().position(|r| r.confirmed).unwrap_or(0);
            self.runs.remove(oldest);
        }
    }

    /// Whether `key` is the key of a run this client attested.
    pub(crate) fn knows_key(&self, key: &PublicKey) -> bool {
        let hex = key.to_hex();
        self.runs.iter().any(|r| r.key == hex)
    }
}

pub(crate) fn parse_key(hex_key: &str) -> Result<PublicKey, ClientError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|b| PublicKey::from_slice(&b))
        .ok_or_else(|| ClientError::BadState("a run key must be 64 hex digits".into()))
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Result<Vec<u8>, ClientError> {
    BASE64.decode(text).map_err(|_| ClientError::BadState("a stored mail is not base64".into()))
}
