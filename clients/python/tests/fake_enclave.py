"""An in-process stand-in for an enclave behind a hostile host: for tests of the client's rules.

It attests with mock evidence, reads client mail with the library's own
primitives and answers as the runtime does (reply chain, answers, rejections);
tests then reorder, drop, replay or forge what it queued.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conclave_client import MailHeader, PrivateKey, QueuedMail, RelayError, RequestFrame, ResponseFrame, decrypt_mail
from conclave_client import encrypt_mail
from conclave_client.frame import Answer, Rejection
from conclave_client.freshness import ChainLink, ReplyChain, StateCheckpoint
from conclave_client.info import EnclaveInstanceInfo, EnclaveReport, Evidence, key_binding, run_message

CODE_HASH = bytes([0xC0]) * 32
TIMESTAMP = 1_800_000_000
CONSTRAINT = f"C:{CODE_HASH.hex()} SEC:INSECURE"


@dataclass
class Request:
    """A client mail the fake enclave read."""

    sender: bytes
    topic: str
    sequence_number: int
    frame: RequestFrame
    body: bytes

    def answer(self) -> Answer:
        return Answer(self.topic, self.sequence_number, self.frame.request_id)


@dataclass
class FakeEnclave:
    """A relay and the enclave behind it, in one object."""

    key: PrivateKey = field(default_factory=PrivateKey.generate)
    signing: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    run: StateCheckpoint = StateCheckpoint(1, hashlib.sha256(b"run").digest())
    timestamp: int = TIMESTAMP
    #: What to do with each mail: by default, answer with the body reversed.
    respond: Optional[Callable[["FakeEnclave", Request], List[bytes]]] = None
    queue: List[QueuedMail] = field(default_factory=list)
    requests: List[Request] = field(default_factory=list)
    deliveries: List[bytes] = field(default_factory=list)
    chain: ReplyChain = field(default_factory=ReplyChain)
    state: Optional[StateCheckpoint] = None
    next_id: int = 1
    #: Raised by `deliver` instead of delivering, while set.
    failure: Optional[RelayError] = None
    acknowledged: List[int] = field(default_factory=list)
    #: Every mail queued, in order.
    posted: List[bytes] = field(default_factory=list)

    def info(self) -> EnclaveInstanceInfo:
        signing_key = self.signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        encryption_key = self.key.public_key()
        report = EnclaveReport(
            CODE_HASH, bytes(32), 1, 0, key_binding(signing_key, encryption_key), self.timestamp
        )
        signature = self.signing.sign(run_message(encryption_key, self.run))
        return EnclaveInstanceInfo(signing_key, encryption_key, self.run, signature, Evidence(1, report=report))

    # --- the relay ---------------------------------------------------------------

    def attestation(self) -> bytes:
        return self.info().encode()

    def deliver(self, correlation_id: str, mail: bytes) -> Optional[QueuedMail]:
        self.deliveries.append(mail)
        if self.failure is not None:
            raise self.failure
        try:
            opened = decrypt_mail(self.key, mail)
        except Exception:
            raise RelayError("MAIL_INVALID", "the enclave could not decrypt the mail") from None
        frame, body = RequestFrame.unwrap(opened.body)
        request = Request(opened.sender, opened.header.topic, opened.header.sequence_number, frame, body)
        self.requests.append(request)
        before = len(self.queue)
        for raw in (self.respond or FakeEnclave.reverse)(self, request):
            self.post_raw(raw)
        return self.queue[before] if len(self.queue) > before else None

    def poll(self, correlation_id: str) -> List[QueuedMail]:
        return list(self.queue)

    def acknowledge(self, correlation_id: str, ids: List[int]) -> None:
        self.acknowledged.extend(ids)
        self.queue = [m for m in self.queue if m.id not in ids]

    # --- what the enclave sends -----------------------------------------------------

    def post_raw(self, mail: bytes) -> None:
        self.posted.append(mail)
        self.queue.append(QueuedMail(self.next_id, mail))
        self.next_id += 1

    def next_state(self) -> StateCheckpoint:
        base = self.state or self.run
        self.state = base.next(bytes(16))
        return self.state

    def in_chain(self, to: bytes, kind: str, topic: str, answer: Optional[Answer], body: bytes = b"") -> bytes:
        """The next in-chain mail to ``to`` (advancing the chain)."""
        state = self.next_state()
        link = self.chain.link()
        self.chain = self.chain.extend(state)
        frame = ResponseFrame(kind, state, link, answer)
        return encrypt_mail(self.key, to, MailHeader(topic, link.index), frame.wrap(body))

    def mail_at(self, to: bytes, topic: str, link: ChainLink, state: StateCheckpoint, body: bytes) -> bytes:
        """An in-chain reply at any position (for forks), not advancing the chain."""
        frame = ResponseFrame("reply", state, link, None)
        return encrypt_mail(self.key, to, MailHeader(topic, link.index), frame.wrap(body))

    def rejection(self, request: Request, code: str, expected: int = 0, answer: Optional[Answer] = None) -> bytes:
        state = self.state or self.run
        frame = ResponseFrame(
            "rejected",
            state,
            None,
            answer or request.answer(),
            Rejection(code, expected, request.sequence_number, self.chain.index),
        )
        return encrypt_mail(self.key, request.sender, MailHeader(request.topic, 0), frame.wrap(b""))

    @staticmethod
    def reverse(enclave: "FakeEnclave", request: Request) -> List[bytes]:
        return [enclave.in_chain(request.sender, "reply", request.topic, request.answer(), request.body[::-1])]
