//! Conclave's key derivation service (KDS): an enclave, on the same runtime
//! as any other, that gives every enclave instance satisfying a policy the
//! same keys.
//!
//! ```text
//!  enclave instance (any host) ──mail "kds"── KeyRequest{its attestation, specs} ──► KdsEnclave
//!     ◄── reply: KeyResponse{HKDF(master, spec) for each spec}, encrypted to the instance's attested key
//! ```
//!
//! The master key is made at the KDS's first start and kept in its
//! persistent map, sealed like any enclave state. A request is refused (the
//! refusal, authenticated, names the failing constraint token) unless the
//! requester's attestation verifies, its encryption key is the mail's
//! sender key, and it satisfies the policy of every key it asks for. The
//! protocol's messages and the derivation are in [`conclave_core::kds`].
//!
//! # Getting started
//!
//! ```
//! use conclave_kds::KdsEnclave;
//! use conclave_host::EnclaveHost;
//!
//! // A KDS in mock mode (INSECURE: for tests), started like any enclave.
//! let mut host = EnclaveHost::load_mock_restartable::<KdsEnclave>();
//! host.start(None)?;
//! # Ok::<(), conclave_host::HostError>(())
//! ```
#![deny(missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use conclave_core::{
    EnclaveConstraint, EnclaveInstanceInfo,
    kds::{IssuedKey, KDS_TOPIC, KDS_VERSION, KeyRequest, KeyResponse, derive_key},
};
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Where the master key lives in the persistent map.
const MASTER: &str = "kds-master-key";

/// The most keys one request may ask for.
pub const MAX_KEYS_PER_REQUEST: usize = 16;

/// The key derivation service's enclave.
#[derive(Debug, Default)]
pub struct KdsEnclave;

fn refuse(message: impl Into<String>) -> EnclaveError {
    EnclaveError::application(message)
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl KdsEnclave {
    fn master(ctx: &mut EnclaveContext<'_>) -> Result<Zeroizing<[u8; 32]>, EnclaveError> {
        let bytes = ctx.persistent_map().get(MASTER).ok_or_else(|| EnclaveError::Internal("no master key".into()))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| EnclaveError::Internal("the master key is not 32 bytes".into()))?;
        Ok(Zeroizing::new(key))
    }

    /// The keys for `request` from `sender`, or why not.
    fn answer(ctx: &mut EnclaveContext<'_>, mail: &EnclaveMail) -> Result<KeyResponse, EnclaveError> {
        if mail.header.topic() != KDS_TOPIC {
            return Err(refuse(format!("key requests go on topic {KDS_TOPIC:?}")));
        }
        let request: KeyRequest =
            serde_json::from_slice(&mail.body).map_err(|e| refuse(format!("not a key request: {e}")))?;
        if request.v != KDS_VERSION {
            return Err(refuse(format!(
                "KDS protocol version {} is not supported (this KDS speaks {KDS_VERSION})",
                request.v
            )));
        }
        if request.keys.is_empty() || request.keys.len() > MAX_KEYS_PER_REQUEST {
            return Err(refuse(format!("ask for 1 to {MAX_KEYS_PER_REQUEST} keys")));
        }
        let info = EnclaveInstanceInfo::decode(&request.attestation)
            .map_err(|e| refuse(format!("the requester's attestation is unreadable: {e}")))?;
        // The requester proves it holds the attested key: the mail came from it.
        if *info.encryption_key() != mail.sender {
            return Err(refuse("the attestation's encryption key is not the key this request came from"));
        }
        let now = now_unix();
        let master = Self::master(ctx)?;
        let mut keys = Vec::with_capacity(request.keys.len());
        for spec in &request.keys {
            let policy = EnclaveConstraint::parse(&spec.policy)
                .map_err(|e| refuse(format!("key {:?}: policy {:?} is invalid: {e}", spec.name, spec.policy)))?;
            policy
                .check(&info, now)
                .map_err(|e| refuse(format!("key {:?}: the requester does not satisfy its policy: {e}", spec.name)))?;
            let key = derive_key(&master, spec).map_err(|e| refuse(format!("key {:?}: {e}", spec.name)))?;
            keys.push(IssuedKey { name: spec.name.clone(), key });
        }
        Ok(KeyResponse { v: KDS_VERSION, keys })
    }
}

impl Enclave for KdsEnclave {
    /// The master key must outlive any one build of the KDS: every build
    /// from the same signer and product id reads it.
    fn sealing_policy(&self) -> conclave_core::SealingPolicy {
        conclave_core::SealingPolicy::SignerAndProduct
    }

    /// Makes the master key at the first start; it is sealed with the state.
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        if ctx.persistent_map().get(MASTER).is_none() {
            let mut master = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut master[..]);
            ctx.persistent_map().insert(MASTER, master.to_vec())?;
        }
        Ok(())
    }

    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        // Each request comes from a fresh key and is answered (or refused)
        // once: forget the requester, so the KDS's state does not grow with
        // every start of every enclave, nor with refused requests. A replayed
        // request gets the same answer again, encrypted to the same key:
        // harmless.
        ctx.forget_after_call(&mail.sender);
        let response = Self::answer(ctx, &mail)?;
        let body = Zeroizing::new(serde_json::to_vec(&response).map_err(|e| EnclaveError::Internal(e.to_string()))?);
        ctx.reply(&mail, &body, routing_hint)
    }
}
