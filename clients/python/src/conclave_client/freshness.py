"""Freshness: the state chain, the reply chain and the client's verdicts.

Pure functions of bytes, the same rules as ``crates/core/src/freshness.rs``
(docs/wire-format.md section 3)::

    state n-1 ──H──► state n ──H──► state n+1        (one chain of sealed states)
                       │                 │
    reply chain of C:  k ────H────────► k+1          (what the enclave showed client C)
    C's next mail:     "I have verified up to k+1, digest D"  → enclave compares with its record
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

_STATE_ID_DOMAIN = b"conclave-state-id-v1\0"
_REPLY_CHAIN_DOMAIN = b"conclave-reply-chain-v1\0"
_ZERO32 = bytes(32)

#: How many recent chain positions a client remembers, to tell a replayed
#: reply from a forked one.
RECENT_LINKS = 32


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


@dataclass(frozen=True)
class StateCheckpoint:
    """One sealed state of the enclave: its counter and its id."""

    counter: int
    id: bytes

    def __str__(self) -> str:
        return f"{self.counter}:{self.id.hex()}"

    @classmethod
    def parse(cls, text: str) -> "StateCheckpoint":
        """Parses ``counter:id`` (id as 64 hex digits)."""
        counter, sep, ident = text.partition(":")
        if not sep:
            raise ValueError("a checkpoint is written counter:id")
        if not counter.isdigit() or not counter.isascii() or int(counter) >= 2**64:
            raise ValueError("the counter of a checkpoint is a whole number")
        try:
            raw = bytes.fromhex(ident)
        except ValueError:
            raw = b""
        if len(raw) != 32 or len(ident) != 64:
            raise ValueError("the id of a checkpoint is 64 hex digits")
        return cls(int(counter), raw)

    def to_bytes(self) -> bytes:
        """``counter:u64 ‖ id[32]`` (40 bytes)."""
        return _u64(self.counter) + self.id

    @classmethod
    def from_bytes(cls, raw: bytes) -> "StateCheckpoint":
        """Decodes :meth:`to_bytes`."""
        if len(raw) != 40:
            raise ValueError("a checkpoint is 40 bytes")
        return cls(int.from_bytes(raw[:8], "big"), bytes(raw[8:]))

    def next(self, nonce: bytes) -> "StateCheckpoint":
        """The checkpoint sealed after this one with ``nonce`` (16 bytes)."""
        counter = self.counter + 1
        return StateCheckpoint(counter, state_id(self.id, counter, nonce))


GENESIS = StateCheckpoint(0, _ZERO32)


def state_id(previous: bytes, counter: int, nonce: bytes) -> bytes:
    """``SHA-256("conclave-state-id-v1\\0" ‖ previous ‖ counter ‖ nonce)``."""
    return hashlib.sha256(_STATE_ID_DOMAIN + previous + _u64(counter) + nonce).digest()


def chain_digest(previous: bytes, index: int, state: StateCheckpoint) -> bytes:
    """``SHA-256("conclave-reply-chain-v1\\0" ‖ previous ‖ index ‖ state counter ‖ state id)``."""
    return hashlib.sha256(_REPLY_CHAIN_DOMAIN + previous + _u64(index) + state.to_bytes()).digest()


@dataclass(frozen=True)
class ReplyChain:
    """The head of one client's reply chain: how many replies, and their digest."""

    index: int = 0
    digest: bytes = _ZERO32

    def extend(self, state: StateCheckpoint) -> "ReplyChain":
        """The chain after one more reply, produced from ``state``."""
        index = self.index + 1
        return ReplyChain(index, chain_digest(self.digest, index, state))

    def link(self) -> "ChainLink":
        """The link a reply carries to sit after this head."""
        return ChainLink(self.index + 1, self.digest)

    def to_json(self) -> Dict[str, Any]:
        """``{"index": n, "digest": hex}``, as the Rust client saves it."""
        return {"index": self.index, "digest": self.digest.hex()}

    @classmethod
    def from_json(cls, value: Any) -> "ReplyChain":
        """Reads :meth:`to_json`."""
        digest = bytes.fromhex(value["digest"])
        if len(digest) != 32:
            raise ValueError("expected 64 hex digits")
        return cls(int(value["index"]), digest)


@dataclass(frozen=True)
class ChainLink:
    """Where an in-chain reply sits: its index and the digest before it."""

    index: int
    previous: bytes


@dataclass(frozen=True)
class Verdict:
    """What a client does with an in-chain reply.

    ``kind`` is ``next`` (accept), ``held`` (wait for ``missing``),
    ``duplicate`` or ``stale`` (drop), ``fork`` (at ``index``) or
    ``regressed`` (state ``received`` older than ``previous``).
    """

    kind: str
    missing: Optional[int] = None
    index: Optional[int] = None
    previous: Optional[int] = None
    received: Optional[int] = None

    def to_json(self) -> Any:
        """The form ``freshness-v1.json`` writes verdicts in."""
        if self.kind in ("next", "duplicate", "stale"):
            return self.kind
        if self.kind == "held":
            return {"held": {"missing": self.missing}}
        if self.kind == "fork":
            return {"fork": {"index": self.index}}
        return {"regressed": {"previous": self.previous, "received": self.received}}


@dataclass
class ReplyChainVerifier:
    """A client's view of its reply chain: what it has verified, in order."""

    head: ReplyChain = field(default_factory=ReplyChain)
    state: StateCheckpoint = GENESIS
    recent: List[ReplyChain] = field(default_factory=list)

    def check(self, link: ChainLink, state: StateCheckpoint) -> Verdict:
        """The verdict on a reply at ``link`` that came from ``state``."""
        nxt = self.head.index + 1
        if link.index > nxt:
            return Verdict("held", missing=nxt)
        digest = chain_digest(link.previous, link.index, state)
        if link.index == nxt:
            if link.previous != self.head.digest:
                return Verdict("fork", index=link.index)
            if state.counter < self.state.counter:
                return Verdict("regressed", previous=self.state.counter, received=state.counter)
            return Verdict("next")
        known: Optional[ReplyChain]
        if link.index == self.head.index:
            known = self.head
        else:
            known = next((c for c in self.recent if c.index == link.index), None)
        if known is None:
            return Verdict("stale")
        if known.digest == digest:
            return Verdict("duplicate")
        return Verdict("fork", index=link.index)

    def advance(self, link: ChainLink, state: StateCheckpoint) -> None:
        """Accepts a reply that :meth:`check` called ``next``."""
        head = ReplyChain(link.index, chain_digest(link.previous, link.index, state))
        if self.head.index > 0:
            self.recent.append(self.head)
            del self.recent[: max(0, len(self.recent) - RECENT_LINKS)]
        self.head = head
        self.state = state

    def to_json(self) -> Dict[str, Any]:
        """The state file's form (the Rust client's)."""
        return {
            "head": self.head.to_json(),
            "state": str(self.state),
            "recent": [c.to_json() for c in self.recent],
        }

    @classmethod
    def from_json(cls, value: Any) -> "ReplyChainVerifier":
        """Reads :meth:`to_json`."""
        return cls(
            head=ReplyChain.from_json(value["head"]),
            state=StateCheckpoint.parse(value["state"]),
            recent=[ReplyChain.from_json(c) for c in value.get("recent", [])],
        )


def check_request(
    recorded: ReplyChain,
    claimed: ReplyChain,
    runs: Sequence[StateCheckpoint],
    history: Sequence[StateCheckpoint],
) -> Optional[str]:
    """The enclave's freshness check of a client mail (section 3.3).

    Returns ``None`` to accept, else ``"rollback"`` or ``"fork"``. Clients do
    not run it; it is here so that this package reproduces every verdict of
    ``freshness-v1.json``.
    """
    if claimed.index > recorded.index:
        return "rollback"
    if claimed.index == recorded.index and claimed.digest != recorded.digest:
        return "fork"
    if any(run not in history for run in runs):
        return "fork"
    return None
