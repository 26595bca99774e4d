"""What a client keeps across its own restarts: the state file.

The file is JSON, version 2, in the same layout as the Rust client's
(``crates/client/src/state.rs``), so ``conclave checkpoint --state FILE``
reads a file this package wrote and either client can continue it::

    {
      "version": 2,
      "private_key": "<64 hex>",               the client's X25519 key: guard it
      "constraint": "C:... SEC:INSECURE",      canonical form
      "correlation_id": "<32 hex>",            the host's queue for this client
      "host": "http://127.0.0.1:8080",         set by the CLI; null otherwise
      "runs": [{"key": hex, "checkpoint": "counter:id", "confirmed": bool}],
      "chain": {"head": {"index": n, "digest": hex}, "state": "counter:id",
                "recent": [{"index": n, "digest": hex}, ...]},
      "next_sequence_numbers": {"topic": n},
      "pending": {"topic": {"sequence_number": n, "body": base64, "processed": bool,
                  "attempts": [{"key": hex, "request_id": hex, "runs": ["counter:id"],
                                "mail": base64 or null}]}},
      "inbox": [{"topic": t, "index": n, "body": base64, "state": "counter:id",
                 "answers": n or null, "kind": "reply" | "refused"}],
      "padding": {"topic": {"largest_seen": {"largest": n}} | {"fixed": n} | "none"
                  | {"moving_average": {"window": n, "recent": [n, ...]}}}
    }

Saving is atomic: a temporary file created exclusively with mode 0600,
written, synced, renamed over the old file, and the directory synced.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .constraint import EnclaveConstraint
from .errors import BadState, ConclaveError, StateFileError
from .freshness import ReplyChainVerifier, StateCheckpoint
from .keys import PrivateKey
from .padding import PaddingPolicy

#: The version of the state file this package writes and reads.
STATE_VERSION = 2
#: The most runs a client remembers; confirmed runs are forgotten first.
MAX_RUNS = 64
#: The most attempts of one mail a client remembers.
MAX_ATTEMPTS_KEPT = 16


def b64encode(raw: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict standard base64; a :class:`BadState` naming ``what`` otherwise."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadState(f"{what} is not base64") from None


@dataclass
class KnownRun:
    """One run of the enclave the client attested."""

    #: Its encryption key (hex): replies from it are accepted.
    key: str
    #: The state the run started from, signed in its attestation.
    checkpoint: StateCheckpoint
    #: Whether an answer confirmed the enclave's history holds this run.
    confirmed: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {"key": self.key, "checkpoint": str(self.checkpoint), "confirmed": self.confirmed}


@dataclass
class Attempt:
    """One encryption of a pending mail."""

    key: str
    request_id: str
    runs: List[StateCheckpoint]
    #: The encrypted mail (base64), kept for the newest attempt only.
    mail: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"key": self.key, "request_id": self.request_id, "runs": [str(r) for r in self.runs], "mail": self.mail}


@dataclass
class PendingMail:
    """A mail sent (or about to be) without an authenticated answer yet."""

    sequence_number: int
    #: The body (base64), kept to encrypt it again for a restarted enclave.
    body: str
    attempts: List[Attempt] = field(default_factory=list)
    #: The enclave said (authenticated) it already processed this mail.
    processed: bool = False

    def body_bytes(self) -> bytes:
        return b64decode(self.body, "a pending mail's body")

    def to_json(self) -> Dict[str, Any]:
        return {
            "sequence_number": self.sequence_number,
            "body": self.body,
            "attempts": [a.to_json() for a in self.attempts],
            "processed": self.processed,
        }


@dataclass
class StoredReply:
    """A reply accepted (verified, in order) but not yet handed to the application."""

    topic: str
    index: int
    body: str
    state: StateCheckpoint
    answers: Optional[int]
    #: ``reply`` or ``refused``.
    kind: str

    def to_json(self) -> Dict[str, Any]:
        return {
            "topic": self.topic,
            "index": self.index,
            "body": self.body,
            "state": str(self.state),
            "answers": self.answers,
            "kind": self.kind,
        }


@dataclass
class ClientState:
    """A client's saved state. Holds the private key: store it like a key."""

    private_key: str
    constraint: str
    correlation_id: str
    host: Optional[str] = None
    runs: List[KnownRun] = field(default_factory=list)
    chain: ReplyChainVerifier = field(default_factory=ReplyChainVerifier)
    next_sequence_numbers: Dict[str, int] = field(default_factory=dict)
    pending: Dict[str, PendingMail] = field(default_factory=dict)
    inbox: List[StoredReply] = field(default_factory=list)
    padding: Dict[str, PaddingPolicy] = field(default_factory=dict)
    version: int = STATE_VERSION

    def __repr__(self) -> str:
        return (
            f"ClientState(private_key=<redacted>, constraint={self.constraint!r}, "
            f"correlation_id={self.correlation_id!r}, chain={self.chain.head}, pending={sorted(self.pending)}, "
            f"inbox={len(self.inbox)})"
        )

    @classmethod
    def generate(cls, constraint: EnclaveConstraint) -> "ClientState":
        """A new identity: a fresh key and a fresh correlation id."""
        return cls(
            private_key=PrivateKey.generate().secret_bytes().hex(),
            constraint=str(constraint),
            correlation_id=os.urandom(16).hex(),
        )

    def key(self) -> PrivateKey:
        """The client's private key."""
        try:
            raw = bytes.fromhex(self.private_key)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise BadState("private_key must be 64 hex digits")
        return PrivateKey(raw)

    def unconfirmed_runs(self) -> List[StateCheckpoint]:
        """The run checkpoints no answer has confirmed yet, oldest first."""
        return [r.checkpoint for r in self.runs if not r.confirmed]

    def add_run(self, run: KnownRun) -> None:
        """Remembers a run, forgetting the oldest confirmed ones beyond :data:`MAX_RUNS`."""
        if any(r.key == run.key and r.checkpoint == run.checkpoint for r in self.runs):
            return
        self.runs.append(run)
        while len(self.runs) > MAX_RUNS:
            oldest = next((i for i, r in enumerate(self.runs) if r.confirmed), 0)
            del self.runs[oldest]

    def knows_key(self, key: bytes) -> bool:
        """Whether ``key`` is the encryption key of a run this client attested."""
        return any(r.key == key.hex() for r in self.runs)

    def to_json(self) -> Dict[str, Any]:
        """The state file's JSON object, fields in the Rust client's order."""
        return {
            "version": self.version,
            "private_key": self.private_key,
            "constraint": self.constraint,
            "correlation_id": self.correlation_id,
            "host": self.host,
            "runs": [r.to_json() for r in self.runs],
            "chain": self.chain.to_json(),
            "next_sequence_numbers": dict(sorted(self.next_sequence_numbers.items())),
            "pending": {t: p.to_json() for t, p in sorted(self.pending.items())},
            "inbox": [r.to_json() for r in self.inbox],
            "padding": {t: p.to_json() for t, p in sorted(self.padding.items())},
        }

    def to_bytes(self) -> bytes:
        """The state file's bytes."""
        return json.dumps(self.to_json(), indent=2).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ClientState":
        """Parses and checks saved state."""
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadState(f"not a client state file: {e}") from None
        if not isinstance(value, dict) or not isinstance(value.get("version"), int):
            raise BadState("not a client state file: missing field `version`")
        if value["version"] != STATE_VERSION:
            raise BadState(
                f"state version {value['version']} is not supported (this client reads version {STATE_VERSION}); a "
                "state file of an older conclave cannot be continued: start a new one"
            )
        try:
            state = cls._from_json(value)
        except ConclaveError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadState(f"not a client state file: {e!r}") from None
        state.key()
        for run in state.runs:
            try:
                if len(bytes.fromhex(run.key)) != 32:
                    raise ValueError
            except ValueError:
                raise BadState("a run key must be 64 hex digits") from None
        for mail in state.pending.values():
            mail.body_bytes()
        try:
            EnclaveConstraint.parse(state.constraint)
        except ConclaveError as e:
            raise BadState(f"constraint: {e}") from None
        return state

    @classmethod
    def _from_json(cls, v: Dict[str, Any]) -> "ClientState":
        def checkpoint(text: Any) -> StateCheckpoint:
            return StateCheckpoint.parse(str(text))

        runs = [KnownRun(str(r["key"]), checkpoint(r["checkpoint"]), bool(r["confirmed"])) for r in v.get("runs", [])]
        pending = {
            str(topic): PendingMail(
                sequence_number=int(p["sequence_number"]),
                body=str(p["body"]),
                attempts=[
                    Attempt(
                        key=str(a["key"]),
                        request_id=str(a["request_id"]),
                        runs=[checkpoint(c) for c in a["runs"]],
                        mail=None if a.get("mail") is None else str(a["mail"]),
                    )
                    for a in p["attempts"]
                ],
                processed=bool(p.get("processed", False)),
            )
            for topic, p in v.get("pending", {}).items()
        }
        inbox = [
            StoredReply(
                topic=str(r["topic"]),
                index=int(r["index"]),
                body=str(r["body"]),
                state=checkpoint(r["state"]),
                answers=None if r.get("answers") is None else int(r["answers"]),
                kind=str(r["kind"]),
            )
            for r in v.get("inbox", [])
        ]
        chain = ReplyChainVerifier.from_json(v["chain"]) if "chain" in v else ReplyChainVerifier()
        return cls(
            version=int(v["version"]),
            private_key=str(v["private_key"]),
            constraint=str(v["constraint"]),
            correlation_id=str(v["correlation_id"]),
            host=None if v.get("host") is None else str(v["host"]),
            runs=runs,
            chain=chain,
            next_sequence_numbers={str(k): int(n) for k, n in v.get("next_sequence_numbers", {}).items()},
            pending=pending,
            inbox=inbox,
            padding={str(k): PaddingPolicy.from_json(p) for k, p in v.get("padding", {}).items()},
        )

    def save(self, path: str) -> None:
        """Writes the state to ``path`` atomically, readable only by its owner."""
        tmp = path + ".tmp"
        # A leftover from a crash mid-save (or anything else put there) goes;
        # removing a symbolic link removes the link, never its target.
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StateFileError("remove the stale", path, e) from None
        try:
            # O_EXCL: refuses anything that already exists, links included.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as e:
            raise StateFileError("create", path, e) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StateFileError("write", path, e) from None
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise StateFileError("replace", path, e) from None
        directory = os.path.dirname(path) or "."
        try:
            # Make the rename itself durable (where directories can be opened).
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: str) -> "ClientState":
        """Reads a state file written by :meth:`save` (or by the Rust client)."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise StateFileError("read", path, e) from None
        return cls.from_bytes(raw)
