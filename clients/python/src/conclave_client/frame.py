"""Request and response frames: what leads every mail body (wire format section 1.6).

A client mail's plaintext is ``request frame ‖ body``; an enclave mail's is
``response frame ‖ body``. The layouts are those of ``crates/core/src/frame.rs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .errors import FrameError
from .freshness import ChainLink, ReplyChain, StateCheckpoint
from .mail import MAX_TOPIC_LEN, topic_is_valid

#: The frame version this package writes and reads.
FRAME_VERSION = 1
#: The most run checkpoints one request may report.
MAX_REPORTED_RUNS = 64

# Response kinds: in-chain ones, then the rejections with their stable codes.
REPLY = "reply"
RECEIPT = "receipt"
REFUSED = "refused"
REJECTED = "rejected"

_IN_CHAIN_TAGS = {1: REPLY, 2: RECEIPT, 3: REFUSED}
_IN_CHAIN_KINDS = {v: k for k, v in _IN_CHAIN_TAGS.items()}
REJECTION_CODES = {
    0x10: "SEQUENCE_REPLAYED",
    0x11: "SEQUENCE_GAP",
    0x12: "SEQUENCE_REORDERED",
    0x13: "STATE_ROLLBACK",
    0x14: "STATE_FORK",
    0x15: "STATE_FULL",
    0x16: "BAD_REQUEST",
}
_REJECTION_TAGS = {v: k for k, v in REJECTION_CODES.items()}


def _truncated(what: str) -> FrameError:
    return FrameError("truncated", f"frame is truncated: {what}")


def _malformed(what: str) -> FrameError:
    return FrameError("malformed", f"malformed frame: {what}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.at = 0

    def take(self, n: int, what: str) -> bytes:
        if len(self.data) - self.at < n:
            raise _truncated(what)
        out = bytes(self.data[self.at : self.at + n])
        self.at += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "big")

    def checkpoint(self, what: str) -> StateCheckpoint:
        return StateCheckpoint.from_bytes(self.take(40, what))

    def rest(self) -> bytes:
        return bytes(self.data[self.at :])


def _version(r: _Reader) -> None:
    found = r.u8("version")
    if found != FRAME_VERSION:
        raise FrameError(
            "unsupported_version", f"unsupported frame version {found} (this code reads version {FRAME_VERSION})"
        )


@dataclass(frozen=True)
class RequestFrame:
    """What leads every client mail."""

    #: Random for every encryption of a mail; answers and rejections name it.
    request_id: bytes
    #: The head of the reply chain the client has verified.
    chain: ReplyChain
    #: Run checkpoints attested and not yet confirmed, oldest first.
    runs: Tuple[StateCheckpoint, ...] = ()

    def wrap(self, body: bytes) -> bytes:
        """``frame ‖ body``; at most the newest 64 runs are written."""
        runs = self.runs[max(0, len(self.runs) - MAX_REPORTED_RUNS) :]
        parts = [bytes([FRAME_VERSION]), self.request_id, self.chain.index.to_bytes(8, "big"), self.chain.digest]
        parts.append(bytes([len(runs)]))
        parts.extend(run.to_bytes() for run in runs)
        parts.append(body)
        return b"".join(parts)

    @classmethod
    def unwrap(cls, data: bytes) -> Tuple["RequestFrame", bytes]:
        """Splits a decrypted client mail into its frame and body."""
        r = _Reader(data)
        _version(r)
        request_id = r.take(16, "request id")
        chain = ReplyChain(r.u64("chain index"), r.take(32, "chain digest"))
        if chain.index == 0 and chain.digest != bytes(32):
            raise _malformed("an empty reply chain has an all-zero digest")
        count = r.u8("run count")
        if count > MAX_REPORTED_RUNS:
            raise _malformed("more than 64 runs")
        runs = tuple(r.checkpoint("run checkpoint") for _ in range(count))
        return cls(request_id, chain, runs), r.rest()


@dataclass(frozen=True)
class Answer:
    """Which client mail an enclave mail answers."""

    topic: str
    sequence_number: int
    #: The request id of the attempt the enclave read.
    request_id: bytes


@dataclass(frozen=True)
class Rejection:
    """Why the enclave refused a mail before reading it, with its numbers."""

    code: str
    #: The next sequence number the enclave expects on the mail's stream.
    expected: int
    #: The mail's sequence number.
    received: int
    #: How many in-chain replies the enclave's state records for the sender.
    chain_index: int


@dataclass(frozen=True)
class ResponseFrame:
    """What leads every enclave mail."""

    #: ``reply``, ``receipt``, ``refused`` or ``rejected``.
    kind: str
    #: The state the call left behind (for a rejection: the state it was in).
    state: StateCheckpoint
    #: Where it sits in the reply chain (exactly for in-chain kinds).
    link: Optional[ChainLink] = None
    #: The client mail it answers (required but for replies).
    answers: Optional[Answer] = None
    #: The rejection's code and numbers (exactly for ``rejected``).
    rejection: Optional[Rejection] = None

    @property
    def in_chain(self) -> bool:
        """Whether this mail sits in the recipient's reply chain."""
        return self.kind != REJECTED

    def wrap(self, body: bytes) -> bytes:
        """``frame ‖ body`` (what the enclave writes; used by tests)."""
        if self.kind == REJECTED:
            if self.rejection is None:
                raise ValueError("a rejection needs its code and numbers")
            tag = _REJECTION_TAGS[self.rejection.code]
        else:
            tag = _IN_CHAIN_KINDS[self.kind]
        parts = [bytes([FRAME_VERSION, tag]), self.state.to_bytes()]
        if self.link is not None:
            parts += [self.link.index.to_bytes(8, "big"), self.link.previous]
        if self.answers is None:
            parts.append(b"\x00")
        else:
            topic = self.answers.topic.encode("ascii")
            parts += [b"\x01", bytes([len(topic)]), topic, self.answers.sequence_number.to_bytes(8, "big")]
            parts.append(self.answers.request_id)
        if self.rejection is not None:
            d = self.rejection
            parts += [d.expected.to_bytes(8, "big"), d.received.to_bytes(8, "big"), d.chain_index.to_bytes(8, "big")]
        parts.append(body)
        return b"".join(parts)

    @classmethod
    def unwrap(cls, data: bytes) -> Tuple["ResponseFrame", bytes]:
        """Splits a decrypted enclave mail into its frame and body."""
        r = _Reader(data)
        _version(r)
        tag = r.u8("kind")
        in_chain = tag in _IN_CHAIN_TAGS
        if not in_chain and tag not in REJECTION_CODES:
            raise _malformed("unknown kind")
        state = r.checkpoint("state")
        link = None
        if in_chain:
            index = r.u64("chain index")
            if index == 0:
                raise _malformed("chain index 0")
            link = ChainLink(index, r.take(32, "previous digest"))
        flag = r.u8("answer flag")
        answers = None
        if flag == 1:
            length = r.u8("topic length")
            raw = r.take(length, "topic")
            try:
                topic = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed("topic is not ASCII") from None
            if length > MAX_TOPIC_LEN or not topic_is_valid(topic):
                raise _malformed("topic is not allowed")
            answers = Answer(topic, r.u64("sequence number"), r.take(16, "request id"))
        elif flag != 0:
            raise _malformed("answer flag is neither 0 nor 1")
        rejection = None
        if in_chain:
            kind = _IN_CHAIN_TAGS[tag]
        else:
            kind = REJECTED
            rejection = Rejection(REJECTION_CODES[tag], r.u64("expected"), r.u64("received"), r.u64("chain index"))
        if answers is None and kind != REPLY:
            raise _malformed("receipts, refusals and rejections name the mail they answer")
        return cls(kind, state, link, answers, rejection), r.rest()
