//! What a client keeps across its own restarts.

use std::collections::BTreeMap;

use conclave_core::{EnclaveConstraint, PrivateKey, PublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::ClientError;

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
    /// Keys of earlier instances of the enclave (hex), attested before it
    /// restarted: replies they queued are still accepted.
    #[serde(default)]
    pub previous_enclave_keys: Vec<String>,
    /// The highest enclave state counter this client has been shown (rollback detection).
    #[serde(default)]
    pub last_state_counter: Option<u64>,
    /// The state id that came with `last_state_counter`, hex.
    #[serde(default)]
    pub last_state_id: Option<String>,
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
            .field("last_state_counter", &self.last_state_counter)
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
            previous_enclave_keys: Vec::new(),
            last_state_counter: None,
            last_state_id: None,
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
