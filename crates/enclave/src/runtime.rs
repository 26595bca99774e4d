//! The enclave runtime: keys, sequence checks, and the command batch of each call.

use std::{
    any::Any,
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use conclave_core::{
    EnclaveInstanceInfo, EnclaveReport, Evidence, HostCommand, PostOffice, PrivateKey, PublicKey, decrypt_mail,
    key_binding,
};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::OsRng;

use crate::{Enclave, EnclaveError, EnclaveMail, sequence::SequenceTracker};

/// Who the enclave is: what its evidence reports besides its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveIdentity {
    /// SHA-256 of the enclave binary.
    pub code_hash: [u8; 32],
    /// SHA-256 of the key that signed the binary.
    pub code_signing_key_hash: [u8; 32],
    /// The signer's product id for this enclave.
    pub product_id: u16,
    /// The signer's revocation level for this enclave.
    pub revocation_level: u16,
}

/// What the enclave needs from its (untrusted) host while it runs.
pub trait HostInterface: Send {
    /// Passes bytes to the host's callback and returns its answer.
    fn call_untrusted_host(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, EnclaveError>;

    /// Turns a report into evidence: unsigned in mock mode, signed by the
    /// host's simulated attestation key in simulation, a quote on hardware.
    fn evidence(&mut self, report: EnclaveReport) -> Result<Evidence, EnclaveError>;
}

/// The state an [`EnclaveContext`] works on; separate from the enclave value
/// so both can be borrowed during a call.
pub(crate) struct RuntimeState {
    encryption_key: PrivateKey,
    signing_key: SigningKey,
    info: EnclaveInstanceInfo,
    post_offices: HashMap<(PublicKey, String), PostOffice>,
    sequences: SequenceTracker,
    commands: Vec<HostCommand>,
    host: Box<dyn HostInterface>,
}

/// What an enclave can do during a call: reply, post mail, call its host.
///
/// Everything it emits is collected into the call's ordered command batch and
/// handed to the host only when the call succeeds.
pub struct EnclaveContext<'a> {
    state: &'a mut RuntimeState,
}

impl core::fmt::Debug for EnclaveContext<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveContext").field("encryption_key", &self.encryption_key()).finish_non_exhaustive()
    }
}

impl EnclaveContext<'_> {
    /// The enclave's X25519 encryption key, fresh at every start.
    pub fn encryption_key(&self) -> PublicKey {
        self.state.encryption_key.public_key()
    }

    /// The attestation this enclave presents.
    pub fn instance_info(&self) -> &EnclaveInstanceInfo {
        &self.state.info
    }

    /// Signs `data` with the enclave's data-signing key (its public half is in the attestation).
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.state.signing_key.sign(data).to_bytes()
    }

    /// The post office for mail from this enclave to `destination` on `topic`.
    pub fn post_office(&mut self, destination: &PublicKey, topic: &str) -> Result<&mut PostOffice, EnclaveError> {
        let key = (*destination, topic.to_owned());
        if !self.state.post_offices.contains_key(&key) {
            let po = PostOffice::new(self.state.encryption_key.clone(), *destination, topic)?;
            self.state.post_offices.insert(key.clone(), po);
        }
        self.state.post_offices.get_mut(&key).ok_or_else(|| EnclaveError::bug("post office vanished"))
    }

    /// The post office for replies to `mail`'s authenticated sender on its topic.
    pub fn reply_post_office(&mut self, mail: &EnclaveMail) -> Result<&mut PostOffice, EnclaveError> {
        self.post_office(&mail.sender, mail.header.topic())
    }

    /// Hands an encrypted mail to the host for delivery.
    pub fn post_mail(&mut self, bytes: Vec<u8>, routing_hint: Option<&str>) {
        self.state.commands.push(HostCommand::PostMail { bytes, routing_hint: routing_hint.map(str::to_owned) });
    }

    /// Encrypts `body` to `destination` on `topic` and posts it.
    pub fn send(
        &mut self,
        destination: &PublicKey,
        topic: &str,
        body: &[u8],
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        let bytes = self.post_office(destination, topic)?.encrypt_mail(body, &mut OsRng)?;
        self.post_mail(bytes, routing_hint);
        Ok(())
    }

    /// Encrypts `body` to the sender of `mail`, on its topic, and posts it with `routing_hint`.
    pub fn reply(&mut self, mail: &EnclaveMail, body: &[u8], routing_hint: Option<&str>) -> Result<(), EnclaveError> {
        self.send(&mail.sender, mail.header.topic(), body, routing_hint)
    }

    /// Calls the host's callback with `bytes` (the host sees them in clear).
    pub fn call_untrusted_host(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, EnclaveError> {
        self.state.host.call_untrusted_host(bytes)
    }
}

/// The result of one call into the enclave.
#[derive(Debug, Default)]
pub struct CallOutcome {
    /// What `receive_from_untrusted_host` returned.
    pub response: Option<Vec<u8>>,
    /// The commands the enclave emitted, in order.
    pub commands: Vec<HostCommand>,
}

/// A started enclave: its value, its keys, its sequence state.
pub struct EnclaveRuntime {
    enclave: Box<dyn Enclave>,
    state: RuntimeState,
}

impl core::fmt::Debug for EnclaveRuntime {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveRuntime").field("info", &self.state.info).finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl EnclaveRuntime {
    /// Starts an enclave: fresh keys from the OS random source, evidence from
    /// the host, then `on_startup`. Returns the commands start-up emitted.
    pub fn start(
        enclave: Box<dyn Enclave>,
        identity: &EnclaveIdentity,
        mut host: Box<dyn HostInterface>,
    ) -> Result<(Self, Vec<HostCommand>), EnclaveError> {
        let encryption_key = PrivateKey::generate(&mut OsRng);
        let signing_key = SigningKey::generate(&mut OsRng);
        let signing_public = signing_key.verifying_key().to_bytes();
        let report = EnclaveReport {
            code_hash: identity.code_hash,
            code_signing_key_hash: identity.code_signing_key_hash,
            product_id: identity.product_id,
            revocation_level: identity.revocation_level,
            report_data: key_binding(&signing_public, &encryption_key.public_key()),
            timestamp_unix: now_unix(),
        };
        let evidence = host.evidence(report)?;
        let info = EnclaveInstanceInfo::new(signing_public, encryption_key.public_key(), evidence);
        let state = RuntimeState {
            encryption_key,
            signing_key,
            info,
            post_offices: HashMap::new(),
            sequences: SequenceTracker::default(),
            commands: Vec::new(),
            host,
        };
        let mut runtime = Self { enclave, state };
        let commands = runtime.run(|enclave, ctx| enclave.on_startup(ctx))?;
        Ok((runtime, commands))
    }

    /// The attestation of this run of the enclave.
    pub fn instance_info(&self) -> &EnclaveInstanceInfo {
        &self.state.info
    }

    /// Decrypts a mail, checks its sequence number, and hands it to the enclave.
    pub fn deliver_mail(&mut self, bytes: &[u8], routing_hint: Option<&str>) -> Result<Vec<HostCommand>, EnclaveError> {
        let mail = decrypt_mail(&self.state.encryption_key, bytes)?;
        self.state.sequences.check_and_advance(&mail.sender, mail.header.topic(), mail.header.sequence_number())?;
        self.run(|enclave, ctx| enclave.receive_mail(ctx, mail, routing_hint))
    }

    /// Passes bytes from the host to `receive_from_untrusted_host`.
    pub fn call_enclave(&mut self, bytes: &[u8]) -> Result<CallOutcome, EnclaveError> {
        let mut response = None;
        let commands = self.run(|enclave, ctx| {
            response = enclave.receive_from_untrusted_host(ctx, bytes)?;
            Ok(())
        })?;
        Ok(CallOutcome { response, commands })
    }

    /// Runs `on_shutdown` and drops the enclave with its keys.
    pub fn stop(mut self) -> Vec<HostCommand> {
        self.run(|enclave, ctx| {
            enclave.on_shutdown(ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// The enclave value itself, for mock-mode tests.
    pub fn enclave_any_mut(&mut self) -> &mut dyn Any {
        &mut *self.enclave
    }

    /// Runs one call; its commands are returned only if it succeeds, so a
    /// failed call leaves nothing behind.
    fn run(
        &mut self,
        f: impl FnOnce(&mut dyn Enclave, &mut EnclaveContext<'_>) -> Result<(), EnclaveError>,
    ) -> Result<Vec<HostCommand>, EnclaveError> {
        self.state.commands.clear();
        let mut ctx = EnclaveContext { state: &mut self.state };
        let result = f(&mut *self.enclave, &mut ctx);
        let commands = core::mem::take(&mut self.state.commands);
        result.map(|()| commands)
    }
}
