"""EnclaveClient: the client's rules (docs/wire-format.md section 3), applied to whatever a relay hands it.

Nothing a relay says is trusted. A mail is kept (byte for byte, with its
body so it can be encrypted again for a restarted enclave) until an answer
from the enclave itself settles it: its reply, a receipt, or the
application's refusal. Every reply must link into the client's reply chain
in order; replies that arrive early wait, missing ones are reported as
withheld, and a reply that does not link up is a fork. The rules are those
of the Rust client (``crates/client/src/client.rs``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

from . import frame as frames
from .constraint import EnclaveConstraint
from .errors import (
    AlreadyProcessed,
    BadReply,
    BadState,
    ClientError,
    ConclaveError,
    ForkDetected,
    InfoError,
    MailError,
    Refused,
    Rejected,
    RelayError,
    RollbackDetected,
    UnexpectedAnswer,
    Unsettled,
    UnreadableAttestation,
    Withheld,
    NotStarted,
)
from .frame import RequestFrame, ResponseFrame
from .freshness import StateCheckpoint
from .http import MailRelay, QueuedMail
from .info import EnclaveInstanceInfo, VerifiedEnclaveInfo
from .mail import MailHeader, decrypt_mail, encrypt_mail, validate_topic
from .padding import LargestSeen, PaddingPolicy
from .state import MAX_ATTEMPTS_KEPT, Attempt, ClientState, KnownRun, PendingMail, StoredReply, b64decode, b64encode

#: How many times one call delivers a pending mail before it gives up (the mail stays pending).
DELIVERIES = 4
#: How many polls one fetch makes at most (each acknowledges what it read).
FETCH_ROUNDS = 1000


@dataclass(frozen=True)
class EnclaveReply:
    """A decrypted, verified reply from the enclave."""

    topic: str
    #: Its position in this client's reply chain.
    sequence_number: int
    body: bytes
    #: The state that produced it.
    state: StateCheckpoint
    #: The sequence number of the mail it answers on ``topic``, if it answers one.
    answers: Optional[int]
    #: ``reply``, or ``refused`` (the body is then the application's message).
    kind: str

    def __repr__(self) -> str:
        return (
            f"EnclaveReply(topic={self.topic!r}, sequence_number={self.sequence_number}, body_len={len(self.body)}, "
            f"state={self.state}, answers={self.answers}, kind={self.kind!r})"
        )


@dataclass(frozen=True)
class _Receipt:
    pass


@dataclass(frozen=True)
class _Refusal:
    sequence_number: int
    message: str


_Settlement = Union[EnclaveReply, _Receipt, _Refusal]


def _system_now() -> int:
    return int(time.time())


class EnclaveClient:
    """Talks to one enclave through an untrusted relay.

    ``now`` is the clock the constraint's ``EXPIRE`` is judged by, ``sleep``
    what waits between deliveries; both are injectable for tests.
    """

    def __init__(
        self,
        relay: MailRelay,
        constraint: EnclaveConstraint,
        state: Optional[ClientState] = None,
        *,
        now: Callable[[], int] = _system_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.relay = relay
        self.constraint = constraint
        self.state = state if state is not None else ClientState.generate(constraint)
        self._now = now
        self._sleep = sleep
        self._verified: Optional[VerifiedEnclaveInfo] = None
        self._default_padding: Callable[[], PaddingPolicy] = LargestSeen
        self._autosave: Optional[str] = None
        self._target: Optional[str] = None
        self._settled: Dict[str, _Settlement] = {}
        self._failure: Optional[ClientError] = None
        self._announced = 0
        #: Queued mail dropped because it did not decrypt or came from no attested run.
        self.dropped_mail = 0

    def __repr__(self) -> str:
        return f"EnclaveClient(state={self.state!r})"

    # --- state -----------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        relay: MailRelay,
        state: ClientState,
        *,
        now: Callable[[], int] = _system_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> "EnclaveClient":
        """A client continuing from saved state (its constraint is the state's)."""
        state = ClientState.from_bytes(state.to_bytes())
        constraint = EnclaveConstraint.parse(state.constraint)
        return cls(relay, constraint, state, now=now, sleep=sleep)

    @classmethod
    def restore_from_file(
        cls,
        relay: MailRelay,
        path: str,
        *,
        now: Callable[[], int] = _system_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> "EnclaveClient":
        """A client continuing from a state file written by :meth:`save_to_file` (or the Rust client)."""
        return cls.restore(relay, ClientState.load(path), now=now, sleep=sleep)

    def autosave_to(self, path: str) -> None:
        """Saves the state to ``path`` now, before every delivery and after every accepted reply."""
        self._autosave = path
        self.save_to_file(path)

    def save_to_file(self, path: str) -> None:
        """Writes the state atomically, mode 0600."""
        self.state.save(path)

    def _persist(self) -> None:
        if self._autosave is not None:
            self.save_to_file(self._autosave)

    def set_padding(self, policy: Callable[[], PaddingPolicy]) -> None:
        """How topics without a policy yet are padded: a factory such as ``lambda: Fixed(4096)``."""
        self.state.padding.clear()
        self._default_padding = policy

    @property
    def enclave_info(self) -> Optional[VerifiedEnclaveInfo]:
        """The verified attestation, once started."""
        return self._verified

    def public_key(self) -> bytes:
        """This client's public key: what the enclave sees as the sender."""
        return self.state.key().public_key()

    def checkpoint(self) -> StateCheckpoint:
        """The latest enclave state this client has verified (compare ``counter:id`` with other parties)."""
        return self.state.chain.state

    def pending_topics(self) -> List[str]:
        """The topics with a mail still waiting for an answer."""
        return sorted(self.state.pending)

    def pending_body(self, topic: str) -> Optional[bytes]:
        """The body of the mail still waiting for an answer on ``topic``."""
        pending = self.state.pending.get(topic)
        return None if pending is None else pending.body_bytes()

    # --- attestation --------------------------------------------------------------

    def start(self) -> VerifiedEnclaveInfo:
        """Fetches the attestation and checks it against the constraint.

        Raises :class:`InfoError` if it does not verify and
        :class:`NotSatisfied` if it fails the constraint. A new run of the
        enclave is remembered: its replies are accepted, and its checkpoint
        is reported in every mail until an answer confirms it.
        """
        encoded = self.relay.attestation()
        try:
            info = EnclaveInstanceInfo.decode(encoded)
        except InfoError as e:
            raise UnreadableAttestation(e) from None
        verified = self.constraint.check(info, self._now())
        self.state.add_run(KnownRun(verified.encryption_key.hex(), verified.run, False))
        self._verified = verified
        return verified

    def _enclave_key(self) -> bytes:
        if self._verified is None:
            raise NotStarted()
        return self._verified.encryption_key

    # --- sending ---------------------------------------------------------------

    def send_mail(self, topic: str, body: bytes) -> Optional[EnclaveReply]:
        """Sends ``body`` as the next mail on ``topic``; returns the enclave's reply (``None``: a receipt).

        A mail still pending on the topic is settled first. The mail is kept
        until the enclave itself answers it; if it has no answer after a few
        deliveries this raises :class:`Unsettled` and the next send or poll
        goes on with the same mail.
        """
        validate_topic(topic)
        self._enclave_key()
        if topic in self.state.pending:
            try:
                earlier = self._settle(topic)
                if earlier is not None:
                    self._stash(earlier)
            except Refused:
                pass
        number = self.state.next_sequence_numbers.get(topic, 0)
        self.state.next_sequence_numbers[topic] = number + 1
        self.state.pending[topic] = PendingMail(number, b64encode(bytes(body)))
        return self._settle(topic)

    def resend_pending(self, topic: str) -> Optional[EnclaveReply]:
        """Delivers again the mail pending on ``topic`` until it is answered."""
        if topic not in self.state.pending:
            return None
        return self._settle(topic)

    def _stash(self, reply: EnclaveReply) -> None:
        self.state.inbox.append(
            StoredReply(reply.topic, reply.sequence_number, b64encode(reply.body), reply.state, reply.answers, reply.kind)
        )

    def _settle(self, topic: str) -> Optional[EnclaveReply]:
        self._target = topic
        self._settled.clear()
        try:
            return self._settle_target(topic)
        finally:
            self._target = None
            self._settled.clear()

    def _settle_target(self, topic: str) -> Optional[EnclaveReply]:
        last = RelayError("NOT_SENT", "not delivered yet")
        for delivery in range(DELIVERIES):
            if delivery > 0:
                self._sleep((25 << delivery) / 1000)
                # The host may have restarted the enclave: find out before encrypting again.
                try:
                    self.start()
                except RelayError:
                    pass
                # The answer may be waiting in the queue already.
                self._fetch()
                done = self._take_settlement(topic)
                if done is not None:
                    return done[0]
            pending = self.state.pending.get(topic)
            if pending is not None and pending.processed:
                # The enclave said it processed the mail: its answer is in the chain.
                self._fetch()
                done = self._take_settlement(topic)
                if done is not None:
                    return done[0]
                last = RelayError("ANSWER_MISSING", "the enclave processed the mail; its answer is not queued")
                continue
            mail = self._attempt_bytes(topic)
            self._persist()
            try:
                direct = self.relay.deliver(self.state.correlation_id, mail)
            except RelayError as error:
                if error.code == RelayError.UNREACHABLE:
                    self._persist()
                    raise Unsettled(topic, self._pending_number(topic), error) from None
                last = error
                continue
            self._process([] if direct is None else [direct], whole_queue=False)
            if topic in self._settled or self._failure is not None:
                done = self._take_settlement(topic)
                return None if done is None else done[0]
            # The answer may sit behind replies still in the queue.
            self._fetch()
            done = self._take_settlement(topic)
            if done is not None:
                return done[0]
            last = RelayError("NO_ANSWER", "the host returned no answer to the mail")
        self._persist()
        raise Unsettled(topic, self._pending_number(topic), last)

    def _pending_number(self, topic: str) -> int:
        pending = self.state.pending.get(topic)
        return 0 if pending is None else pending.sequence_number

    def _take_settlement(self, topic: str) -> Optional[Tuple[Optional[EnclaveReply]]]:
        """``(reply or None,)`` once ``topic``'s mail is settled; raises what the batch raised."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        settlement = self._settled.pop(topic, None)
        if settlement is None:
            return None
        if isinstance(settlement, EnclaveReply):
            return (settlement,)
        if isinstance(settlement, _Receipt):
            return (None,)
        raise Refused(topic, settlement.sequence_number, settlement.message)

    def _attempt_bytes(self, topic: str) -> bytes:
        """The last attempt's bytes if encrypted to the current run; else a new encryption of the same mail."""
        enclave_key = self._enclave_key()
        key_hex = enclave_key.hex()
        pending = self.state.pending.get(topic)
        if pending is None:
            raise BadState("no pending mail")
        if pending.attempts and pending.attempts[-1].key == key_hex and pending.attempts[-1].mail is not None:
            return b64decode(pending.attempts[-1].mail, "a stored mail")
        body = pending.body_bytes()
        request_id = os.urandom(16)
        runs = self.state.unconfirmed_runs()
        framed = RequestFrame(request_id, self.state.chain.head, tuple(runs)).wrap(body)
        padding = self.state.padding.setdefault(topic, self._default_padding())
        min_size = padding.min_size_for(len(framed))
        header = MailHeader(topic, pending.sequence_number)
        mail = encrypt_mail(self.state.key(), enclave_key, header, framed, min_size)
        for attempt in pending.attempts:
            attempt.mail = None
        pending.attempts.append(Attempt(key_hex, request_id.hex(), runs, b64encode(mail)))
        del pending.attempts[: max(0, len(pending.attempts) - MAX_ATTEMPTS_KEPT)]
        return mail

    # --- receiving -------------------------------------------------------------

    def _fetch(self) -> None:
        """Fetches every queued reply (poll after poll while they come) and processes them."""
        for _ in range(FETCH_ROUNDS):
            try:
                queued = self.relay.poll(self.state.correlation_id)
            except RelayError as e:
                if e.code == "UNKNOWN_CORRELATION_ID":
                    break  # Nothing was ever delivered under this id.
                raise
            if not queued or self._process(queued, whole_queue=True) == 0:
                break
        if self._announced > self.state.chain.head.index:
            self._fail(Withheld(self.state.chain.head.index + 1))

    def poll_mail(self) -> List[EnclaveReply]:
        """Settles pending mail, fetches the whole queue, and returns the inbox, oldest first."""
        self._enclave_key()
        for topic in self.pending_topics():
            try:
                reply = self._settle(topic)
                if reply is not None:
                    self._stash(reply)
            except (Refused, Unsettled):
                # Keep polling: the rest of the queue may still be readable.
                pass
        self._fetch()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        inbox, self.state.inbox = self.state.inbox, []
        replies = [
            EnclaveReply(r.topic, r.index, b64decode(r.body, "a stored reply"), r.state, r.answers, r.kind)
            for r in inbox
        ]
        self._persist()
        return replies

    def _process(self, queued: List[QueuedMail], whole_queue: bool) -> int:
        """Checks a batch, accepts what links into the chain in order, saves, then acknowledges; returns how many.

        Errors go to ``self._failure`` for the caller; the batch is still
        processed. ``whole_queue``: the batch is the head of the host's
        queue, so a reply missing before a later one was never queued.
        """
        key = self.state.key()
        in_chain: List[Tuple[int, ResponseFrame, bytes, str]] = []
        handled: List[int] = []
        reattested = False
        for mail in queued:
            try:
                opened = decrypt_mail(key, mail.bytes)
            except MailError:
                # Not for this client, or mangled by the host: drop it. A real
                # reply lost this way shows up as a gap in the chain.
                self.dropped_mail += 1
                handled.append(mail.id)
                continue
            if not self.state.knows_key(opened.sender) and not reattested:
                # Perhaps a run this client has not attested yet.
                reattested = True
                try:
                    self.start()
                except ConclaveError:
                    pass
            if not self.state.knows_key(opened.sender):
                self.dropped_mail += 1
                handled.append(mail.id)
                continue
            try:
                frame, body = ResponseFrame.unwrap(opened.body)
            except ConclaveError as e:
                self._fail(BadReply(f"its response frame is malformed: {e}"))
                handled.append(mail.id)
                continue
            if frame.kind == frames.REJECTED:
                self._rejection(frame)
                handled.append(mail.id)
            else:
                in_chain.append((mail.id, frame, body, opened.header.topic))
        in_chain.sort(key=lambda item: item[1].link.index if item[1].link is not None else 0)
        held: Optional[int] = None
        for mail_id, frame, body, topic in in_chain:
            link = frame.link
            if link is None:
                continue
            verdict = self.state.chain.check(link, frame.state)
            if verdict.kind == "next":
                self.state.chain.advance(link, frame.state)
                self._accept(topic, link.index, frame, body)
                handled.append(mail_id)
            elif verdict.kind in ("duplicate", "stale"):
                handled.append(mail_id)
            elif verdict.kind == "held":
                if held is None:
                    held = verdict.missing
            elif verdict.kind == "fork":
                self._fail(
                    ForkDetected(f"reply {verdict.index} does not link to the replies this client verified before it")
                )
            else:
                self._fail(
                    ForkDetected(
                        f"a reply comes from state {verdict.received}, older than state {verdict.previous} of the "
                        "reply before it"
                    )
                )
        if held is not None and whole_queue and held <= self.state.chain.head.index + 1:
            # The queue is in commit order: a reply that sits before a later
            # one in the chain and is not there was never queued here.
            self._fail(Withheld(held))
        # Save what was accepted before the host may delete it.
        self._persist()
        if handled:
            try:
                self.relay.acknowledge(self.state.correlation_id, handled)
            except RelayError:
                # A lost acknowledgement only means the replies come again, as
                # duplicates, which the chain drops.
                pass
        return len(handled)

    def _fail(self, error: ClientError) -> None:
        if self._failure is None:
            self._failure = error

    def _accept(self, topic: str, index: int, frame: ResponseFrame, body: bytes) -> None:
        """Applies an in-chain reply that is next in the chain."""
        answers: Optional[int] = None
        answer = frame.answers
        if answer is not None:
            if answer.topic != topic:
                self._fail(BadReply("it answers a mail on another topic than its own"))
                return
            if answer.sequence_number >= self.state.next_sequence_numbers.get(topic, 0):
                self._fail(UnexpectedAnswer(topic, answer.sequence_number))
                return
            answers = answer.sequence_number
            # The runs the answered attempt reported are in the enclave's history.
            request = answer.request_id.hex()
            pending = self.state.pending.get(topic)
            attempt = None
            if pending is not None:
                attempt = next((a for a in pending.attempts if a.request_id == request), None)
            confirmed = attempt.runs if attempt is not None else []
            for run in self.state.runs:
                if run.checkpoint in confirmed:
                    run.confirmed = True
        pending = self.state.pending.get(topic)
        settles = answer is not None and pending is not None and pending.sequence_number == answer.sequence_number
        kind = "refused" if frame.kind == frames.REFUSED else "reply"
        reply = EnclaveReply(topic, index, body, frame.state, answers, kind)
        if settles:
            del self.state.pending[topic]
        if settles and self._target == topic:
            if frame.kind == frames.RECEIPT:
                self._settled[topic] = _Receipt()
            elif frame.kind == frames.REFUSED:
                self._settled[topic] = _Refusal(answers or 0, body.decode("utf-8", errors="replace"))
            else:
                self._settled[topic] = reply
            return
        if frame.kind in (frames.REPLY, frames.REFUSED):
            self._stash(reply)
        # A receipt for a mail already settled tells nothing new.

    def _rejection(self, frame: ResponseFrame) -> None:
        """Applies an authenticated rejection, if it names a current attempt."""
        answer = frame.answers
        rejection = frame.rejection
        if answer is None or rejection is None:
            return
        pending = self.state.pending.get(answer.topic)
        request = answer.request_id.hex()
        if (
            pending is None
            or pending.sequence_number != answer.sequence_number
            or not any(a.request_id == request for a in pending.attempts)
        ):
            # An old rejection, of an attempt this client no longer has.
            return
        topic = answer.topic
        head = self.state.chain.head.index
        if rejection.code == "SEQUENCE_REPLAYED":
            # Processed before: the answer is in the reply chain.
            pending.processed = True
            self._announced = max(self._announced, rejection.chain_index)
            if rejection.chain_index <= head:
                self._fail(AlreadyProcessed(topic, answer.sequence_number))
        elif rejection.code == "STATE_ROLLBACK":
            self._fail(RollbackDetected(rejection.chain_index, head))
        elif rejection.code == "STATE_FORK":
            self._fail(
                ForkDetected(
                    f"the enclave's history does not contain what this client was shown (reply {head} of "
                    f"{rejection.chain_index} it records, or a run this client attested)"
                )
            )
        else:
            self._fail(
                Rejected(topic, answer.sequence_number, rejection.code, rejection.expected, rejection.chain_index)
            )
