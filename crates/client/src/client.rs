//! EnclaveClient.

use std::{
    collections::HashMap,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use conclave_core::{
    ConstraintError, EnclaveConstraint, EnclaveInstanceInfo, InfoError, MailError, MailRelay, PaddingPolicy,
    PostOffice, PublicKey, RelayError, StateFrame, VerifiedEnclaveInfo, decrypt_mail,
};
use rand_core::OsRng;

use crate::state::{ClientState, EnclaveRun};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The relay (host) refused, failed, or could not be reached.
    #[error("{}", relay_text(.0))]
    Relay(#[from] RelayError),
    /// The attestation could not be decoded.
    #[error("attestation from the host is unreadable: {0}")]
    Attestation(#[from] InfoError),
    /// The enclave does not satisfy the constraint (or its evidence is invalid).
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// A mail could not be built, or a reply failed its checks.
    #[error("mail error: {0}")]
    Mail(#[from] MailError),
    /// The host returned a reply this client already received.
    #[error("replayed reply on topic {topic:?}: sequence number {sequence_number} was already received")]
    ReplayedReply {
        /// The reply's topic.
        topic: String,
        /// Its sequence number.
        sequence_number: u64,
    },
    /// A reply came from an older enclave state than one this client was
    /// already shown: the host rolled the enclave's sealed state back.
    #[error(
        "rollback detected: a run of the enclave started from state {received} although this client was already \
         shown state {last_seen}; the host restored an older sealed state"
    )]
    Rollback {
        /// The highest state counter seen before.
        last_seen: u64,
        /// The counter in this reply.
        received: u64,
    },
    /// One run of the enclave reported two different starting states: an enclave bug.
    #[error("the enclave's replies disagree about the state it started from (this is a bug in the enclave runtime)")]
    InconsistentState,
    /// A reply did not start with a state frame.
    #[error("reply from the enclave has no state frame: the enclave does not speak this protocol version")]
    MissingStateFrame,
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

/// A decrypted reply from the enclave.
#[derive(Clone, PartialEq, Eq)]
pub struct EnclaveReply {
    /// The reply's topic.
    pub topic: String,
    /// The reply's sequence number (within the enclave's replies to this client on that topic).
    pub sequence_number: u64,
    /// The decrypted body.
    pub body: Vec<u8>,
    /// Which enclave state produced the reply.
    pub state: StateFrame,
}

impl core::fmt::Debug for EnclaveReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveReply")
            .field("topic", &self.topic)
            .field("sequence_number", &self.sequence_number)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Talks to one enclave through an untrusted relay.
pub struct EnclaveClient<R: MailRelay> {
    relay: R,
    constraint: EnclaveConstraint,
    state: ClientState,
    verified: Option<VerifiedEnclaveInfo>,
    /// Padding of outgoing mail, per topic (policies keep history).
    padding: HashMap<String, PaddingPolicy>,
    default_padding: PaddingPolicy,
}

impl<R: MailRelay> core::fmt::Debug for EnclaveClient<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnclaveClient").field("state", &self.state).finish_non_exhaustive()
    }
}

fn relay_text(error: &RelayError) -> String {
    if error.code == UNREACHABLE {
        format!("cannot reach the host ({}): is `conclave host` running at that address?", error.message)
    } else {
        format!("host refused: {error}")
    }
}

/// How many runs of the enclave a client remembers (and accepts replies from).
const MAX_RUNS: usize = 16;

/// Codes after which the enclave may have restarted with new keys.
const RESTART_CODES: [&str; 3] = ["ENCLAVE_FAILED", "ENCLAVE_UNAVAILABLE", "MAIL_INVALID"];

/// Codes that mean the mail never reached the enclave, so its sequence
/// number was not used and the next mail may carry it.
const NOT_DELIVERED_CODES: [&str; 6] = [
    "BUSY",
    "PAYLOAD_TOO_LARGE",
    "BAD_REQUEST",
    "MISSING_CORRELATION_ID",
    "INVALID_CORRELATION_ID",
    "REPLY_QUEUE_FULL",
];

/// The code of a transport failure: the mail may or may not have arrived.
const UNREACHABLE: &str = "UNREACHABLE";

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl<R: MailRelay> EnclaveClient<R> {
    /// A client with a fresh key that will accept enclaves satisfying `constraint`.
    pub fn new(relay: R, constraint: EnclaveConstraint) -> Self {
        let state = ClientState::generate(&constraint);
        Self {
            relay,
            constraint,
            state,
            verified: None,
            padding: HashMap::new(),
            default_padding: PaddingPolicy::default(),
        }
    }

    /// A client continuing from saved state.
    pub fn restore(relay: R, state: ClientState) -> Result<Self, ClientError> {
        let state = ClientState::from_bytes(&state.to_bytes())?;
        let constraint = EnclaveConstraint::parse(&state.constraint)?;
        Ok(Self {
            relay,
            constraint,
            state,
            verified: None,
            padding: HashMap::new(),
            default_padding: PaddingPolicy::default(),
        })
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

    /// The state to save.
    pub fn save(&self) -> ClientState {
        self.state.clone()
    }

    /// Writes the state to `path` atomically (write, sync, rename), readable only by its owner.
    pub fn save_to_file(&self, path: &Path) -> Result<(), ClientError> {
        use std::io::Write;
        let io = |action, error| ClientError::Io { action, path: path.display().to_string(), error };
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io("create", e))?;
        file.write_all(&self.state.to_bytes()).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("replace", e))
    }

    /// Sets how outgoing mail is padded (default: to the largest body sent
    /// so far on its topic). A fixed minimum hides body lengths from the host.
    pub fn set_padding(&mut self, policy: PaddingPolicy) {
        self.padding.clear();
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

    /// Fetches the attestation and checks it against the constraint.
    ///
    /// If the enclave's key changed, it restarted. An enclave that keeps
    /// sealed state remembers the sequence numbers it sealed, so the client
    /// keeps numbering where it left off; one that has never sealed anything
    /// starts its streams at 0 again, and so does the client.
    pub fn start(&mut self) -> Result<&VerifiedEnclaveInfo, ClientError> {
        let info = EnclaveInstanceInfo::decode(&self.relay.attestation()?)?;
        let verified = self.constraint.check(&info, now_unix())?;
        let key = verified.encryption_key.to_hex();
        if self.state.enclave_key.as_deref() != Some(key.as_str()) {
            let stateful = self.state.enclave_runs.iter().any(|r| r.highest.unwrap_or(0) > 0);
            if !stateful {
                self.state.next_sequence_numbers.clear();
            }
            self.state.enclave_key = Some(key.clone());
            if !self.state.enclave_runs.iter().any(|r| r.key == key) {
                self.state.enclave_runs.push(EnclaveRun { key, start: None, highest: None });
                let excess = self.state.enclave_runs.len().saturating_sub(MAX_RUNS);
                self.state.enclave_runs.drain(..excess);
            }
        }
        Ok(self.verified.insert(verified))
    }

    fn enclave_key(&self) -> Result<PublicKey, ClientError> {
        match &self.verified {
            Some(v) => Ok(v.encryption_key),
            None => Err(ClientError::NotStarted),
        }
    }

    /// Encrypts `body` as the next mail on `topic` and delivers it. Returns
    /// the enclave's first reply to it, if the enclave replied at once.
    ///
    /// If the host says the enclave failed or could not read the mail, the
    /// client attests again; if the enclave has restarted (new keys), it sends
    /// the mail once more under the same sequence number. Should the first
    /// attempt in fact have been processed and sealed, the enclave refuses the
    /// second as a replay and this returns `Ok(None)`: its reply is in the
    /// host's queue (see [`Self::poll_mail`]). A mail is never processed twice.
    pub fn send_mail(&mut self, topic: &str, body: &[u8]) -> Result<Option<EnclaveReply>, ClientError> {
        let number = self.state.next_sequence_numbers.get(topic).copied().unwrap_or(0);
        match self.send_numbered(topic, body, number) {
            Err(ClientError::Relay(error)) if RESTART_CODES.contains(&error.code.as_str()) => {
                let before = self.enclave_key()?;
                let numbers_before = self.state.next_sequence_numbers.clone();
                self.start()?;
                if self.enclave_key()? == before {
                    return Err(ClientError::Relay(error));
                }
                // A stateless enclave restarted from scratch: numbering started over.
                let number = if self.state.next_sequence_numbers == numbers_before { number } else { 0 };
                match self.send_numbered(topic, body, number) {
                    Err(ClientError::Relay(e)) if e.code == "SEQUENCE_REPLAYED" => Ok(None),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Delivers again, byte for byte, a mail whose fate is unknown (the
    /// connection failed mid-delivery). The enclave either processes it now
    /// or refuses it as a replay because it already did; either way its reply
    /// is in the host's queue for [`Self::poll_mail`].
    fn settle_unsent(&mut self, topic: &str) -> Result<(), ClientError> {
        let Some(mail) = self.state.unsent.get(topic).and_then(|m| hex::decode(m).ok()) else {
            self.state.unsent.remove(topic);
            return Ok(());
        };
        let id = self.state.correlation_id.clone();
        match self.relay.deliver(&id, &mail) {
            Ok(_) => {}
            Err(e) if e.code == "SEQUENCE_REPLAYED" || e.code == "MAIL_INVALID" => {}
            Err(e) => return Err(e.into()),
        }
        self.state.unsent.remove(topic);
        Ok(())
    }

    fn send_numbered(&mut self, topic: &str, body: &[u8], number: u64) -> Result<Option<EnclaveReply>, ClientError> {
        self.settle_unsent(topic)?;
        let enclave_key = self.enclave_key()?;
        let mut post_office = PostOffice::resume(self.state.private_key()?, enclave_key, topic, number)?;
        let padding = self.padding.get(topic).unwrap_or(&self.default_padding).clone();
        post_office.set_padding(padding);
        let mail = post_office.encrypt_mail(body, &mut OsRng)?;
        self.padding.insert(topic.to_owned(), post_office.padding().clone());
        // The number is spent once the mail may have reached the enclave.
        let next = self.state.next_sequence_numbers.get(topic).copied().unwrap_or(0).max(number + 1);
        self.state.next_sequence_numbers.insert(topic.to_owned(), next);
        let id = self.state.correlation_id.clone();
        let delivered = match self.relay.deliver(&id, &mail) {
            Ok(delivered) => delivered,
            Err(error) => {
                // It provably never got there: the next mail may use the number.
                if NOT_DELIVERED_CODES.contains(&error.code.as_str()) && next == number + 1 {
                    self.state.next_sequence_numbers.insert(topic.to_owned(), number);
                }
                // It may or may not have: keep it, and deliver it again before the next mail.
                if error.code == UNREACHABLE {
                    self.state.unsent.insert(topic.to_owned(), hex::encode(&mail));
                }
                return Err(error.into());
            }
        };
        let Some(queued) = delivered else { return Ok(None) };
        let reply = self.open_reply(&queued.bytes);
        // The reply also waits in the host's queue; it is handled now, so let the host drop it.
        if reply.is_ok() || matches!(reply, Err(ClientError::ReplayedReply { .. })) {
            self.relay.acknowledge(&id, &[queued.id])?;
        }
        reply.map(Some)
    }

    /// Fetches queued replies, checks and decrypts them, then acknowledges
    /// them so the host deletes them.
    pub fn poll_mail(&mut self) -> Result<Vec<EnclaveReply>, ClientError> {
        let id = self.state.correlation_id.clone();
        let queued = self.relay.poll(&id)?;
        let mut replies = Vec::with_capacity(queued.len());
        let mut ids = Vec::with_capacity(queued.len());
        let mut failure = None;
        for mail in queued {
            match self.open_reply(&mail.bytes) {
                Ok(reply) => replies.push(reply),
                // A replayed reply is dropped from the queue but not shown.
                Err(ClientError::ReplayedReply { .. }) => {}
                // Stop at the first bad reply; it stays queued for inspection.
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            ids.push(mail.id);
        }
        if !ids.is_empty() {
            self.relay.acknowledge(&id, &ids)?;
        }
        match failure {
            // The good replies before it are acknowledged: hand them over first.
            Some(e) if replies.is_empty() => Err(e),
            _ => Ok(replies),
        }
    }

    fn open_reply(&mut self, bytes: &[u8]) -> Result<EnclaveReply, ClientError> {
        let enclave_key = self.enclave_key()?;
        let mail = decrypt_mail(&self.state.private_key()?, bytes)?;
        let sender = mail.sender.to_hex();
        let Some(run) = self.state.enclave_runs.iter().position(|r| r.key == sender) else {
            return Err(MailError::UnexpectedSender { expected: enclave_key, actual: mail.sender }.into());
        };
        let topic = mail.header.topic().to_owned();
        let sequence_number = mail.header.sequence_number();
        let stream = format!("{sender}/{topic}");
        if self.state.seen_replies.get(&stream).is_some_and(|seen| seen.contains(sequence_number)) {
            return Err(ClientError::ReplayedReply { topic, sequence_number });
        }
        let (frame, body) = StateFrame::unwrap(&mail.body).ok_or(ClientError::MissingStateFrame)?;
        self.check_state(run, &frame)?;
        self.state.seen_replies.entry(stream).or_default().insert(sequence_number);
        Ok(EnclaveReply { topic, sequence_number, body: body.to_vec(), state: frame })
    }

    /// Checks a reply's state frame against every run of the enclave this
    /// client has seen, then records it.
    ///
    /// An honest host starts each run from the latest committed state, and a
    /// reply reaches a client only once its state is committed. So of two
    /// runs, the one that started from the lower counter never shows a
    /// counter above the other's start. If it did, the other run started from
    /// an older state than one already committed: the host rolled the
    /// enclave back (or ran two copies at once). Replies of one run may
    /// arrive in any order; only runs are compared.
    fn check_state(&mut self, run: usize, frame: &StateFrame) -> Result<(), ClientError> {
        let current = &self.state.enclave_runs[run];
        if current.start.is_some_and(|s| s != frame.instance_start) || frame.counter < frame.instance_start {
            return Err(ClientError::InconsistentState);
        }
        let start = frame.instance_start;
        let highest = current.highest.map_or(frame.counter, |h| h.max(frame.counter));
        for (i, other) in self.state.enclave_runs.iter().enumerate() {
            let (Some(other_start), Some(other_highest)) = (other.start, other.highest) else { continue };
            if i == run {
                continue;
            }
            if other_start <= start && other_highest > start {
                return Err(ClientError::Rollback { last_seen: other_highest, received: start });
            }
            if start <= other_start && highest > other_start {
                return Err(ClientError::Rollback { last_seen: highest, received: other_start });
            }
        }
        let current = &mut self.state.enclave_runs[run];
        current.start = Some(start);
        current.highest = Some(highest);
        Ok(())
    }
}
