//! The enclave runtime: keys, sequence checks, and the command batch of each call.

use std::{
    any::Any,
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use conclave_core::{
    EnclaveInstanceInfo, EnclaveReport, Evidence, HostCommand, PostOffice, PrivateKey, PublicKey, Sealer,
    SealingIdentity, SealingPolicy, decrypt_mail, key_binding, mail::validate_topic,
};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::{OsRng, RngCore};

use crate::{
    Enclave, EnclaveError, EnclaveMail, SelfMail,
    persistence::{
        DEFAULT_MAP_LIMIT, DurableState, PersistentMap, StateFrame, decode_self_mail, decode_state, encode_self_mail,
        encode_state,
    },
    sequence::SequenceTracker,
};

/// Associated data that keeps sealed state and mail-to-self apart.
const STATE_AAD: &[u8] = b"conclave-sealed-state-v1";
const SELF_MAIL_AAD: &[u8] = b"conclave-mail-to-self-v1";

/// What the host hands the enclave at start.
#[derive(Clone)]
pub struct StartInput {
    /// The root of the sealing keys. In simulation mode it is a file in the
    /// host's data directory (so the host's operator can read it); on
    /// hardware it would come from the CPU.
    pub platform_secret: [u8; 32],
    /// The last sealed state the host committed, if any.
    pub sealed_state: Option<Vec<u8>>,
    /// Stored mail-to-self, in the order it was posted: (host id, sealed blob).
    pub self_mail: Vec<(u64, Vec<u8>)>,
    /// Size limit of the persistent map, in bytes.
    pub persistent_map_limit: usize,
}

impl StartInput {
    /// A first start: no state, no mail to self, default map limit.
    pub fn fresh(platform_secret: [u8; 32]) -> Self {
        Self { platform_secret, sealed_state: None, self_mail: Vec::new(), persistent_map_limit: DEFAULT_MAP_LIMIT }
    }
}

impl core::fmt::Debug for StartInput {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StartInput")
            .field("platform_secret", &"<redacted>")
            .field("sealed_state_len", &self.sealed_state.as_ref().map(Vec::len))
            .field("self_mail", &self.self_mail.len())
            .field("persistent_map_limit", &self.persistent_map_limit)
            .finish()
    }
}

/// Refuses sealed data bound under another policy than the enclave's own:
/// the enclave's code, not the host, decides who may read its data.
fn refuse_other_policy(found: SealingPolicy, own: SealingPolicy) -> Result<(), EnclaveError> {
    if found == own {
        Ok(())
    } else {
        Err(EnclaveError::Persistence(format!(
            "sealed data uses the {found} policy but this enclave seals with {own}: refusing it"
        )))
    }
}

/// Outgoing work of a call, kept in order until the call ends.
enum Pending {
    /// Mail to encrypt at the end of the call, when its state frame is known.
    Mail { destination: PublicKey, topic: String, body: Vec<u8>, routing_hint: Option<String> },
    /// A command passed through as it is.
    Command(HostCommand),
}

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
    pending: Vec<Pending>,
    host: Box<dyn HostInterface>,
    sealer: Sealer,
    sealing_policy: SealingPolicy,
    map: PersistentMap,
    durable: DurableState,
    /// Mail-to-self posted during the current call (their numbers are taken from `durable`).
    self_mail_posted: u64,
    /// Numbers of the mail-to-self deleted during the current call.
    self_mail_deleted: Vec<u64>,
    /// Host id → number of each mail-to-self handed back at start.
    self_mail_numbers: HashMap<u64, u64>,
    /// The counter of the state this run started from.
    instance_start: u64,
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

    /// Hands an already encrypted mail to the host as it is. Mail built this
    /// way carries no state frame; clients of this SDK expect one, so prefer
    /// [`Self::send`] and [`Self::reply`].
    pub fn post_mail(&mut self, bytes: Vec<u8>, routing_hint: Option<&str>) {
        self.state
            .pending
            .push(Pending::Command(HostCommand::PostMail { bytes, routing_hint: routing_hint.map(str::to_owned) }));
    }

    /// Sends `body` to `destination` on `topic`. It is encrypted when the call
    /// ends, behind a state frame naming the state this call leaves behind,
    /// so the recipient can tell if the host ever rolls the enclave back.
    pub fn send(
        &mut self,
        destination: &PublicKey,
        topic: &str,
        body: &[u8],
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        validate_topic(topic)?;
        self.state.pending.push(Pending::Mail {
            destination: *destination,
            topic: topic.to_owned(),
            body: body.to_vec(),
            routing_hint: routing_hint.map(str::to_owned),
        });
        Ok(())
    }

    /// The persistent map: sealed and handed to the host after every call that changes it.
    pub fn persistent_map(&mut self) -> &mut PersistentMap {
        &mut self.state.map
    }

    /// The counter of the enclave's current sealed state (0 before the first).
    pub fn state_counter(&self) -> u64 {
        self.state.durable.counter
    }

    /// Posts mail to this enclave itself: sealed under its sealing identity
    /// (not its per-start key), kept by the host, and handed back in order
    /// through [`Enclave::receive_mail_from_self`] at the next start.
    pub fn post_mail_to_self(&mut self, topic: &str, body: &[u8]) -> Result<(), EnclaveError> {
        validate_topic(topic)?;
        let sequence = self.state.durable.next_self_mail + self.state.self_mail_posted;
        let plaintext = encode_self_mail(sequence, topic, body);
        let blob = self.state.sealer.seal(self.state.sealing_policy, &plaintext, SELF_MAIL_AAD, &mut OsRng)?;
        self.state.self_mail_posted += 1;
        self.state.pending.push(Pending::Command(HostCommand::StoreMailToSelf { blob }));
        Ok(())
    }

    /// Tells the host it may delete the mail-to-self with this host id (once
    /// absorbed). The deletion is sealed too, so a host that keeps a copy
    /// cannot hand it back later. Ids not handed back at this start are ignored.
    pub fn delete_mail_to_self(&mut self, id: u64) {
        if let Some(number) = self.state.self_mail_numbers.remove(&id) {
            self.state.self_mail_deleted.push(number);
            self.state.pending.push(Pending::Command(HostCommand::DeleteMailToSelf { id }));
        }
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
    /// the host, the sealed state restored, `on_startup`, then every stored
    /// mail-to-self in order. Returns the commands start-up emitted.
    pub fn start(
        enclave: Box<dyn Enclave>,
        identity: &EnclaveIdentity,
        mut host: Box<dyn HostInterface>,
        input: StartInput,
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
        let sealer = Sealer::new(
            input.platform_secret,
            SealingIdentity {
                code_hash: identity.code_hash,
                code_signing_key_hash: identity.code_signing_key_hash,
                product_id: identity.product_id,
            },
        );
        let mut map = PersistentMap::new(input.persistent_map_limit);
        let sealing_policy = enclave.sealing_policy();
        let (durable, sequences) = match &input.sealed_state {
            Some(blob) => {
                let plain = sealer.unseal(blob, STATE_AAD)?;
                refuse_other_policy(plain.policy, sealing_policy)?;
                let durable = decode_state(&plain.plaintext, &mut map)?;
                let sequences = SequenceTracker::resumed(durable.floors.clone());
                (durable, sequences)
            }
            None => (DurableState::default(), SequenceTracker::default()),
        };
        let instance_start = durable.counter;
        let state = RuntimeState {
            encryption_key,
            signing_key,
            info,
            post_offices: HashMap::new(),
            sequences,
            pending: Vec::new(),
            host,
            sealer,
            sealing_policy,
            map,
            durable,
            self_mail_posted: 0,
            self_mail_deleted: Vec::new(),
            self_mail_numbers: HashMap::new(),
            instance_start,
        };
        let mut runtime = Self { enclave, state };
        let mut commands = runtime.run(|enclave, ctx| enclave.on_startup(ctx))?;
        let mut previous: Option<u64> = None;
        let mut handed_back = Vec::with_capacity(input.self_mail.len());
        for (id, blob) in &input.self_mail {
            let plain = runtime.state.sealer.unseal(blob, SELF_MAIL_AAD)?;
            refuse_other_policy(plain.policy, sealing_policy)?;
            let (sequence, topic, body) = decode_self_mail(&plain.plaintext)?;
            // The host keeps mail-to-self; it must hand back exactly the live
            // ones, in the order they were posted.
            if previous.is_some_and(|p| sequence <= p) {
                return Err(EnclaveError::Persistence(format!(
                    "mail to self out of order: number {sequence} after {}",
                    previous.unwrap_or_default()
                )));
            }
            if !runtime.state.durable.live_self_mail.contains(&sequence) {
                return Err(EnclaveError::Persistence(format!(
                    "mail to self number {sequence} was deleted or never sealed: the host handed back a stale copy \
                     or an older sealed state"
                )));
            }
            previous = Some(sequence);
            runtime.state.self_mail_numbers.insert(*id, sequence);
            handed_back.push(SelfMail { id: *id, topic, body });
        }
        if let Some(missing) = runtime
            .state
            .durable
            .live_self_mail
            .iter()
            .find(|n| !runtime.state.self_mail_numbers.values().any(|v| v == *n))
        {
            return Err(EnclaveError::Persistence(format!(
                "mail to self number {missing} is missing: the host did not hand it back"
            )));
        }
        for mail in handed_back {
            commands.extend(runtime.run(|enclave, ctx| enclave.receive_mail_from_self(ctx, mail))?);
        }
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
    /// failed call leaves nothing behind (its persistent-map changes are undone).
    fn run(
        &mut self,
        f: impl FnOnce(&mut dyn Enclave, &mut EnclaveContext<'_>) -> Result<(), EnclaveError>,
    ) -> Result<Vec<HostCommand>, EnclaveError> {
        self.state.pending.clear();
        self.state.self_mail_posted = 0;
        self.state.self_mail_deleted.clear();
        let mut ctx = EnclaveContext { state: &mut self.state };
        let result = f(&mut *self.enclave, &mut ctx).and_then(|()| self.finish_call());
        if result.is_err() {
            self.state.map.end_call(false);
            self.state.pending.clear();
            self.state.self_mail_posted = 0;
            // Deletions of a failed call did not happen: they may be asked again.
            self.state.self_mail_deleted.clear();
        }
        result
    }

    /// Seals the state if the call changed it, then encrypts the call's mail
    /// behind the state frame of the state it leaves behind.
    fn finish_call(&mut self) -> Result<Vec<HostCommand>, EnclaveError> {
        let state = &mut self.state;
        let seal = state.map.changed() || state.self_mail_posted > 0 || !state.self_mail_deleted.is_empty();
        let (state_id, counter) = if seal {
            let mut id = [0u8; 16];
            OsRng.fill_bytes(&mut id);
            (id, state.durable.counter + 1)
        } else {
            (state.durable.state_id, state.durable.counter)
        };
        let mut shown = state.durable.shown.clone();
        let mut commands = Vec::with_capacity(state.pending.len() + 1);
        for pending in core::mem::take(&mut state.pending) {
            match pending {
                Pending::Command(command) => commands.push(command),
                Pending::Mail { destination, topic, body, routing_hint } => {
                    let last_shown = shown.insert(destination, counter).unwrap_or(0);
                    let framed =
                        StateFrame { state_id, counter, last_shown, instance_start: state.instance_start }.wrap(&body);
                    let key = (destination, topic.clone());
                    let po = match state.post_offices.entry(key) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(PostOffice::new(state.encryption_key.clone(), destination, &topic)?)
                        }
                    };
                    let bytes = po.encrypt_mail(&framed, &mut OsRng)?;
                    commands.push(HostCommand::PostMail { bytes, routing_hint });
                }
            }
        }
        if seal {
            let first_new = state.durable.next_self_mail;
            let mut live_self_mail = state.durable.live_self_mail.clone();
            live_self_mail.extend(first_new..first_new + state.self_mail_posted);
            for number in &state.self_mail_deleted {
                live_self_mail.remove(number);
            }
            let durable = DurableState {
                state_id,
                counter,
                next_self_mail: first_new + state.self_mail_posted,
                shown,
                floors: state.sequences.floors(),
                live_self_mail,
            };
            let blob =
                state.sealer.seal(state.sealing_policy, &encode_state(&durable, &state.map), STATE_AAD, &mut OsRng)?;
            commands.push(HostCommand::StoreSealedState { blob });
            state.durable = durable;
        } else {
            state.durable.shown = shown;
        }
        state.map.end_call(true);
        state.self_mail_posted = 0;
        state.self_mail_deleted.clear();
        Ok(commands)
    }
}
