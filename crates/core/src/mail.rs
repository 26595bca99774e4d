//! Mail: an authenticated clear header and a Noise-encrypted, packetised body.
//!
//! ```text
//!  sender                                              recipient
//!  MailHeader ──┐                                 ┌── MailHeader (checked)
//!  body ────────┼─ encrypt_mail ─► bytes ─► MailDecryptor ─► body bytes
//!  sender key ──┘   (Noise X, header = prologue)   └── authenticated sender key
//! ```
//!
//! Every mail is independent (no session): the first Noise message carries the
//! sender's static key, encrypted, so the recipient learns who sent it. The
//! header is the Noise prologue, so changing any header byte breaks the
//! handshake. The body travels as packets of at most 64 KiB, closed by an
//! empty terminator packet, so a truncated mail is always detected. The exact
//! layout is in `docs/wire-format.md`.

use core::fmt;

use rand_core::{CryptoRng, RngCore};
use snow::{
    Builder, HandshakeState, TransportState,
    params::NoiseParams,
    resolvers::{CryptoResolver, DefaultResolver, FallbackResolver},
    types::Random,
};

use crate::keys::{PrivateKey, PublicKey};

/// The Noise protocol every mail uses.
pub const NOISE_PROTOCOL: &str = "Noise_X_25519_AESGCM_SHA256";
/// The two bytes every mail starts with: `"CM"`.
pub const MAIL_MAGIC: [u8; 2] = *b"CM";
/// The wire-format version this crate writes and reads. Version 2 added
/// the request and response frames inside the body (`crate::frame`);
/// the envelope layout is unchanged from version 1.
pub const MAIL_VERSION: u8 = 2;
/// The longest Noise message, and so the longest packet on the wire (tag included).
pub const MAX_PACKET_LEN: usize = 65535;
/// The AES-GCM tag that ends every Noise message.
pub const TAG_LEN: usize = 16;
/// The most plaintext one packet carries.
pub const MAX_PACKET_PLAINTEXT: usize = MAX_PACKET_LEN - TAG_LEN;
/// Length of the v1 handshake message: ephemeral key, encrypted static key,
/// encrypted 8-byte body length.
pub const HANDSHAKE_LEN: usize = 32 + (32 + TAG_LEN) + (8 + TAG_LEN);
/// The longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// Why a mail could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The topic is empty, too long, or has a character other than letters, digits and '-'.
    #[error("invalid topic {topic:?}: use 1 to 255 characters of letters, digits and '-'")]
    InvalidTopic {
        /// The rejected topic.
        topic: String,
    },
    /// The envelope is longer than its 16-bit length field allows.
    #[error("envelope of {len} bytes is too long (at most 65535)")]
    EnvelopeTooLong {
        /// The envelope's length.
        len: usize,
    },
    /// The bytes do not start like a mail.
    #[error("not a mail: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The mail is of a wire-format version this code does not read.
    #[error("unsupported mail version {found} (this code reads version {supported})")]
    UnsupportedVersion {
        /// The version in the mail.
        found: u8,
        /// The version this code reads.
        supported: u8,
    },
    /// The input ended before the mail did: a packet was cut or the terminator is missing.
    #[error("mail is truncated: {reason}")]
    Truncated {
        /// Which part is missing.
        reason: &'static str,
    },
    /// The Noise handshake failed: the mail is for another key, or its header
    /// or key exchange was altered in transit.
    #[error("mail could not be decrypted: it is addressed to another key, or its header or handshake was altered")]
    HandshakeFailed,
    /// A body packet failed authentication: it was altered, dropped, or reordered.
    #[error("body packet {index} failed authentication: the mail was altered in transit")]
    PacketAuthentication {
        /// Zero-based index of the packet.
        index: u64,
    },
    /// Bytes follow the terminator packet.
    #[error("{count} unexpected bytes after the end of the mail")]
    TrailingBytes {
        /// How many bytes follow.
        count: usize,
    },
    /// The packets carry fewer bytes than the body length the sender declared.
    #[error("body is {actual} bytes but the sender declared {declared}")]
    BodyLengthMismatch {
        /// Declared body length.
        declared: u64,
        /// Bytes actually received.
        actual: u64,
    },
    /// The mail decrypted, but it was sent by another key than the one expected.
    #[error("mail is from {actual}, expected {expected}")]
    UnexpectedSender {
        /// The key the post office expected.
        expected: PublicKey,
        /// The authenticated sender key.
        actual: PublicKey,
    },
    /// The mail decrypted, but on another topic than the one expected.
    #[error("mail is on topic {actual:?}, expected {expected:?}")]
    UnexpectedTopic {
        /// The topic the post office expected.
        expected: String,
        /// The mail's topic.
        actual: String,
    },
    /// The sender's key is a low-order X25519 point: anything encrypted to
    /// it could be read by anyone, so such mail is refused.
    #[error("mail is from a low-order key {key}, which anyone can impersonate; the sender must use a real key")]
    LowOrderSender {
        /// The sender key.
        key: PublicKey,
    },
    /// The random source failed.
    #[error("random source failed")]
    Random,
    /// The Noise library refused an operation that cannot fail with valid
    /// inputs. This is a bug.
    #[error("internal noise error (this is a bug): {0}")]
    Internal(String),
}

/// A mail's clear, authenticated header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailHeader {
    topic: String,
    sequence_number: u64,
    envelope: Vec<u8>,
}

/// Checks a topic: 1 to 255 characters of ASCII letters, digits and '-'.
pub fn validate_topic(topic: &str) -> Result<(), MailError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(MailError::InvalidTopic { topic: topic.to_owned() }) }
}

impl MailHeader {
    /// A header with a checked topic and no envelope.
    pub fn new(topic: &str, sequence_number: u64) -> Result<Self, MailError> {
        validate_topic(topic)?;
        Ok(Self { topic: topic.to_owned(), sequence_number, envelope: Vec::new() })
    }

    /// Adds envelope bytes: application data sent in clear but authenticated.
    pub fn with_envelope(mut self, envelope: Vec<u8>) -> Result<Self, MailError> {
        if envelope.len() > u16::MAX as usize {
            return Err(MailError::EnvelopeTooLong { len: envelope.len() });
        }
        self.envelope = envelope;
        Ok(self)
    }

    /// The topic: which conversation this mail belongs to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The sequence number within (sender, topic).
    pub fn sequence_number(&self) -> u64 {
        self.sequence_number
    }

    /// The envelope bytes (possibly empty).
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The clear prefix of a mail: magic, version and header. It is also the
    /// Noise prologue, which is what authenticates it.
    pub fn encode_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.topic.len() + self.envelope.len());
        out.extend_from_slice(&MAIL_MAGIC);
        out.push(MAIL_VERSION);
        // Lengths were checked when the header was built.
        out.push(self.topic.len() as u8);
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&(self.envelope.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.envelope);
        out
    }

    /// Parses the clear prefix of a mail. Returns `Ok(None)` when more bytes are needed,
    /// or the header and the prefix's length.
    fn decode_prefix(input: &[u8]) -> Result<Option<(Self, usize)>, MailError> {
        if input.len() < 3 {
            return Ok(None);
        }
        if input[..2] != MAIL_MAGIC {
            return Err(MailError::Malformed { reason: "bad magic bytes" });
        }
        if input[2] != MAIL_VERSION {
            return Err(MailError::UnsupportedVersion { found: input[2], supported: MAIL_VERSION });
        }
        let Some(&topic_len) = input.get(3) else { return Ok(None) };
        let topic_len = topic_len as usize;
        let fixed_end = 4 + topic_len + 8 + 2;
        if input.len() < fixed_end {
            return Ok(None);
        }
        let topic = core::str::from_utf8(&input[4..4 + topic_len])
            .map_err(|_| MailError::Malformed { reason: "topic is not ASCII" })?;
        validate_topic(topic)?;
        let seq_at = 4 + topic_len;
        let sequence_number = u64::from_be_bytes(input[seq_at..seq_at + 8].try_into().unwrap_or_default());
        let env_len = u16::from_be_bytes([input[seq_at + 8], input[seq_at + 9]]) as usize;
        let end = fixed_end + env_len;
        if input.len() < end {
            return Ok(None);
        }
        let header = Self { topic: topic.to_owned(), sequence_number, envelope: input[fixed_end..end].to_vec() };
        Ok(Some((header, end)))
    }
}

/// Reads the clear header of a complete mail without decrypting it (what a
/// host may look at for routing). The header is *not* authenticated until the
/// mail is decrypted.
pub fn peek_header(mail: &[u8]) -> Result<MailHeader, MailError> {
    match MailHeader::decode_prefix(mail)? {
        Some((header, _)) => Ok(header),
        None => Err(MailError::Truncated { reason: "the header is incomplete" }),
    }
}

/// A fully decrypted mail.
#[derive(Clone, PartialEq, Eq)]
pub struct DecryptedMail {
    /// The authenticated header.
    pub header: MailHeader,
    /// The sender's static X25519 key, proven by the Noise handshake.
    pub sender: PublicKey,
    /// The body, padding removed.
    pub body: Vec<u8>,
}

impl fmt::Debug for DecryptedMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies are private data: show only their length.
        f.debug_struct("DecryptedMail")
            .field("header", &self.header)
            .field("sender", &self.sender)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Hands one caller-drawn 32-byte value to snow as its random source, so that
/// the ephemeral key comes from the caller's RNG (this crate has no IO).
struct OneShotRandom {
    bytes: [u8; 32],
    used: bool,
}

impl Random for OneShotRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        // X25519 key generation asks for exactly 32 bytes once per mail.
        if self.used || dest.len() != 32 {
            return Err(snow::Error::Rng);
        }
        dest.copy_from_slice(&self.bytes);
        self.used = true;
        Ok(())
    }
}

struct SeededResolver(std::sync::Mutex<Option<[u8; 32]>>);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let bytes = self.0.lock().ok()?.take()?;
        Some(Box::new(OneShotRandom { bytes, used: false }))
    }
    fn resolve_dh(&self, _: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        None
    }
    fn resolve_hash(&self, _: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &snow::params::CipherChoice) -> Option<Box<dyn snow::types::Cipher>> {
        None
    }
}

fn params() -> NoiseParams {
    // The constant is a valid Noise name; a failure here is a bug.
    NOISE_PROTOCOL.parse().expect("NOISE_PROTOCOL is a valid noise pattern")
}

fn internal(e: snow::Error) -> MailError {
    MailError::Internal(e.to_string())
}

/// How many plaintext bytes the packets carry for a body of `body_len`
/// padded to at least `min_size` bytes.
pub fn padded_len(body_len: usize, min_size: usize) -> usize {
    body_len.max(min_size)
}

/// The exact size of an encrypted mail, from its header and padded body length.
pub fn encrypted_len(header: &MailHeader, padded_body_len: usize) -> usize {
    let prefix = 3 + 1 + header.topic.len() + 8 + 2 + header.envelope.len();
    let full = padded_body_len / MAX_PACKET_PLAINTEXT;
    let rest = padded_body_len % MAX_PACKET_PLAINTEXT;
    let mut packets = full * (2 + MAX_PACKET_LEN);
    if rest > 0 {
        packets += 2 + rest + TAG_LEN;
    }
    prefix + 2 + HANDSHAKE_LEN + packets + 2 + TAG_LEN
}

/// Encrypts `body` from `sender` to `recipient`, padding the body with zeros
/// to at least `min_size` bytes. The random source supplies the ephemeral key.
pub fn encrypt_mail<R: RngCore + CryptoRng>(
    sender: &PrivateKey,
    recipient: &PublicKey,
    header: &MailHeader,
    body: &[u8],
    min_size: usize,
    rng: &mut R,
) -> Result<Vec<u8>, MailError> {
    let mut seed = [0u8; 32];
    rng.try_fill_bytes(&mut seed).map_err(|_| MailError::Random)?;
    let resolver =
        FallbackResolver::new(Box::new(SeededResolver(std::sync::Mutex::new(Some(seed)))), Box::new(DefaultResolver));
    let prefix = header.encode_prefix();
    let mut hs: HandshakeState = Builder::with_resolver(params(), Box::new(resolver))
        .local_private_key(sender.secret_bytes())
        .and_then(|b| b.remote_public_key(recipient.as_bytes()))
        .and_then(|b| b.prologue(&prefix))
        .and_then(|b| b.build_initiator())
        .map_err(internal)?;

    let padded = padded_len(body.len(), min_size);
    let mut out = Vec::with_capacity(encrypted_len(header, padded));
    out.extend_from_slice(&prefix);

    let mut msg = [0u8; HANDSHAKE_LEN];
    let n = hs.write_message(&(body.len() as u64).to_be_bytes(), &mut msg).map_err(internal)?;
    debug_assert_eq!(n, HANDSHAKE_LEN);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&msg[..n]);

    let mut transport: TransportState = hs.into_transport_mode().map_err(internal)?;
    // Padding (and a body's last, partial chunk before it) is staged here;
    // full chunks of body are encrypted straight from `body` into `out`.
    let mut chunk = Vec::new();
    let mut offset = 0usize;
    while offset < padded {
        let take = (padded - offset).min(MAX_PACKET_PLAINTEXT);
        let from_body = body.len().saturating_sub(offset).min(take);
        let payload: &[u8] = if from_body == take {
            &body[offset..offset + take]
        } else {
            chunk.clear();
            // Past the body's end only padding is left (and `offset` may exceed its length).
            if from_body > 0 {
                chunk.extend_from_slice(&body[offset..offset + from_body]);
            }
            chunk.resize(take, 0);
            &chunk
        };
        let at = out.len();
        out.resize(at + 2 + take + TAG_LEN, 0);
        let n = transport.write_message(payload, &mut out[at + 2..]).map_err(internal)?;
        out[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        offset += take;
    }
    // The terminator: an empty packet, only a tag.
    let at = out.len();
    out.resize(at + 2 + TAG_LEN, 0);
    let n = transport.write_message(&[], &mut out[at + 2..]).map_err(internal)?;
    out[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
    Ok(out)
}

/// Decrypts a whole mail held in memory.
pub fn decrypt_mail(recipient: &PrivateKey, mail: &[u8]) -> Result<DecryptedMail, MailError> {
    let mut decryptor = MailDecryptor::new(recipient);
    let mut body = Vec::new();
    decryptor.update(mail, &mut body)?;
    let opened = decryptor.finish()?;
    Ok(DecryptedMail { header: opened.header, sender: opened.sender, body })
}

/// What a finished [`MailDecryptor`] proved about the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedMail {
    /// The authenticated header.
    pub header: MailHeader,
    /// The authenticated sender key.
    pub sender: PublicKey,
    /// The body length (padding excluded).
    pub body_len: u64,
}

enum Stage {
    Prefix,
    Handshake { header: MailHeader },
    Packets { opened: OpenedMail, transport: Box<TransportState>, index: u64, delivered: u64 },
    Done { opened: OpenedMail },
    Failed,
}

/// Streaming decryption: feed the mail's bytes in pieces of any size and
/// receive body bytes as soon as each packet is authenticated.
///
/// Body bytes handed out before [`MailDecryptor::finish`] succeeds are
/// authenticated packet by packet, but the mail as a whole is only proven
/// complete by `finish`: act on nothing before it returns `Ok`.
pub struct MailDecryptor {
    recipient: PrivateKey,
    buffer: Vec<u8>,
    stage: Stage,
}

impl fmt::Debug for MailDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailDecryptor").field("buffered", &self.buffer.len()).finish_non_exhaustive()
    }
}

impl MailDecryptor {
    /// A decryptor for mail addressed to `recipient`'s public key.
    pub fn new(recipient: &PrivateKey) -> Self {
        Self { recipient: recipient.clone(), buffer: Vec::new(), stage: Stage::Prefix }
    }

    /// The header, once the handshake has authenticated it.
    pub fn opened(&self) -> Option<&OpenedMail> {
        match &self.stage {
            Stage::Packets { opened, .. } | Stage::Done { opened } => Some(opened),
            _ => None,
        }
    }

    /// Feeds more bytes of the mail; appends any newly authenticated body bytes to `body`.
    /// After an error the decryptor is unusable.
    pub fn update(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<(), MailError> {
        let result = if self.buffer.is_empty() {
            // Fast path: whole frames are read straight from the caller's
            // slice; only an incomplete tail is copied.
            self.advance(input, body).map(|consumed| self.buffer.extend_from_slice(&input[consumed..]))
        } else {
            let mut buffer = core::mem::take(&mut self.buffer);
            buffer.extend_from_slice(input);
            self.advance(&buffer, body).map(|consumed| {
                buffer.drain(..consumed);
                self.buffer = buffer;
            })
        };
        if result.is_err() {
            self.stage = Stage::Failed;
            self.buffer.clear();
        }
        result
    }

    /// Consumes as many whole parts of the mail as `input` holds; returns how many bytes.
    fn advance(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, MailError> {
        let mut consumed = 0usize;
        loop {
            let rest = &input[consumed..];
            match core::mem::replace(&mut self.stage, Stage::Failed) {
                Stage::Prefix => match MailHeader::decode_prefix(rest)? {
                    None => {
                        self.stage = Stage::Prefix;
                        return Ok(consumed);
                    }
                    Some((header, len)) => {
                        consumed += len;
                        self.stage = Stage::Handshake { header };
                    }
                },
                Stage::Handshake { header } => {
                    let Some(frame) = frame(rest) else {
                        self.stage = Stage::Handshake { header };
                        return Ok(consumed);
                    };
                    if frame.len() != HANDSHAKE_LEN {
                        return Err(MailError::Malformed { reason: "handshake has the wrong length" });
                    }
                    let prefix = header.encode_prefix();
                    let mut hs = Builder::new(params())
                        .local_private_key(self.recipient.secret_bytes())
                        .and_then(|b| b.prologue(&prefix))
                        .and_then(|b| b.build_responder())
                        .map_err(internal)?;
                    let mut payload = [0u8; 8];
                    let n = hs.read_message(frame, &mut payload).map_err(|_| MailError::HandshakeFailed)?;
                    if n != 8 {
                        return Err(MailError::Malformed { reason: "handshake payload has the wrong length" });
                    }
                    let sender = hs
                        .get_remote_static()
                        .and_then(PublicKey::from_slice)
                        .ok_or(MailError::Internal("no remote static key after handshake".into()))?;
                    consumed += 2 + frame.len();
                    let transport = hs.into_transport_mode().map_err(internal)?;
                    let opened = OpenedMail { header, sender, body_len: u64::from_be_bytes(payload) };
                    self.stage = Stage::Packets { opened, transport: Box::new(transport), index: 0, delivered: 0 };
                }
                Stage::Packets { opened, mut transport, index, delivered } => {
                    let Some(frame) = frame(rest) else {
                        self.stage = Stage::Packets { opened, transport, index, delivered };
                        return Ok(consumed);
                    };
                    if frame.len() < TAG_LEN {
                        return Err(MailError::Malformed { reason: "packet shorter than its tag" });
                    }
                    // Decrypt straight into the body, then keep only the body's bytes.
                    let start = body.len();
                    body.resize(start + frame.len(), 0);
                    let n = match transport.read_message(frame, &mut body[start..]) {
                        Ok(n) => n,
                        Err(_) => {
                            body.truncate(start);
                            return Err(MailError::PacketAuthentication { index });
                        }
                    };
                    consumed += 2 + frame.len();
                    if n == 0 {
                        body.truncate(start);
                        // The terminator: every declared body byte must have arrived.
                        if delivered < opened.body_len {
                            return Err(MailError::BodyLengthMismatch { declared: opened.body_len, actual: delivered });
                        }
                        self.stage = Stage::Done { opened };
                        continue;
                    }
                    let wanted = opened.body_len.saturating_sub(delivered).min(n as u64) as usize;
                    body.truncate(start + wanted);
                    self.stage =
                        Stage::Packets { opened, transport, index: index + 1, delivered: delivered + wanted as u64 };
                }
                Stage::Done { opened } => {
                    self.stage = Stage::Done { opened };
                    if !rest.is_empty() {
                        return Err(MailError::TrailingBytes { count: rest.len() });
                    }
                    return Ok(consumed);
                }
                Stage::Failed => {
                    return Err(MailError::Malformed { reason: "decryptor already failed" });
                }
            }
        }
    }

    /// Ends the mail: succeeds only if the terminator packet arrived and no bytes followed.
    pub fn finish(self) -> Result<OpenedMail, MailError> {
        match self.stage {
            Stage::Done { opened } if self.buffer.is_empty() => Ok(opened),
            Stage::Done { .. } => Err(MailError::TrailingBytes { count: self.buffer.len() }),
            Stage::Prefix => Err(MailError::Truncated { reason: "the header is incomplete" }),
            Stage::Handshake { .. } => Err(MailError::Truncated { reason: "the handshake is incomplete" }),
            Stage::Packets { .. } if !self.buffer.is_empty() => {
                Err(MailError::Truncated { reason: "the last packet is cut short" })
            }
            Stage::Packets { .. } => Err(MailError::Truncated { reason: "the terminator packet is missing" }),
            Stage::Failed => Err(MailError::Malformed { reason: "decryptor already failed" }),
        }
    }
}

/// Reads one `u16`-length-prefixed frame, or `None` when more bytes are needed.
fn frame(input: &[u8]) -> Option<&[u8]> {
    let len = u16::from_be_bytes([*input.first()?, *input.get(1)?]) as usize;
    input.get(2..2 + len)
}
