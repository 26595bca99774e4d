//! EnclaveClient: the client's rules, applied to whatever a relay hands it.
//!
//! Nothing a relay says is trusted. A mail is kept (byte for byte, with its
//! body so it can be encrypted again for a restarted enclave) until an
//! answer from the enclave itself settles it: its reply, a receipt, the
//! application's refusal, or an authenticated rejection. Every reply must
//! link into the client's reply chain in order; replies that arrive early
//! wait, missing ones are reported as withheld, and a reply that does not
//! link up is a fork.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use conclave_core::{
    ChainVerdict, ConstraintError, EnclaveConstraint, EnclaveInstanceInfo, InfoError, MailError, MailHeader, MailRelay,
    PaddingPolicy, PublicKey, QueuedMail, Rejection, RejectionDetail, RelayError, RequestFrame, ResponseFrame,
    ResponseKind, StateCheckpoint, VerifiedEnclaveInfo, decrypt_mail, encrypt_mail, mail::validate_topic,
};
use rand_core::{OsRng, RngCore};

use crate::state::{
    Attempt, ClientState, KnownRun, MAX_ATTEMPTS_KEPT, PendingMail, ReplyKind, StoredReply, decode, encode,
};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The relay (host) refused, failed, or could not be reached. Nothing a
    /// relay says is authenticated: a mail it failed stays pending.
    #[error("{}", relay_text(.0))]
    Relay(#[from] RelayError),
    /// The attestation could not be decoded.
    #[error("attestation from the host is unreadable: {0}")]
    Attestation(#[from] InfoError),
    /// The enclave does not satisfy the constraint (or its evidence is invalid).
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// A mail could not be built.
    #[error("mail error: {0}")]
    Mail(#[from] MailError),
    /// The mail is still unanswered after several deliveries; it is kept in
    /// the client's state and sent again (unchanged) by the next send or poll.
    #[error(
        "mail {sequence_number} on topic {topic:?} is not answered yet ({last}); it is kept and will be sent again \
         by the next send or poll"
    )]
    Unsettled {
        /// The mail's topic.
        topic: String,
        /// Its sequence number.
        sequence_number: u64,
        /// The last thing the relay said.
        last: RelayError,
    },
    /// The enclave (authenticated) says this client has verified replies its
    /// state does not know: the host started it from an older state.
    #[error(
        "rollback detected: this client has verified {client_index} replies from the enclave, but the enclave's \
         state knows of only {enclave_index}; the host restored an older state (or this client's state file was \
         replaced by a newer one)"
    )]
    Rollback {
        /// How many replies the enclave's state records.
        enclave_index: u64,
        /// How many this client has verified.
        client_index: u64,
    },
    /// The enclave's history and what this client was shown have split.
    #[error(
        "fork detected: {0}; the host is running the enclave from another copy of its state. Compare checkpoints \
         with the other parties before trusting any result"
    )]
    Fork(String),
    /// Replies the enclave sent this client did not arrive: the host withheld them.
    #[error(
        "reply {missing} from the enclave never arrived, although later ones did: the host withheld it (or \
         delivered it under another correlation id)"
    )]
    Withheld {
        /// The first missing position in the reply chain.
        missing: u64,
    },
    /// The enclave's application refused the mail (authenticated); its number is used up.
    #[error("the enclave refused mail {sequence_number} on topic {topic:?}: {message}")]
    Refused {
        /// The mail's topic.
        topic: String,
        /// Its sequence number.
        sequence_number: u64,
        /// The application's message.
        message: String,
    },
    /// The enclave rejected the mail before reading it (authenticated), for
    /// a reason that is not a rollback or fork. The mail stays pending.
    #[error("the enclave rejected mail {received} on topic {topic:?}: {}", rejection_text(*.rejection, .detail))]
    Rejected {
        /// The mail's topic.
        topic: String,
        /// Its sequence number.
        received: u64,
        /// Why.
        rejection: Rejection,
        /// The enclave's numbers.
        detail: RejectionDetail,
    },
    /// The enclave (authenticated) has already processed this mail number,
    /// yet this client has no answer for it among the replies the enclave
    /// says it sent.
    #[error(
        "the enclave has already processed mail {sequence_number} on topic {topic:?}, but this client has no \
         answer for it: this client's state file is out of date (restored from a backup?), or the host is \
         showing it another copy of the enclave"
    )]
    AlreadyProcessed {
        /// The topic.
        topic: String,
        /// The number.
        sequence_number: u64,
    },
    /// The enclave answered a mail this client never sent.
    #[error(
        "the enclave answered mail {sequence_number} on topic {topic:?}, which this client never sent; this \
         client's state file is older than its conversation (restored from a backup?)"
    )]
    UnexpectedAnswer {
        /// The topic.
        topic: String,
        /// The number.
        sequence_number: u64,
    },
    /// A reply from the enclave is malformed or inconsistent.
    #[error("a reply from the enclave is invalid: {0}")]
    BadReply(String),
    /// The client was used before `start`.
    #[error("client is not started: call start first")]
    NotStarted,
    /// Saved state is unreadable or inconsistent.
    #[error("client state is invalid: {0}")]
    BadState(String),
    /// Reading or writing the state file failed.
    #[error("cannot {action} client state file {path}: {error}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        error: std::io::Error,
    },
}

fn relay_text(error: &RelayError) -> String {
    if error.code == UNREACHABLE {
        format!("cannot reach the host ({}): is `conclave host` running at that address?", error.message)
    } else {
        format!("host refused: {error}")
    }
}

fn rejection_text(rejection: Rejection, detail: &RejectionDetail) -> String {
    match rejection {
        Rejection::Gap | Rejection::Reordered => format!(
            "{}: it expects sequence number {} but this mail is {}; this client has no record of the mail in \
             between (was its state file restored from a backup?)",
            rejection.code(),
            detail.expected,
            detail.received
        ),
        Rejection::StateFull => "STATE_FULL: the enclave's state is full; try again later".to_owned(),
        Rejection::BadRequest => "BAD_REQUEST: the enclave could not read this client's request".to_owned(),
        other => other.code().to_owned(),
    }
}

/// A decrypted, verified reply from the enclave.
#[derive(Clone, PartialEq, Eq)]
pub struct EnclaveReply {
    /// The reply's topic.
    pub topic: String,
    /// Its position in this client's reply chain (also its header's sequence number).
    pub sequence_number: u64,
    /// The decrypted body.
    pub body: Vec<u8>,
    /// The state that produced it.
    pub state: StateCheckpoint,
    /// The sequence number of the mail it answers, on `topic`, if it answers one.
    pub answers: Option<u64>,
    /// A reply, or the application's refusal of a mail (its body is then the message).
    pub kind: ReplyKind,
}

impl core::fmt::Debug for EnclaveReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveReply")
            .field("topic", &self.topic)
            .field("sequence_number", &self.sequence_number)
            .field("body_len", &self.body.len())
            .field("state", &self.state)
            .field("answers", &self.answers)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The code of a transport failure: the mail may or may not have arrived.
const UNREACHABLE: &str = "UNREACHABLE";

/// How many times one call delivers a pending mail before it gives up (the
/// mail stays pending).
const DELIVERIES: u32 = 4;

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// How a pending mail was settled, when it was.
enum Settlement {
    Reply(EnclaveReply),
    Receipt,
    Refused { sequence_number: u64, message: String },
}

/// Talks to one enclave through an untrusted relay.
pub struct EnclaveClient<R: MailRelay> {
    relay: R,
    constraint: EnclaveConstraint,
    state: ClientState,
    verified: Option<VerifiedEnclaveInfo>,
    default_padding: PaddingPolicy,
    /// Where to save the state before every delivery and after every change.
    autosave: Option<PathBuf>,
    /// The topic whose pending mail the current operation waits for: its
    /// settlement goes to `settled`; answers to other topics' mail go to the inbox.
    target: Option<String>,
    /// The settlement of the target's mail, once it came.
    settled: HashMap<String, Settlement>,
    /// The first error the last batch of replies raised.
    failure: Option<ClientError>,
    /// The most in-chain replies an authenticated rejection said the enclave
    /// sent this client: if fewer arrive, the host withheld the rest.
    announced: u64,
    /// Queued mail dropped because it did not decrypt or came from no
    /// attested run (in this process's life).
    dropped: u64,
}

impl<R: MailRelay> core::fmt::Debug for EnclaveClient<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveClient").field("state", &self.state).finish_non_exhaustive()
    }
}

impl<R: MailRelay> EnclaveClient<R> {
    /// A client with a fresh key that will accept enclaves satisfying `constraint`.
    pub fn new(relay: R, constraint: EnclaveConstraint) -> Self {
        let state = ClientState::generate(&constraint);
        Self::with_state(relay, constraint, state)
    }

    fn with_state(relay: R, constraint: EnclaveConstraint, state: ClientState) -> Self {
        Self {
            relay,
            constraint,
            state,
            verified: None,
            default_padding: PaddingPolicy::default(),
            autosave: None,
            target: None,
            settled: HashMap::new(),
            failure: None,
            announced: 0,
            dropped: 0,
        }
    }

    /// How many queued mails this client dropped because they did not
    /// decrypt for it or came from no attested run of the enclave. A real
    /// reply lost this way also shows up as a gap in the reply chain.
    pub fn dropped_mail(&self) -> u64 {
        self.dropped
    }

    /// A client continuing from saved state.
    pub fn restore(relay: R, state: ClientState) -> Result<Self, ClientError> {
        let state = ClientState::from_bytes(&state.to_bytes())?;
        let constraint = EnclaveConstraint::parse(&state.constraint)?;
        Ok(Self::with_state(relay, constraint, state))
    }

    /// A client continuing from a state file written by [`Self::save_to_file`].
    pub fn restore_from_file(relay: R, path: &Path) -> Result<Self, ClientError> {
        let bytes = std::fs::read(path).map_err(|error| ClientError::Io {
            action: "read",
            path: path.display().to_string(),
            error,
        })?;
        Self::restore(relay, ClientState::from_bytes(&bytes)?)
    }

    /// Saves the state to `path` before every delivery and after every
    /// accepted reply, before it is acknowledged: so a crash of the client
    /// loses no mail and no reply. Recommended for every real client.
    pub fn autosave_to(&mut self, path: &Path) -> Result<(), ClientError> {
        self.autosave = Some(path.to_owned());
        self.save_to_file(path)
    }

    /// The state to save.
    pub fn save(&self) -> ClientState {
        self.state.clone()
    }

    /// Writes the state to `path` atomically (write a new file, sync,
    /// rename), readable only by its owner.
    pub fn save_to_file(&self, path: &Path) -> Result<(), ClientError> {
        use std::io::Write;
        let io = |action, error| ClientError::Io { action, path: path.display().to_string(), error };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // A leftover from a crash mid-save (or anything else put there) goes:
        // removing a symbolic link removes the link, never its target.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove the stale", e)),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        // create_new: refuses to open anything that already exists, links included.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io("create", e))?;
        file.write_all(&self.state.to_bytes()).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("replace", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            // Make the rename itself durable.
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn persist(&self) -> Result<(), ClientError> {
        match &self.autosave {
            Some(path) => self.save_to_file(path),
            None => Ok(()),
        }
    }

    /// Sets how outgoing mail is padded on topics that have no policy yet
    /// (default: to the largest body sent so far on the topic). A fixed
    /// minimum hides body lengths from the host.
    pub fn set_padding(&mut self, policy: PaddingPolicy) {
        self.state.padding.clear();
        self.default_padding = policy;
    }

    /// The relay, for transport-level calls.
    pub fn relay_mut(&mut self) -> &mut R {
        &mut self.relay
    }

    /// The constraint this client checks.
    pub fn constraint(&self) -> &EnclaveConstraint {
        &self.constraint
    }

    /// The verified attestation, once started.
    pub fn enclave_info(&self) -> Option<&VerifiedEnclaveInfo> {
        self.verified.as_ref()
    }

    /// This client's public key: what the enclave sees as the sender.
    pub fn public_key(&self) -> Result<PublicKey, ClientError> {
        Ok(self.state.private_key()?.public_key())
    }

    /// The latest state of the enclave this client has verified, as a
    /// printable checkpoint (`counter:id`). Parties compare theirs to find
    /// out whether the host showed them the same history.
    pub fn checkpoint(&self) -> StateCheckpoint {
        self.state.chain.state
    }

    /// The topics with a mail still waiting for an answer.
    pub fn pending_topics(&self) -> Vec<String> {
        self.state.pending.keys().cloned().collect()
    }

    /// The body of the mail still waiting for an answer on `topic`.
    pub fn pending_body(&self, topic: &str) -> Option<Vec<u8>> {
        self.state.pending.get(topic).and_then(|p| p.body().ok())
    }

    /// Fetches the attestation and checks it against the constraint. A new
    /// run of the enclave (a restart gives new keys) is remembered: its
    /// replies are accepted from now on, and its start checkpoint is reported
    /// in every mail until a reply confirms the enclave's history holds it.
    pub fn start(&mut self) -> Result<&VerifiedEnclaveInfo, ClientError> {
        let info = EnclaveInstanceInfo::decode(&self.relay.attestation()?)?;
        let verified = self.constraint.check(&info, now_unix())?;
        self.state.add_run(KnownRun {
            key: verified.encryption_key.to_hex(),
            checkpoint: verified.run,
            confirmed: false,
        });
        Ok(self.verified.insert(verified))
    }

    fn enclave_key(&self) -> Result<PublicKey, ClientError> {
        self.verified.as_ref().map(|v| v.encryption_key).ok_or(ClientError::NotStarted)
    }

    /// Encrypts `body` as the next mail on `topic`, delivers it, and returns
    /// the enclave's reply to it (`None` if the enclave processed it without
    /// replying). A mail still pending on the topic is settled first.
    ///
    /// The mail is kept until the enclave itself answers it. If the host
    /// fails, is unreachable, or claims anything, the client delivers it
    /// again (the same bytes, or the same number and body for a restarted
    /// enclave), so it is processed exactly once; if it still has no answer,
    /// this returns [`ClientError::Unsettled`] and the next send or poll goes on.
    pub fn send_mail(&mut self, topic: &str, body: &[u8]) -> Result<Option<EnclaveReply>, ClientError> {
        validate_topic(topic)?;
        self.enclave_key()?;
        if self.state.pending.contains_key(topic) {
            match self.settle(topic) {
                Ok(reply) => {
                    if let Some(reply) = reply {
                        self.stash(reply);
                    }
                }
                Err(ClientError::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let number = self.state.next_sequence_numbers.get(topic).copied().unwrap_or(0);
        self.state.next_sequence_numbers.insert(topic.to_owned(), number + 1);
        let pending =
            PendingMail { sequence_number: number, body: encode(body), attempts: Vec::new(), processed: false };
        self.state.pending.insert(topic.to_owned(), pending);
        self.settle(topic)
    }

    /// Delivers again the mail pending on `topic` until it is answered.
    pub fn resend_pending(&mut self, topic: &str) -> Result<Option<EnclaveReply>, ClientError> {
        if !self.state.pending.contains_key(topic) {
            return Ok(None);
        }
        self.settle(topic)
    }

    /// Puts an answer the caller did not ask for into the inbox.
    fn stash(&mut self, reply: EnclaveReply) {
        self.state.inbox.push(StoredReply {
            topic: reply.topic,
            index: reply.sequence_number,
            body: encode(&reply.body),
            state: reply.state,
            answers: reply.answers,
            kind: reply.kind,
        });
    }

    /// Delivers the pending mail of `topic` until an authenticated answer settles it.
    fn settle(&mut self, topic: &str) -> Result<Option<EnclaveReply>, ClientError> {
        self.target = Some(topic.to_owned());
        self.settled.clear();
        let result = self.settle_target(topic);
        self.target = None;
        self.settled.clear();
        result
    }

    fn settle_target(&mut self, topic: &str) -> Result<Option<EnclaveReply>, ClientError> {
        let mut last = RelayError::new("NOT_SENT", "not delivered yet");
        for delivery in 0..DELIVERIES {
            if delivery > 0 {
                std::thread::sleep(Duration::from_millis(25 << delivery));
                // The host may have restarted the enclave: find out before encrypting again.
                match self.start() {
                    Ok(_) | Err(ClientError::Relay(_)) => {}
                    Err(e) => return Err(e),
                }
                // The answer may be waiting in the queue already.
                self.fetch()?;
                if let Some(done) = self.take_settlement(topic)? {
                    return Ok(done);
                }
            }
            let processed = self.state.pending.get(topic).is_some_and(|p| p.processed);
            if processed {
                // The enclave said it processed the mail: its answer is in the chain.
                self.fetch()?;
                if let Some(done) = self.take_settlement(topic)? {
                    return Ok(done);
                }
                last = RelayError::new("ANSWER_MISSING", "the enclave processed the mail; its answer is not queued");
                continue;
            }
            let mail = self.attempt_bytes(topic)?;
            self.persist()?;
            let id = self.state.correlation_id.clone();
            match self.relay.deliver(&id, &mail) {
                Ok(direct) => {
                    self.process(direct.into_iter().collect(), false)?;
                    if self.take_settled_ready(topic) {
                        return self.take_settlement(topic).map(Option::flatten);
                    }
                    // The answer may sit behind replies still in the queue.
                    self.fetch()?;
                    if let Some(done) = self.take_settlement(topic)? {
                        return Ok(done);
                    }
                    last = RelayError::new("NO_ANSWER", "the host returned no answer to the mail");
                }
                Err(error) if error.code == UNREACHABLE => {
                    let number = self.state.pending.get(topic).map_or(0, |p| p.sequence_number);
                    self.persist()?;
                    return Err(ClientError::Unsettled {
                        topic: topic.to_owned(),
                        sequence_number: number,
                        last: error,
                    });
                }
                Err(error) => last = error,
            }
        }
        let number = self.state.pending.get(topic).map_or(0, |p| p.sequence_number);
        self.persist()?;
        Err(ClientError::Unsettled { topic: topic.to_owned(), sequence_number: number, last })
    }

    fn take_settled_ready(&self, topic: &str) -> bool {
        self.settled.contains_key(topic) || self.failure.is_some()
    }

    /// The settlement of `topic`'s mail, if it came: `Some(reply or None)`,
    /// or the error the batch raised.
    fn take_settlement(&mut self, topic: &str) -> Result<Option<Option<EnclaveReply>>, ClientError> {
        if let Some(error) = self.failure.take() {
            return Err(error);
        }
        match self.settled.remove(topic) {
            None => Ok(None),
            Some(Settlement::Reply(reply)) => Ok(Some(Some(reply))),
            Some(Settlement::Receipt) => Ok(Some(None)),
            Some(Settlement::Refused { sequence_number, message }) => {
                Err(ClientError::Refused { topic: topic.to_owned(), sequence_number, message })
            }
        }
    }

    /// The bytes to deliver for `topic`'s pending mail: the last attempt's,
    /// if it was encrypted to the run the client is talking to now; else a
    /// new encryption, with the same number and body.
    fn attempt_bytes(&mut self, topic: &str) -> Result<Vec<u8>, ClientError> {
        let enclave_key = self.enclave_key()?;
        let key_hex = enclave_key.to_hex();
        let pending = self.state.pending.get(topic).ok_or_else(|| ClientError::BadState("no pending mail".into()))?;
        if let Some(last) = pending.attempts.last()
            && last.key == key_hex
            && let Some(mail) = &last.mail
        {
            return decode(mail);
        }
        let body = pending.body()?;
        let number = pending.sequence_number;
        let mut request_id = [0u8; 16];
        OsRng.fill_bytes(&mut request_id);
        let runs = self.state.unconfirmed_runs();
        let frame = RequestFrame { request_id, chain: self.state.chain.head, runs: runs.clone() };
        let framed = frame.wrap(&body);
        let padding = self.state.padding.entry(topic.to_owned()).or_insert_with(|| self.default_padding.clone());
        let min_size = padding.min_size_for(framed.len());
        let header = MailHeader::new(topic, number)?;
        let mail = encrypt_mail(&self.state.private_key()?, &enclave_key, &header, &framed, min_size, &mut OsRng)?;
        let pending =
            self.state.pending.get_mut(topic).ok_or_else(|| ClientError::BadState("no pending mail".into()))?;
        for attempt in &mut pending.attempts {
            attempt.mail = None;
        }
        pending.attempts.push(Attempt {
            key: key_hex,
            request_id: hex::encode(request_id),
            runs,
            mail: Some(encode(&mail)),
        });
        let excess = pending.attempts.len().saturating_sub(MAX_ATTEMPTS_KEPT);
        pending.attempts.drain(..excess);
        Ok(mail)
    }

    /// Fetches every queued reply (poll after poll while they come) and
    /// processes them; then, a reply the chain still misses was withheld.
    fn fetch(&mut self) -> Result<(), ClientError> {
        let id = self.state.correlation_id.clone();
        for _ in 0..FETCH_ROUNDS {
            let queued = match self.relay.poll(&id) {
                Ok(queued) => queued,
                // Nothing was ever delivered under this id: nothing to fetch.
                Err(e) if e.code == "UNKNOWN_CORRELATION_ID" => break,
                Err(e) => return Err(e.into()),
            };
            if queued.is_empty() || self.process(queued, true)? == 0 {
                break;
            }
        }
        if self.announced > self.state.chain.head.index {
            self.fail(ClientError::Withheld { missing: self.state.chain.head.index + 1 });
        }
        Ok(())
    }

    /// Fetches queued replies, checks and decrypts them, and returns the
    /// replies accepted so far that the application has not seen, oldest
    /// first. Mail still pending is delivered again first.
    pub fn poll_mail(&mut self) -> Result<Vec<EnclaveReply>, ClientError> {
        self.enclave_key()?;
        for topic in self.pending_topics() {
            match self.settle(topic.as_str()) {
                Ok(Some(reply)) => self.stash(reply),
                Ok(None) | Err(ClientError::Refused { .. }) => {}
                // Keep polling: the rest of the queue may still be readable.
                Err(ClientError::Unsettled { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.fetch()?;
        if let Some(error) = self.failure.take() {
            return Err(error);
        }
        let replies = core::mem::take(&mut self.state.inbox)
            .into_iter()
            .map(|r| {
                Ok(EnclaveReply {
                    topic: r.topic,
                    sequence_number: r.index,
                    body: decode(&r.body)?,
                    state: r.state,
                    answers: r.answers,
                    kind: r.kind,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        self.persist()?;
        Ok(replies)
    }

    /// Checks a batch of replies, accepts what links into the chain in order,
    /// saves, then acknowledges what was handled; returns how many. Errors
    /// are kept in `self.failure` for the caller; the batch is still
    /// processed. `whole_queue`: the batch is the head of the host's queue,
    /// so a reply missing before a later one was never queued.
    fn process(&mut self, queued: Vec<QueuedMail>, whole_queue: bool) -> Result<usize, ClientError> {
        let key = self.state.private_key()?;
        let mut in_chain = Vec::new();
        let mut handled = Vec::new();
        let mut reattested = false;
        for mail in queued {
            let Ok(opened) = decrypt_mail(&key, &mail.bytes) else {
                // Not for this client, or mangled by the host: drop it. A
                // real reply lost this way shows up as a gap in the chain.
                self.dropped += 1;
                handled.push(mail.id);
                continue;
            };
            if !self.state.knows_key(&opened.sender) && !reattested {
                // Perhaps a run this client has not attested yet.
                reattested = true;
                let _ = self.start();
            }
            if !self.state.knows_key(&opened.sender) {
                self.dropped += 1;
                handled.push(mail.id);
                continue;
            }
            let (frame, body) = match ResponseFrame::unwrap(&opened.body) {
                Ok((frame, body)) => (frame, body.to_vec()),
                Err(e) => {
                    self.fail(ClientError::BadReply(format!("its response frame is malformed: {e}")));
                    handled.push(mail.id);
                    continue;
                }
            };
            match frame.kind {
                ResponseKind::Rejected(rejection, detail) => {
                    self.rejection(&frame, rejection, detail);
                    handled.push(mail.id);
                }
                _ => in_chain.push((mail.id, frame, body, opened.header.topic().to_owned())),
            }
        }
        in_chain.sort_by_key(|(_, frame, ..)| frame.link.map_or(0, |l| l.index));
        let mut held = None;
        for (id, frame, body, topic) in in_chain {
            let Some(link) = frame.link else { continue };
            match self.state.chain.check(&link, &frame.state) {
                ChainVerdict::Next => {
                    self.state.chain.advance(&link, &frame.state);
                    self.accept(&topic, link.index, &frame, body)?;
                    handled.push(id);
                }
                ChainVerdict::Duplicate | ChainVerdict::Stale => handled.push(id),
                ChainVerdict::Held { missing } => {
                    held.get_or_insert(missing);
                }
                ChainVerdict::Fork { index } => {
                    self.fail(ClientError::Fork(format!(
                        "reply {index} does not link to the replies this client verified before it"
                    )));
                }
                ChainVerdict::Regressed { previous, received } => {
                    self.fail(ClientError::Fork(format!(
                        "a reply comes from state {received}, older than state {previous} of the reply before it"
                    )));
                }
            }
        }
        if let Some(missing) = held
            && whole_queue
            && missing <= self.state.chain.head.index + 1
        {
            // The queue is in commit order: a reply that sits before a later
            // one in the chain and is not there was never queued here.
            self.fail(ClientError::Withheld { missing });
        }
        // Save what was accepted before the host may delete it.
        self.persist()?;
        if !handled.is_empty() {
            let id = self.state.correlation_id.clone();
            // A lost acknowledgement only means the replies come again, as
            // duplicates, which the chain drops.
            let _ = self.relay.acknowledge(&id, &handled);
        }
        Ok(handled.len())
    }

    fn fail(&mut self, error: ClientError) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    /// Applies an in-chain reply that is next in the chain.
    fn accept(&mut self, topic: &str, index: u64, frame: &ResponseFrame, body: Vec<u8>) -> Result<(), ClientError> {
        let mut answers = None;
        if let Some(answer) = &frame.answers {
            if answer.topic != topic {
                self.fail(ClientError::BadReply("it answers a mail on another topic than its own".into()));
                return Ok(());
            }
            let next = self.state.next_sequence_numbers.get(topic).copied().unwrap_or(0);
            if answer.sequence_number >= next {
                self.fail(ClientError::UnexpectedAnswer {
                    topic: topic.to_owned(),
                    sequence_number: answer.sequence_number,
                });
                return Ok(());
            }
            answers = Some(answer.sequence_number);
            // The runs this attempt reported are in the enclave's history.
            let request = hex::encode(answer.request_id);
            let confirmed: Vec<StateCheckpoint> = self
                .state
                .pending
                .get(topic)
                .and_then(|p| p.attempts.iter().find(|a| a.request_id == request))
                .map(|a| a.runs.clone())
                .unwrap_or_default();
            for run in &mut self.state.runs {
                if confirmed.contains(&run.checkpoint) {
                    run.confirmed = true;
                }
            }
        }
        let settles = frame
            .answers
            .as_ref()
            .is_some_and(|a| self.state.pending.get(topic).is_some_and(|p| p.sequence_number == a.sequence_number));
        let kind = if frame.kind == ResponseKind::Refused { ReplyKind::Refused } else { ReplyKind::Reply };
        let reply =
            EnclaveReply { topic: topic.to_owned(), sequence_number: index, body, state: frame.state, answers, kind };
        if settles {
            self.state.pending.remove(topic);
        }
        if settles && self.target.as_deref() == Some(topic) {
            let settlement = match frame.kind {
                ResponseKind::Receipt => Settlement::Receipt,
                ResponseKind::Refused => Settlement::Refused {
                    sequence_number: reply.answers.unwrap_or_default(),
                    message: String::from_utf8_lossy(&reply.body).into_owned(),
                },
                _ => Settlement::Reply(reply),
            };
            self.settled.insert(topic.to_owned(), settlement);
            return Ok(());
        }
        match frame.kind {
            ResponseKind::Reply | ResponseKind::Refused => self.stash(reply),
            // A receipt for a mail already settled tells nothing new.
            _ => {}
        }
        Ok(())
    }

    /// Applies an authenticated rejection, if it is of a current attempt.
    fn rejection(&mut self, frame: &ResponseFrame, rejection: Rejection, detail: RejectionDetail) {
        let Some(answer) = &frame.answers else { return };
        let request = hex::encode(answer.request_id);
        let Some(pending) = self.state.pending.get_mut(&answer.topic) else { return };
        if pending.sequence_number != answer.sequence_number
            || !pending.attempts.iter().any(|a| a.request_id == request)
        {
            // An old rejection, of an attempt this client no longer has.
            return;
        }
        let topic = answer.topic.clone();
        match rejection {
            Rejection::Replayed => {
                // Processed before: the answer is in the reply chain.
                pending.processed = true;
                self.announced = self.announced.max(detail.chain_index);
                if detail.chain_index <= self.state.chain.head.index {
                    self.fail(ClientError::AlreadyProcessed { topic, sequence_number: answer.sequence_number });
                }
            }
            Rejection::Rollback => self.fail(ClientError::Rollback {
                enclave_index: detail.chain_index,
                client_index: self.state.chain.head.index,
            }),
            Rejection::Fork => self.fail(ClientError::Fork(format!(
                "the enclave's history does not contain what this client was shown (reply {} of {} it records, or a \
                 run this client attested)",
                self.state.chain.head.index, detail.chain_index
            ))),
            other => {
                self.fail(ClientError::Rejected { topic, received: answer.sequence_number, rejection: other, detail })
            }
        }
    }
}

/// How many polls one fetch makes at most (each acknowledges what it read).
const FETCH_ROUNDS: usize = 1000;
