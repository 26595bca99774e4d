//! The frames that lead every mail body between a client and an enclave,
//! inside the encryption: a [`RequestFrame`] on client mail, a
//! [`ResponseFrame`] on enclave mail. They carry what freshness needs
//! (see [`crate::freshness`]) and tie each answer to the mail it answers.
//!
//! ```text
//!  client ── mail(topic, seq) { RequestFrame ‖ body } ──────────────► enclave
//!         ◄─ mail { ResponseFrame(kind, state, link, answers) ‖ body } ─┘
//! ```
//!
//! The byte layout is in `docs/wire-format.md`, section 1.6.

use crate::freshness::{ChainLink, ReplyChain, StateCheckpoint};
use crate::mail::{MAX_TOPIC_LEN, validate_topic};

/// The version byte both frames start with.
pub const FRAME_VERSION: u8 = 1;
/// The most run checkpoints one request may report.
pub const MAX_REPORTED_RUNS: usize = 64;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The body ended inside the frame.
    #[error("frame is truncated: {0}")]
    Truncated(&'static str),
    /// The frame is of another version.
    #[error("unsupported frame version {found} (this code reads version {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
        /// The version this code reads.
        supported: u8,
    },
    /// A field holds a value the format does not allow.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(b))
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N, what)?);
        Ok(b)
    }
    fn checkpoint(&mut self, what: &'static str) -> Result<StateCheckpoint, FrameError> {
        Ok(StateCheckpoint::from_bytes(&self.array(what)?))
    }
}

fn version(r: &mut Reader<'_>) -> Result<(), FrameError> {
    let found = r.u8("version")?;
    if found != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion { found, supported: FRAME_VERSION });
    }
    Ok(())
}

/// What leads every client mail: who the client is in the enclave's eyes
/// and what it has verified so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// Random for every encryption of a mail: refusals name it, so an old
    /// refusal cannot be passed off as the answer to a new attempt.
    pub request_id: [u8; 16],
    /// The head of the reply chain the client has verified.
    pub chain: ReplyChain,
    /// Run checkpoints the client attested and no reply has confirmed yet.
    pub runs: Vec<StateCheckpoint>,
}

impl RequestFrame {
    /// Prepends the frame to `body`. At most [`MAX_REPORTED_RUNS`] runs are
    /// written (the newest ones, if there are more).
    pub fn wrap(&self, body: &[u8]) -> Vec<u8> {
        let runs = &self.runs[self.runs.len().saturating_sub(MAX_REPORTED_RUNS)..];
        let mut out = Vec::with_capacity(1 + 16 + 40 + 1 + 40 * runs.len() + body.len());
        out.push(FRAME_VERSION);
        out.extend_from_slice(&self.request_id);
        out.extend_from_slice(&self.chain.index.to_be_bytes());
        out.extend_from_slice(&self.chain.digest);
        // At most 64 runs: fits a byte.
        out.push(runs.len() as u8);
        for run in runs {
            out.extend_from_slice(&run.to_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// Splits a decrypted client mail into its frame and the application body.
    pub fn unwrap(bytes: &[u8]) -> Result<(Self, &[u8]), FrameError> {
        let mut r = Reader(bytes);
        version(&mut r)?;
        let request_id = r.array("request id")?;
        let chain = ReplyChain { index: r.u64("chain index")?, digest: r.array("chain digest")? };
        if chain.index == 0 && chain.digest != [0; 32] {
            return Err(FrameError::Malformed("an empty reply chain has an all-zero digest"));
        }
        let count = r.u8("run count")? as usize;
        if count > MAX_REPORTED_RUNS {
            return Err(FrameError::Malformed("more than 64 runs"));
        }
        let mut runs = Vec::with_capacity(count);
        for _ in 0..count {
            runs.push(r.checkpoint("run checkpoint")?);
        }
        Ok((Self { request_id, chain, runs }, r.0))
    }
}

/// Which client mail an enclave mail answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Answer {
    /// The topic of the answered mail.
    pub topic: String,
    /// Its sequence number.
    pub sequence_number: u64,
    /// The request id of the attempt the enclave read.
    pub request_id: [u8; 16],
}

/// Why the enclave refused a mail without accepting it. Rejections are not
/// in the reply chain and change no state: the mail may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The sequence number was already accepted: the mail (or one claiming
    /// its number) was processed before; its answer is in the reply chain.
    Replayed,
    /// The number is above the next expected one: earlier mail is missing.
    Gap,
    /// The number is above the next expected one, and a higher one was
    /// presented before: the host reordered mail.
    Reordered,
    /// The client verified replies this enclave's state does not know.
    Rollback,
    /// The client's reply chain or an attested run is not in this
    /// enclave's history.
    Fork,
    /// Accepting the mail would take the enclave's state over its limit.
    StateFull,
    /// The request frame is malformed, or the number cannot be used.
    BadRequest,
}

impl Rejection {
    const fn tag(self) -> u8 {
        match self {
            Self::Replayed => 0x10,
            Self::Gap => 0x11,
            Self::Reordered => 0x12,
            Self::Rollback => 0x13,
            Self::Fork => 0x14,
            Self::StateFull => 0x15,
            Self::BadRequest => 0x16,
        }
    }

    const fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            0x10 => Self::Replayed,
            0x11 => Self::Gap,
            0x12 => Self::Reordered,
            0x13 => Self::Rollback,
            0x14 => Self::Fork,
            0x15 => Self::StateFull,
            0x16 => Self::BadRequest,
            _ => return None,
        })
    }

    /// The stable code, as the host and the client's errors name it.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Replayed => "SEQUENCE_REPLAYED",
            Self::Gap => "SEQUENCE_GAP",
            Self::Reordered => "SEQUENCE_REORDERED",
            Self::Rollback => "STATE_ROLLBACK",
            Self::Fork => "STATE_FORK",
            Self::StateFull => "STATE_FULL",
            Self::BadRequest => "BAD_REQUEST",
        }
    }
}

/// The numbers a rejection reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RejectionDetail {
    /// The next sequence number the enclave expects on the mail's stream.
    pub expected: u64,
    /// The sequence number the mail carries.
    pub received: u64,
    /// How many in-chain replies the enclave's state records for the sender.
    pub chain_index: u64,
}

/// What kind of enclave mail this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// Mail from the application (an answer if `answers` is set). In the chain.
    Reply,
    /// The runtime's acknowledgement that a mail was processed, sent when the
    /// application did not answer it itself; no body. In the chain.
    Receipt,
    /// The application refused the mail; the body is its message (UTF-8).
    /// The mail's number is used up. In the chain.
    Refused,
    /// The runtime refused the mail before the application saw it. Not in
    /// the chain; nothing changed.
    Rejected(Rejection, RejectionDetail),
}

impl ResponseKind {
    /// Whether mail of this kind sits in the recipient's reply chain.
    pub const fn in_chain(&self) -> bool {
        !matches!(self, Self::Rejected(..))
    }
}

/// What leads every enclave mail sent with the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    /// Reply, receipt, refusal or rejection.
    pub kind: ResponseKind,
    /// The state this mail comes from: the state the call left behind, or for
    /// a rejection the state the enclave was in.
    pub state: StateCheckpoint,
    /// Where it sits in the recipient's reply chain (present exactly for in-chain kinds).
    pub link: Option<ChainLink>,
    /// The client mail it answers (required for receipts, refusals and rejections).
    pub answers: Option<Answer>,
}

impl ResponseFrame {
    /// Prepends the frame to `body`.
    pub fn wrap(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + body.len());
        out.push(FRAME_VERSION);
        out.push(match self.kind {
            ResponseKind::Reply => 1,
            ResponseKind::Receipt => 2,
            ResponseKind::Refused => 3,
            ResponseKind::Rejected(r, _) => r.tag(),
        });
        out.extend_from_slice(&self.state.to_bytes());
        if let Some(link) = &self.link {
            out.extend_from_slice(&link.index.to_be_bytes());
            out.extend_from_slice(&link.previous);
        }
        match &self.answers {
            None => out.push(0),
            Some(answer) => {
                out.push(1);
                // Topics are validated to at most 255 bytes.
                out.push(answer.topic.len() as u8);
                out.extend_from_slice(answer.topic.as_bytes());
                out.extend_from_slice(&answer.sequence_number.to_be_bytes());
                out.extend_from_slice(&answer.request_id);
            }
        }
        if let ResponseKind::Rejected(_, d) = &self.kind {
            out.extend_from_slice(&d.expected.to_be_bytes());
            out.extend_from_slice(&d.received.to_be_bytes());
            out.extend_from_slice(&d.chain_index.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// Splits a decrypted enclave mail into its frame and the body.
    pub fn unwrap(bytes: &[u8]) -> Result<(Self, &[u8]), FrameError> {
        let mut r = Reader(bytes);
        version(&mut r)?;
        let tag = r.u8("kind")?;
        let in_chain = matches!(tag, 1..=3);
        let rejection = Rejection::from_tag(tag);
        if !in_chain && rejection.is_none() {
            return Err(FrameError::Malformed("unknown kind"));
        }
        let state = r.checkpoint("state")?;
        let link = if in_chain {
            let index = r.u64("chain index")?;
            if index == 0 {
                return Err(FrameError::Malformed("chain index 0"));
            }
            Some(ChainLink { index, previous: r.array("previous digest")? })
        } else {
            None
        };
        let answers = match r.u8("answer flag")? {
            0 => None,
            1 => {
                let len = r.u8("topic length")? as usize;
                let topic = core::str::from_utf8(r.take(len, "topic")?)
                    .map_err(|_| FrameError::Malformed("topic is not ASCII"))?;
                if len > MAX_TOPIC_LEN || validate_topic(topic).is_err() {
                    return Err(FrameError::Malformed("topic is not allowed"));
                }
                Some(Answer {
                    topic: topic.to_owned(),
                    sequence_number: r.u64("sequence number")?,
                    request_id: r.array("request id")?,
                })
            }
            _ => return Err(FrameError::Malformed("answer flag is neither 0 nor 1")),
        };
        let kind = match (tag, rejection) {
            (1, _) => ResponseKind::Reply,
            (2, _) => ResponseKind::Receipt,
            (3, _) => ResponseKind::Refused,
            (_, Some(rejection)) => ResponseKind::Rejected(
                rejection,
                RejectionDetail {
                    expected: r.u64("expected")?,
                    received: r.u64("received")?,
                    chain_index: r.u64("chain index")?,
                },
            ),
            _ => return Err(FrameError::Malformed("unknown kind")),
        };
        if answers.is_none() && !matches!(kind, ResponseKind::Reply) {
            return Err(FrameError::Malformed("receipts, refusals and rejections name the mail they answer"));
        }
        Ok((Self { kind, state, link, answers }, r.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        Answer { topic: "bids".into(), sequence_number: 7, request_id: [3; 16] }
    }

    #[test]
    fn request_frames_round_trip_and_truncation_is_named() {
        let frame = RequestFrame {
            request_id: [1; 16],
            chain: ReplyChain { index: 2, digest: [2; 32] },
            runs: vec![StateCheckpoint { counter: 4, id: [4; 32] }],
        };
        let bytes = frame.wrap(b"body");
        assert_eq!(RequestFrame::unwrap(&bytes).unwrap(), (frame, &b"body"[..]));
        for len in 0..bytes.len() - 4 {
            assert!(matches!(RequestFrame::unwrap(&bytes[..len]), Err(FrameError::Truncated(_))), "{len}");
        }
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert!(matches!(RequestFrame::unwrap(&bad), Err(FrameError::UnsupportedVersion { found: 2, .. })));
    }

    #[test]
    fn response_frames_round_trip_for_every_kind() {
        let state = StateCheckpoint { counter: 9, id: [9; 32] };
        let link = Some(ChainLink { index: 3, previous: [8; 32] });
        let detail = RejectionDetail { expected: 5, received: 7, chain_index: 2 };
        let frames = [
            ResponseFrame { kind: ResponseKind::Reply, state, link, answers: None },
            ResponseFrame { kind: ResponseKind::Reply, state, link, answers: Some(answer()) },
            ResponseFrame { kind: ResponseKind::Receipt, state, link, answers: Some(answer()) },
            ResponseFrame { kind: ResponseKind::Refused, state, link, answers: Some(answer()) },
            ResponseFrame {
                kind: ResponseKind::Rejected(Rejection::Gap, detail),
                state,
                link: None,
                answers: Some(answer()),
            },
        ];
        for frame in frames {
            let bytes = frame.wrap(b"xyz");
            assert_eq!(ResponseFrame::unwrap(&bytes).unwrap(), (frame.clone(), &b"xyz"[..]));
            let cut = bytes.len() - 3;
            for len in 0..cut {
                assert!(ResponseFrame::unwrap(&bytes[..len]).is_err(), "{len}");
            }
        }
    }

    #[test]
    fn a_receipt_must_name_its_mail() {
        let frame = ResponseFrame {
            kind: ResponseKind::Receipt,
            state: StateCheckpoint::GENESIS,
            link: Some(ChainLink { index: 1, previous: [0; 32] }),
            answers: None,
        };
        assert!(matches!(ResponseFrame::unwrap(&frame.wrap(b"")), Err(FrameError::Malformed(_))));
    }
}
