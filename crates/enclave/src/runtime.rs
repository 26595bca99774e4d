//! The enclave runtime: keys, the checks every mail passes before the
//! application sees it, and the sealed state and command batch of each call.
//!
//! ```text
//!  mail ─► decrypt ─► request frame ─► sequence / freshness checks ─┬─► Enclave::receive_mail
//!                                                                   └─► rejection (authenticated, no state change)
//!  end of call ─► new state (checkpoint n+1, sealed) ─► answers framed per recipient's reply chain ─► batch
//! ```

use std::{
    any::Any,
    collections::{HashMap, HashSet, VecDeque},
    panic::AssertUnwindSafe,
    time::{SystemTime, UNIX_EPOCH},
};

use conclave_core::{
    Answer, EnclaveInstanceInfo, EnclaveReport, Evidence, HostCommand, MailHeader, PaddingPolicy, PostOffice,
    PrivateKey, PublicKey, Rejection, RejectionDetail, RequestFrame, ResponseFrame, ResponseKind, Sealer,
    SealingIdentity, SealingPolicy, StateCheckpoint, decrypt_mail, encrypt_mail,
    freshness::{FreshnessRefusal, check_request},
    key_binding,
    mail::validate_topic,
};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::{
    Enclave, EnclaveError, EnclaveFactory, EnclaveMail, SelfMail,
    persistence::{
        ClientRecord, DEFAULT_MAP_LIMIT, DurableState, MAX_RUNS, PersistentMap, decode_self_mail, decode_state,
        encode_self_mail, encode_state, stream_size,
    },
    sequence,
};

/// Associated data that keeps sealed state and mail-to-self apart.
const STATE_AAD: &[u8] = b"conclave-sealed-state-v2";
const SELF_MAIL_AAD: &[u8] = b"conclave-mail-to-self-v2";

/// Rejections are padded to this many body bytes, so they all look alike.
const REJECTION_PADDING: usize = 512;

/// How many sender keys the runtime remembers as checked (not low-order).
const CHECKED_KEYS: usize = 4096;

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
    /// Size limit of the persistent map (shared with the runtime's records), in bytes.
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
    /// Mail to frame and encrypt at the end of the call, when its state is known.
    Mail {
        destination: PublicKey,
        topic: String,
        body: Vec<u8>,
        routing_hint: Option<String>,
        kind: ResponseKind,
        answers: Option<Answer>,
    },
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

    /// Carries one exchange with the key derivation service the host was
    /// told about (it sees only ciphertext and the KDS's public attestation).
    fn kds(&mut self, _call: crate::KdsCall) -> Result<Vec<u8>, EnclaveError> {
        Err(EnclaveError::Kds(crate::KdsProblem::Unreachable(
            "this enclave uses a key derivation service, but the host has none: start the host with --kds URL".into(),
        )))
    }
}

/// The client mail a call is handling.
#[derive(Debug, Clone)]
struct CurrentMail {
    sender: PublicKey,
    topic: String,
    sequence_number: u64,
    request_id: [u8; 16],
    hint: Option<String>,
}

impl CurrentMail {
    fn answer(&self) -> Answer {
        Answer { topic: self.topic.clone(), sequence_number: self.sequence_number, request_id: self.request_id }
    }
}

/// What one call has done so far; applied to the durable state only if the call succeeds.
#[derive(Default)]
struct CallState {
    pending: Vec<Pending>,
    /// Mail-to-self posted during the call: SHA-256 of each sealed blob.
    self_mail_posted: Vec<[u8; 32]>,
    /// Numbers of the mail-to-self deleted during the call.
    self_mail_deleted: Vec<u64>,
    /// New client records the call's mail will create: their size is reserved.
    new_recipients: HashSet<PublicKey>,
    current: Option<CurrentMail>,
    /// Whether the application answered the current mail.
    answered: bool,
    /// Keys whose records and streams go once the call's mail is framed.
    forget: Vec<PublicKey>,
}

/// The state an [`EnclaveContext`] works on; separate from the enclave value
/// so both can be borrowed during a call.
pub(crate) struct RuntimeState {
    encryption_key: PrivateKey,
    signing_key: SigningKey,
    info: EnclaveInstanceInfo,
    /// The checkpoint this run started from.
    run: StateCheckpoint,
    post_offices: HashMap<(PublicKey, String), PostOffice>,
    /// Padding of in-chain mail, per (recipient, topic).
    padding: HashMap<(PublicKey, String), PaddingPolicy>,
    host: Box<dyn HostInterface>,
    sealer: Sealer,
    sealing_policy: SealingPolicy,
    map: PersistentMap,
    /// The state the last successful call left behind (what the host was
    /// asked to commit).
    durable: DurableState,
    /// Bytes of client records and floors in `durable`.
    protocol_size: usize,
    /// The state limit: map plus records.
    limit: usize,
    call: CallState,
    /// Highest number presented per known stream during this run (for
    /// telling reorders from gaps; not sealed).
    presented: HashMap<(PublicKey, String), u64>,
    /// Sender keys already checked not to be low-order.
    checked_keys: HashSet<PublicKey>,
    /// Host id → number of each mail-to-self handed back at the last start or reset.
    self_mail_numbers: HashMap<u64, u64>,
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

    /// A post office for mail from this enclave to `destination` on `topic`,
    /// for protocols of the application's own (see [`Self::post_mail`]).
    pub fn post_office(&mut self, destination: &PublicKey, topic: &str) -> Result<&mut PostOffice, EnclaveError> {
        let key = (*destination, topic.to_owned());
        if !self.state.post_offices.contains_key(&key) {
            let po = PostOffice::new(self.state.encryption_key.clone(), *destination, topic)?;
            self.state.post_offices.insert(key.clone(), po);
        }
        self.state.post_offices.get_mut(&key).ok_or_else(|| EnclaveError::bug("post office vanished"))
    }

    /// Hands an already encrypted mail to the host as it is. Mail built this
    /// way carries no response frame, so clients of this SDK refuse it;
    /// prefer [`Self::send`] and [`Self::reply`].
    pub fn post_mail(&mut self, bytes: Vec<u8>, routing_hint: Option<&str>) {
        self.state
            .call
            .pending
            .push(Pending::Command(HostCommand::PostMail { bytes, routing_hint: routing_hint.map(str::to_owned) }));
    }

    /// Sends `body` to `destination` on `topic`. It is encrypted when the call
    /// ends, behind a response frame naming the state this call leaves
    /// behind and its place in the recipient's reply chain. With no routing
    /// hint, it goes where the recipient's latest mail came from.
    pub fn send(
        &mut self,
        destination: &PublicKey,
        topic: &str,
        body: &[u8],
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        self.push_mail(*destination, topic, body, routing_hint, ResponseKind::Reply, None)
    }

    /// Encrypts `body` to the sender of `mail`, on its topic, and posts it
    /// with `routing_hint`. The reply names `mail` (inside the encryption),
    /// so its sender can tell which mail it answers.
    pub fn reply(&mut self, mail: &EnclaveMail, body: &[u8], routing_hint: Option<&str>) -> Result<(), EnclaveError> {
        let answer = Answer {
            topic: mail.header.topic().to_owned(),
            sequence_number: mail.header.sequence_number(),
            request_id: mail.request_id,
        };
        let current = self.state.call.current.as_ref().is_some_and(|c| {
            c.sender == mail.sender && c.topic == answer.topic && c.sequence_number == answer.sequence_number
        });
        self.push_mail(mail.sender, mail.header.topic(), body, routing_hint, ResponseKind::Reply, Some(answer))?;
        if current {
            self.state.call.answered = true;
        }
        Ok(())
    }

    fn push_mail(
        &mut self,
        destination: PublicKey,
        topic: &str,
        body: &[u8],
        routing_hint: Option<&str>,
        kind: ResponseKind,
        answers: Option<Answer>,
    ) -> Result<(), EnclaveError> {
        validate_topic(topic)?;
        if destination.is_low_order() {
            return Err(EnclaveError::application(format!(
                "cannot send to {destination}: it is a low-order key, so anyone could read the mail"
            )));
        }
        self.state.reserve_recipient(&destination)?;
        self.state.call.pending.push(Pending::Mail {
            destination,
            topic: topic.to_owned(),
            body: body.to_vec(),
            routing_hint: routing_hint.map(str::to_owned),
            kind,
            answers,
        });
        Ok(())
    }

    /// The persistent map: sealed and handed to the host after every call that changes it.
    pub fn persistent_map(&mut self) -> &mut PersistentMap {
        &mut self.state.map
    }

    /// The counter of the enclave's current sealed state (0 before the first).
    pub fn state_counter(&self) -> u64 {
        self.state.durable.checkpoint.counter
    }

    /// The checkpoint of the enclave's current sealed state.
    pub fn checkpoint(&self) -> StateCheckpoint {
        self.state.durable.checkpoint
    }

    /// Posts mail to this enclave itself: sealed under its sealing identity
    /// (not its per-start key), kept by the host, and handed back in order
    /// through [`Enclave::receive_mail_from_self`] at the next start.
    pub fn post_mail_to_self(&mut self, topic: &str, body: &[u8]) -> Result<(), EnclaveError> {
        validate_topic(topic)?;
        let call = &mut self.state.call;
        let sequence = self.state.durable.next_self_mail + call.self_mail_posted.len() as u64;
        let plaintext = encode_self_mail(sequence, topic, body);
        let blob = self.state.sealer.seal(self.state.sealing_policy, &plaintext, SELF_MAIL_AAD, &mut OsRng)?;
        call.self_mail_posted.push(Sha256::digest(&blob).into());
        call.pending.push(Pending::Command(HostCommand::StoreMailToSelf { blob }));
        Ok(())
    }

    /// Tells the host it may delete the mail-to-self with this host id (once
    /// absorbed). The deletion is sealed too, so a host that keeps a copy
    /// cannot hand it back later. Ids not handed back at this start are ignored.
    pub fn delete_mail_to_self(&mut self, id: u64) {
        if let Some(number) = self.state.self_mail_numbers.get(&id).copied()
            && !self.state.call.self_mail_deleted.contains(&number)
        {
            self.state.call.self_mail_deleted.push(number);
            self.state.call.pending.push(Pending::Command(HostCommand::DeleteMailToSelf { id }));
        }
    }

    /// Calls the host's callback with `bytes` (the host sees them in clear).
    pub fn call_untrusted_host(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, EnclaveError> {
        self.state.host.call_untrusted_host(bytes)
    }

    /// Forgets `key` once this call's mail is sent: its reply chain and
    /// sequence numbers leave the sealed state. For one-shot conversations
    /// (a key derivation service answers each start of an enclave from a
    /// fresh key): the state does not grow with them. A later mail from the
    /// key starts a new conversation at number 0, so forget only senders for
    /// whom a repeated request is harmless.
    pub fn forget_after_call(&mut self, key: &PublicKey) {
        self.state.call.forget.push(*key);
    }
}

impl RuntimeState {
    /// Reserves room for a new client record, or refuses if the state is full.
    fn reserve_recipient(&mut self, key: &PublicKey) -> Result<(), EnclaveError> {
        if self.durable.clients.contains_key(key) || self.call.new_recipients.contains(key) {
            return Ok(());
        }
        let needed = ClientRecord::default().size();
        if self.used() + needed > self.limit {
            return Err(EnclaveError::application(format!(
                "the enclave's state is full ({} of {} bytes): cannot keep a record for another recipient",
                self.used(),
                self.limit
            )));
        }
        self.call.new_recipients.insert(*key);
        self.map.reserved += needed;
        Ok(())
    }

    fn used(&self) -> usize {
        self.map.size_bytes() + self.map.reserved
    }

    fn record(&self, key: &PublicKey) -> ClientRecord {
        self.durable.clients.get(key).cloned().unwrap_or_default()
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

/// What became of a delivered mail.
#[derive(Debug)]
pub struct Delivered {
    /// The commands to commit, in order (the answer or the rejection among them).
    pub commands: Vec<HostCommand>,
    /// `ACCEPTED`, or the rejection's stable code: for the host's metrics
    /// and logs (the sender learns it from the encrypted answer).
    pub outcome: &'static str,
}

/// A started enclave: its value, its keys, its state.
pub struct EnclaveRuntime {
    enclave: Box<dyn Enclave>,
    factory: Option<EnclaveFactory>,
    state: RuntimeState,
    /// Set when application code panicked: the application value may be
    /// half-updated, so no call runs until the host resets it.
    poisoned: bool,
}

impl core::fmt::Debug for EnclaveRuntime {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveRuntime").field("info", &self.state.info).finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unseals and decodes a committed state, or the genesis when there is none.
fn restore(
    sealer: &Sealer,
    policy: SealingPolicy,
    blob: Option<&[u8]>,
    map: &mut PersistentMap,
) -> Result<DurableState, EnclaveError> {
    match blob {
        Some(blob) => {
            let plain = sealer.unseal(blob, STATE_AAD)?;
            refuse_other_policy(plain.policy, policy)?;
            decode_state(&plain.plaintext, map)
        }
        None => Ok(DurableState::default()),
    }
}

impl EnclaveRuntime {
    /// Starts an enclave: fresh keys from the OS random source, the sealed
    /// state restored, a new state sealed for this run (its checkpoint goes
    /// into the attestation, signed), evidence from the host, `on_startup`,
    /// then every stored mail-to-self in order. Returns the commands start-up
    /// emitted; the host must commit them before it serves the attestation.
    ///
    /// `factory`, if given, rebuilds the application for [`Self::reset`].
    pub fn start(
        enclave: Box<dyn Enclave>,
        factory: Option<EnclaveFactory>,
        identity: &EnclaveIdentity,
        mut host: Box<dyn HostInterface>,
        input: StartInput,
    ) -> Result<(Self, Vec<HostCommand>), EnclaveError> {
        let signing_key = SigningKey::generate(&mut OsRng);
        // With a KDS, the mail key and the sealing root come from it; without
        // one, a fresh key for this run and the platform's secret.
        let (encryption_key, sealing_root) = match enclave.kds(identity) {
            None => (PrivateKey::generate(&mut OsRng), input.platform_secret),
            Some(config) => {
                let keys = crate::kds_client::obtain(&config, identity, &mut *host, &signing_key)?;
                let mail = keys.mail.map_or_else(|| PrivateKey::generate(&mut OsRng), |k| PrivateKey::from_bytes(*k));
                (mail, keys.persistence.map_or(input.platform_secret, |k| *k))
            }
        };
        let sealer = Sealer::new(
            sealing_root,
            SealingIdentity {
                code_hash: identity.code_hash,
                code_signing_key_hash: identity.code_signing_key_hash,
                product_id: identity.product_id,
                revocation_level: identity.revocation_level,
            },
        );
        let sealing_policy = enclave.sealing_policy();
        let mut map = PersistentMap::new(input.persistent_map_limit);
        let mut durable = restore(&sealer, sealing_policy, input.sealed_state.as_deref(), &mut map)?;
        let self_mail_numbers = check_self_mail(&sealer, sealing_policy, &durable, &input.self_mail)?;

        // This run's own state: sealed before anything else, so every later
        // state of the run descends from it and the attestation can name it.
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let run = durable
            .checkpoint
            .next(&nonce)
            .ok_or_else(|| EnclaveError::Persistence("the state counter is exhausted".into()))?;
        durable.checkpoint = run;
        durable.runs.push_back(run);
        while durable.runs.len() > MAX_RUNS {
            durable.runs.pop_front();
        }
        let blob = sealer.seal(sealing_policy, &encode_state(&durable, &map), STATE_AAD, &mut OsRng)?;
        let start_commands =
            vec![HostCommand::StoreSealedState { blob, counter: run.counter, state_id: run.id, nonce }];

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
        let info = EnclaveInstanceInfo::signed(&signing_key, encryption_key.public_key(), run, evidence);
        let protocol_size = durable.protocol_size();
        let limit = input.persistent_map_limit;
        let state = RuntimeState {
            encryption_key,
            signing_key,
            info,
            run,
            post_offices: HashMap::new(),
            padding: HashMap::new(),
            host,
            sealer,
            sealing_policy,
            map,
            durable,
            protocol_size,
            limit,
            call: CallState::default(),
            presented: HashMap::new(),
            checked_keys: HashSet::new(),
            self_mail_numbers: HashMap::new(),
        };
        let mut runtime = Self { enclave, factory, state, poisoned: false };
        let mut commands = start_commands;
        commands.extend(runtime.begin(self_mail_numbers)?);
        Ok((runtime, commands))
    }

    /// `on_startup`, then every mail-to-self in order.
    fn begin(&mut self, numbers: Vec<HandedBack>) -> Result<Vec<HostCommand>, EnclaveError> {
        self.state.self_mail_numbers = numbers.iter().map(|(id, number, ..)| (*id, *number)).collect();
        let mut commands = self.run(None, |enclave, ctx| enclave.on_startup(ctx))?;
        for (id, _, topic, body) in numbers {
            let mail = SelfMail { id, topic, body };
            commands.extend(self.run(None, |enclave, ctx| enclave.receive_mail_from_self(ctx, mail))?);
        }
        Ok(commands)
    }

    /// Rebuilds the application in place from a committed state, keeping
    /// this run's keys: after a failed store commit (the enclave moved on in
    /// memory, the store did not) or a panic in application code. The state
    /// must be from this run's history. Returns the commands `on_startup` and
    /// the mail-to-self emitted.
    pub fn reset(
        &mut self,
        sealed_state: Option<&[u8]>,
        self_mail: &[(u64, Vec<u8>)],
    ) -> Result<Vec<HostCommand>, EnclaveError> {
        let Some(factory) = &self.factory else {
            return Err(EnclaveError::Internal(
                "this enclave cannot be rebuilt in place (it was started without a factory); restart it".into(),
            ));
        };
        let mut map = PersistentMap::new(self.state.limit);
        let durable = restore(&self.state.sealer, self.state.sealing_policy, sealed_state, &mut map)?;
        if durable.checkpoint.counter < self.state.run.counter || !durable.runs.contains(&self.state.run) {
            return Err(EnclaveError::Persistence(format!(
                "the state to reset to ({}) is not from this run's history (it started at {})",
                durable.checkpoint, self.state.run
            )));
        }
        let numbers = check_self_mail(&self.state.sealer, self.state.sealing_policy, &durable, self_mail)?;
        self.enclave = factory();
        self.state.map = map;
        self.state.protocol_size = durable.protocol_size();
        self.state.durable = durable;
        self.state.presented.clear();
        self.state.post_offices.clear();
        self.poisoned = false;
        self.begin(numbers)
    }

    /// The attestation of this run of the enclave.
    pub fn instance_info(&self) -> &EnclaveInstanceInfo {
        &self.state.info
    }

    /// The checkpoint of the state the last successful call left behind.
    pub fn checkpoint(&self) -> StateCheckpoint {
        self.state.durable.checkpoint
    }

    /// Decrypts a mail, checks it, and hands it to the enclave; or answers
    /// the sender with an authenticated rejection and changes nothing.
    pub fn deliver_mail(&mut self, bytes: &[u8], routing_hint: Option<&str>) -> Result<Delivered, EnclaveError> {
        self.refuse_if_poisoned()?;
        let mail = decrypt_mail(&self.state.encryption_key, bytes)?;
        let sender = mail.sender;
        if !self.state.checked_keys.contains(&sender) {
            if sender.is_low_order() {
                return Err(conclave_core::MailError::LowOrderSender { key: sender }.into());
            }
            if self.state.checked_keys.len() >= CHECKED_KEYS {
                self.state.checked_keys.clear();
            }
            self.state.checked_keys.insert(sender);
        }
        let topic = mail.header.topic().to_owned();
        let received = mail.header.sequence_number();
        let hint = routing_hint.map(str::to_owned);
        let (request, payload) = match RequestFrame::unwrap(&mail.body) {
            Ok(parsed) => parsed,
            Err(_) => {
                let answer = Answer { topic: topic.clone(), sequence_number: received, request_id: [0; 16] };
                return self.reject(&sender, answer, Rejection::BadRequest, 0, hint);
            }
        };
        let answer = Answer { topic: topic.clone(), sequence_number: received, request_id: request.request_id };
        let stream = (sender, topic.clone());
        let known = self.state.durable.streams.get(&stream).copied();
        let expected = known.unwrap_or(0);
        let highest = self.state.presented.get(&stream).copied();
        if known.is_some() {
            let seen = highest.map_or(received, |h| h.max(received));
            self.state.presented.insert(stream.clone(), seen);
        }
        let record = self.state.record(&sender);
        // A replay first: its request frame is as old as the mail.
        if received < expected {
            return self.reject(&sender, answer, Rejection::Replayed, expected, hint);
        }
        let history: Vec<StateCheckpoint> = self.state.durable.runs.iter().copied().collect();
        if let Err(refusal) = check_request(&record.chain, &request.chain, &request.runs, &history) {
            let rejection = match refusal {
                FreshnessRefusal::Rollback { .. } => Rejection::Rollback,
                FreshnessRefusal::Fork { .. } => Rejection::Fork,
            };
            return self.reject(&sender, answer, rejection, expected, hint);
        }
        if let Some(rejection) = sequence::verdict(expected, received, highest) {
            return self.reject(&sender, answer, rejection, expected, hint);
        }
        let new_stream = if known.is_none() { stream_size(&topic) } else { 0 };
        let new_client =
            if self.state.durable.clients.contains_key(&sender) { 0 } else { ClientRecord::default().size() };
        if self.state.used() + new_stream + new_client + hint.as_ref().map_or(0, String::len) > self.state.limit {
            return self.reject(&sender, answer, Rejection::StateFull, expected, hint);
        }
        let current = CurrentMail {
            sender,
            topic: topic.clone(),
            sequence_number: received,
            request_id: request.request_id,
            hint: hint.clone(),
        };
        let mail = EnclaveMail { header: mail.header, sender, body: payload.to_vec(), request_id: request.request_id };
        let commands = self.run(Some(current), |enclave, ctx| enclave.receive_mail(ctx, mail, hint.as_deref()))?;
        Ok(Delivered { commands, outcome: "ACCEPTED" })
    }

    /// An authenticated refusal that changes nothing: not in the reply chain.
    fn reject(
        &mut self,
        sender: &PublicKey,
        answer: Answer,
        rejection: Rejection,
        expected: u64,
        hint: Option<String>,
    ) -> Result<Delivered, EnclaveError> {
        let record = self.state.record(sender);
        let detail = RejectionDetail { expected, received: answer.sequence_number, chain_index: record.chain.index };
        let topic = answer.topic.clone();
        let frame = ResponseFrame {
            kind: ResponseKind::Rejected(rejection, detail),
            state: self.state.durable.checkpoint,
            link: None,
            answers: Some(answer),
        };
        // Rejections carry sequence number 0: they are matched by request id, not by number.
        let header = MailHeader::new(&topic, 0)?;
        let bytes =
            encrypt_mail(&self.state.encryption_key, sender, &header, &frame.wrap(&[]), REJECTION_PADDING, &mut OsRng)?;
        let routing_hint = hint.or(record.hint);
        Ok(Delivered { commands: vec![HostCommand::PostMail { bytes, routing_hint }], outcome: rejection.code() })
    }

    /// Passes bytes from the host to `receive_from_untrusted_host`.
    pub fn call_enclave(&mut self, bytes: &[u8]) -> Result<CallOutcome, EnclaveError> {
        self.refuse_if_poisoned()?;
        let mut response = None;
        let commands = self.run(None, |enclave, ctx| {
            response = enclave.receive_from_untrusted_host(ctx, bytes)?;
            Ok(())
        })?;
        Ok(CallOutcome { response, commands })
    }

    /// Runs `on_shutdown` and drops the enclave with its keys.
    pub fn stop(mut self) -> Vec<HostCommand> {
        if self.poisoned {
            return Vec::new();
        }
        self.run(None, |enclave, ctx| {
            enclave.on_shutdown(ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// The enclave value itself, for mock-mode tests.
    pub fn enclave_any_mut(&mut self) -> &mut dyn Any {
        &mut *self.enclave
    }

    fn refuse_if_poisoned(&self) -> Result<(), EnclaveError> {
        if self.poisoned {
            return Err(EnclaveError::Internal(
                "enclave code panicked in an earlier call; the host must reset the enclave".into(),
            ));
        }
        Ok(())
    }

    /// Runs one call. Its commands are returned only if it succeeds, so a
    /// failed call leaves nothing behind (its persistent-map changes are
    /// undone). A mail the application refuses is still answered: its number
    /// is used up, nothing else changes, and the sender gets the refusal.
    fn run(
        &mut self,
        current: Option<CurrentMail>,
        f: impl FnOnce(&mut dyn Enclave, &mut EnclaveContext<'_>) -> Result<(), EnclaveError>,
    ) -> Result<Vec<HostCommand>, EnclaveError> {
        self.state.call = CallState { current, ..CallState::default() };
        self.state.map.reserved = self.state.protocol_size;
        let mut ctx = EnclaveContext { state: &mut self.state };
        let enclave = &mut *self.enclave;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(enclave, &mut ctx)));
        let result = match outcome {
            Err(_) => {
                self.poisoned = true;
                Err(EnclaveError::Internal("enclave code panicked; the call was undone".into()))
            }
            Ok(Err(EnclaveError::Application(message))) if self.state.call.current.is_some() => {
                // Undo what the application did, keep the mail's number used up,
                // and tell the sender why. A sender it asked to forget is still forgotten.
                let forget = core::mem::take(&mut self.state.call.forget);
                self.discard_effects();
                self.state.call.forget = forget;
                let current = self.state.call.current.clone().ok_or_else(|| EnclaveError::bug("current mail"))?;
                self.state.call.pending.push(Pending::Mail {
                    destination: current.sender,
                    topic: current.topic.clone(),
                    body: message.into_bytes(),
                    routing_hint: current.hint.clone(),
                    kind: ResponseKind::Refused,
                    answers: Some(current.answer()),
                });
                self.finish()
            }
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) => {
                if let Some(current) = self.state.call.current.clone()
                    && !self.state.call.answered
                {
                    self.state.call.pending.push(Pending::Mail {
                        destination: current.sender,
                        topic: current.topic.clone(),
                        body: Vec::new(),
                        routing_hint: current.hint.clone(),
                        kind: ResponseKind::Receipt,
                        answers: Some(current.answer()),
                    });
                }
                self.finish()
            }
        };
        if result.is_err() {
            self.discard_effects();
        }
        self.state.call = CallState::default();
        self.state.map.reserved = self.state.protocol_size;
        result
    }

    /// Forgets everything the current call did (but which mail it handles).
    fn discard_effects(&mut self) {
        self.state.map.end_call(false);
        let call = &mut self.state.call;
        call.pending.clear();
        call.self_mail_posted.clear();
        call.self_mail_deleted.clear();
        call.new_recipients.clear();
        call.answered = false;
        call.forget.clear();
        self.state.map.reserved = self.state.protocol_size;
    }

    /// Seals the state the call leaves behind (if it changed anything) and
    /// encrypts the call's mail behind response frames naming that state.
    fn finish(&mut self) -> Result<Vec<HostCommand>, EnclaveError> {
        let state = &mut self.state;
        let call = &mut state.call;
        let mails = call.pending.iter().any(|p| matches!(p, Pending::Mail { .. }));
        let changed = call.current.is_some()
            || mails
            || state.map.changed()
            || !call.self_mail_posted.is_empty()
            || !call.self_mail_deleted.is_empty();
        if !changed {
            state.map.end_call(true);
            return Ok(call
                .pending
                .drain(..)
                .filter_map(|p| if let Pending::Command(c) = p { Some(c) } else { None })
                .collect());
        }
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let new = state
            .durable
            .checkpoint
            .next(&nonce)
            .ok_or_else(|| EnclaveError::Persistence("the state counter is exhausted".into()))?;

        // The next durable state, built aside so a failure leaves the current one intact.
        let mut next = DurableState {
            checkpoint: new,
            next_self_mail: state.durable.next_self_mail + call.self_mail_posted.len() as u64,
            clients: HashMap::new(),
            streams: HashMap::new(),
            runs: VecDeque::new(),
            live_self_mail: Default::default(),
        };
        let mut changed_clients: HashMap<PublicKey, ClientRecord> = HashMap::new();
        if let Some(current) = &call.current {
            let mut record = state.durable.clients.get(&current.sender).cloned().unwrap_or_default();
            if current.hint.is_some() {
                record.hint.clone_from(&current.hint);
            }
            changed_clients.insert(current.sender, record);
        }
        let mut commands = Vec::with_capacity(call.pending.len() + 1);
        for pending in call.pending.drain(..) {
            match pending {
                Pending::Command(command) => commands.push(command),
                Pending::Mail { destination, topic, body, routing_hint, kind, answers } => {
                    let record = changed_clients
                        .entry(destination)
                        .or_insert_with(|| state.durable.clients.get(&destination).cloned().unwrap_or_default());
                    let link = record.chain.link().ok_or_else(|| EnclaveError::bug("reply chain index exhausted"))?;
                    record.chain =
                        record.chain.extend(&new).ok_or_else(|| EnclaveError::bug("reply chain index exhausted"))?;
                    let frame = ResponseFrame { kind, state: new, link: Some(link), answers };
                    let framed = frame.wrap(&body);
                    let padding = state.padding.entry((destination, topic.clone())).or_default();
                    let min_size = padding.min_size_for(framed.len());
                    let header = MailHeader::new(&topic, link.index)?;
                    let bytes =
                        encrypt_mail(&state.encryption_key, &destination, &header, &framed, min_size, &mut OsRng)?;
                    let routing_hint = routing_hint.or_else(|| record.hint.clone());
                    commands.push(HostCommand::PostMail { bytes, routing_hint });
                }
            }
        }
        // Seal the whole next state: the maps are moved in and out so the
        // common case copies nothing.
        next.clients = core::mem::take(&mut state.durable.clients);
        next.streams = core::mem::take(&mut state.durable.streams);
        next.runs = core::mem::take(&mut state.durable.runs);
        next.live_self_mail = core::mem::take(&mut state.durable.live_self_mail);
        let mut undo_clients = Vec::with_capacity(changed_clients.len());
        for (key, record) in changed_clients {
            undo_clients.push((key, next.clients.insert(key, record)));
        }
        let mut undo_stream = None;
        if let Some(current) = &call.current {
            let key = (current.sender, current.topic.clone());
            undo_stream = Some((key.clone(), next.streams.insert(key, current.sequence_number + 1)));
        }
        let mut forgotten_clients = Vec::new();
        let mut forgotten_streams = Vec::new();
        for key in &call.forget {
            if let Some(record) = next.clients.remove(key) {
                forgotten_clients.push((*key, record));
            }
            let streams: Vec<_> = next.streams.keys().filter(|(k, _)| k == key).cloned().collect();
            for stream in streams {
                if let Some(value) = next.streams.remove(&stream) {
                    forgotten_streams.push((stream, value));
                }
            }
        }
        let first_new = state.durable.next_self_mail;
        for (i, hash) in call.self_mail_posted.iter().enumerate() {
            next.live_self_mail.insert(first_new + i as u64, *hash);
        }
        let mut removed_self_mail = Vec::new();
        for number in &call.self_mail_deleted {
            if let Some(hash) = next.live_self_mail.remove(number) {
                removed_self_mail.push((*number, hash));
            }
        }
        let sealed = state.sealer.seal(state.sealing_policy, &encode_state(&next, &state.map), STATE_AAD, &mut OsRng);
        let blob = match sealed {
            Ok(blob) => blob,
            Err(error) => {
                // Put the current state back as it was.
                next.clients.extend(forgotten_clients);
                next.streams.extend(forgotten_streams);
                for (i, _) in call.self_mail_posted.iter().enumerate() {
                    next.live_self_mail.remove(&(first_new + i as u64));
                }
                next.live_self_mail.extend(removed_self_mail);
                if let Some((key, old)) = undo_stream {
                    match old {
                        Some(old) => next.streams.insert(key, old),
                        None => next.streams.remove(&key),
                    };
                }
                for (key, old) in undo_clients {
                    match old {
                        Some(old) => next.clients.insert(key, old),
                        None => next.clients.remove(&key),
                    };
                }
                state.durable.clients = next.clients;
                state.durable.streams = next.streams;
                state.durable.runs = next.runs;
                state.durable.live_self_mail = next.live_self_mail;
                return Err(error.into());
            }
        };
        commands.push(HostCommand::StoreSealedState { blob, counter: new.counter, state_id: new.id, nonce });
        state.protocol_size = next.protocol_size();
        state.durable = next;
        state.map.end_call(true);
        Ok(commands)
    }
}

/// A mail-to-self handed back and checked: (host id, number, topic, body).
type HandedBack = (u64, u64, String, Vec<u8>);

/// Checks the mail-to-self the host handed back against the sealed state:
/// exactly the live ones, in the order they were posted, each the very blob
/// that was sealed. Returns (host id, number, topic, body) in order.
fn check_self_mail(
    sealer: &Sealer,
    policy: SealingPolicy,
    durable: &DurableState,
    self_mail: &[(u64, Vec<u8>)],
) -> Result<Vec<HandedBack>, EnclaveError> {
    let mut previous: Option<u64> = None;
    let mut out = Vec::with_capacity(self_mail.len());
    for (id, blob) in self_mail {
        let plain = sealer.unseal(blob, SELF_MAIL_AAD)?;
        refuse_other_policy(plain.policy, policy)?;
        let (number, topic, body) = decode_self_mail(&plain.plaintext)?;
        if previous.is_some_and(|p| number <= p) {
            return Err(EnclaveError::Persistence(format!(
                "mail to self out of order: number {number} after {}",
                previous.unwrap_or_default()
            )));
        }
        match durable.live_self_mail.get(&number) {
            None => {
                return Err(EnclaveError::Persistence(format!(
                    "mail to self number {number} was deleted or never sealed: the host handed back a stale copy \
                     or an older sealed state"
                )));
            }
            Some(hash) if *hash != <[u8; 32]>::from(Sha256::digest(blob)) => {
                return Err(EnclaveError::Persistence(format!(
                    "mail to self number {number} is not the one this state sealed: the host replaced it"
                )));
            }
            Some(_) => {}
        }
        previous = Some(number);
        out.push((*id, number, topic, body));
    }
    if let Some(missing) = durable.live_self_mail.keys().find(|n| !out.iter().any(|(_, number, ..)| number == *n)) {
        return Err(EnclaveError::Persistence(format!(
            "mail to self number {missing} is missing: the host did not hand it back"
        )));
    }
    Ok(out)
}
