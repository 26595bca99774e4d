"""The client's rules against a host that lies, drops, replays and forges (docs/wire-format.md section 3)."""

from __future__ import annotations

import os
import pathlib
from typing import List

import pytest

from conclave_client import (
    AlreadyProcessed,
    ClientState,
    EnclaveClient,
    EnclaveConstraint,
    ForkDetected,
    InfoError,
    MailHeader,
    NotSatisfied,
    PrivateKey,
    Refused,
    Rejected,
    RelayError,
    RollbackDetected,
    UnexpectedAnswer,
    Unsettled,
    Withheld,
    encrypt_mail,
)
from conclave_client.frame import Answer
from conclave_client.freshness import ChainLink, StateCheckpoint

from fake_enclave import CONSTRAINT, TIMESTAMP, FakeEnclave, Request


def client_of(enclave: FakeEnclave, constraint: str = CONSTRAINT, now: int = TIMESTAMP) -> EnclaveClient:
    client = EnclaveClient(enclave, EnclaveConstraint.parse(constraint), now=lambda: now, sleep=lambda _: None)
    client.start()
    return client


def test_the_first_mail_reports_the_attested_run_and_an_empty_chain() -> None:
    enclave = FakeEnclave()
    client = client_of(enclave)
    reply = client.send_mail("t", b"abc")
    assert reply is not None and reply.body == b"cba"
    (request,) = enclave.requests
    assert request.frame.runs == (enclave.run,) and request.frame.chain.index == 0
    # The answer confirmed the run: the next mail no longer reports it.
    client.send_mail("t", b"x")
    assert enclave.requests[1].frame.runs == () and enclave.requests[1].frame.chain.index == 1


def test_host_errors_settle_nothing_and_the_same_bytes_are_sent_again() -> None:
    enclave = FakeEnclave(failure=RelayError("SERVICE_UNAVAILABLE", "busy"))
    client = client_of(enclave)
    with pytest.raises(Unsettled) as unsettled:
        client.send_mail("t", b"body")
    assert unsettled.value.last.code == "SERVICE_UNAVAILABLE"
    assert len(enclave.deliveries) == 4 and len(set(enclave.deliveries)) == 1
    assert client.pending_body("t") == b"body"
    enclave.failure = None
    reply = client.resend_pending("t")
    assert reply is not None and reply.body == b"ydob"
    assert enclave.deliveries[-1] == enclave.deliveries[0]
    assert client.state.next_sequence_numbers == {"t": 1}


def test_an_unreachable_host_stops_at_once_and_keeps_the_mail() -> None:
    enclave = FakeEnclave(failure=RelayError(RelayError.UNREACHABLE, "refused"))
    client = client_of(enclave)
    with pytest.raises(Unsettled):
        client.send_mail("t", b"body")
    assert len(enclave.deliveries) == 1 and client.pending_body("t") == b"body"


def test_a_receipt_settles_with_no_reply_and_a_refusal_is_authenticated() -> None:
    def respond(enclave: FakeEnclave, r: Request) -> List[bytes]:
        if r.body == b"refuse":
            return [enclave.in_chain(r.sender, "refused", r.topic, r.answer(), b"bid too low")]
        return [enclave.in_chain(r.sender, "receipt", r.topic, r.answer())]

    enclave = FakeEnclave(respond=respond)
    client = client_of(enclave)
    assert client.send_mail("t", b"ok") is None
    with pytest.raises(Refused) as refused:
        client.send_mail("t", b"refuse")
    assert (refused.value.sequence_number, refused.value.refusal) == (1, "bid too low")
    # The refused number is used up; the next mail is number 2.
    assert client.pending_topics() == [] and client.state.next_sequence_numbers == {"t": 2}


def test_a_rejection_of_an_old_attempt_is_ignored() -> None:
    def respond(enclave: FakeEnclave, r: Request) -> List[bytes]:
        forged = Answer(r.topic, r.sequence_number, bytes(16))
        return [enclave.rejection(r, "STATE_ROLLBACK", answer=forged)]

    enclave = FakeEnclave(respond=respond)
    client = client_of(enclave)
    with pytest.raises(Unsettled):
        client.send_mail("t", b"x")
    assert client.pending_body("t") == b"x"


def test_rejections_naming_the_attempt_report_rollback_fork_and_gap() -> None:
    for code, error in (("STATE_ROLLBACK", RollbackDetected), ("STATE_FORK", ForkDetected), ("SEQUENCE_GAP", Rejected)):

        def respond(e: FakeEnclave, r: Request, code: str = code) -> List[bytes]:
            return [e.rejection(r, code, expected=3)]

        enclave = FakeEnclave(respond=respond)
        client = client_of(enclave)
        with pytest.raises(error) as raised:
            client.send_mail("t", b"x")
        if code == "SEQUENCE_GAP":
            assert "SEQUENCE_GAP: it expects sequence number 3 but this mail is 0" in str(raised.value)
        assert client.pending_body("t") == b"x", code


def test_a_replayed_mail_without_an_answer_in_the_chain_is_reported() -> None:
    enclave = FakeEnclave(respond=lambda e, r: [e.rejection(r, "SEQUENCE_REPLAYED")])
    client = client_of(enclave)
    with pytest.raises(AlreadyProcessed):
        client.send_mail("t", b"x")


def test_a_reply_ahead_of_a_missing_one_is_withheld() -> None:
    def respond(enclave: FakeEnclave, r: Request) -> List[bytes]:
        enclave.in_chain(r.sender, "reply", r.topic, None, b"dropped by the host")
        return [enclave.in_chain(r.sender, "reply", r.topic, r.answer(), b"second")]

    enclave = FakeEnclave(respond=respond)
    client = client_of(enclave)
    with pytest.raises(Withheld) as withheld:
        client.send_mail("t", b"x")
    assert withheld.value.missing == 1
    # The held reply stays in the queue: it was not acknowledged.
    assert len(enclave.queue) == 1 and enclave.acknowledged == []


def test_two_replies_at_one_position_are_a_fork() -> None:
    enclave = FakeEnclave()
    client = client_of(enclave)
    reply = client.send_mail("t", b"x")
    assert reply is not None
    me = client.public_key()
    other_state = StateCheckpoint(reply.state.counter, bytes(32))
    enclave.post_raw(enclave.mail_at(me, "t", ChainLink(1, bytes(32)), other_state, b"forked"))
    with pytest.raises(ForkDetected):
        client.poll_mail()


def test_a_replayed_reply_is_dropped_as_a_duplicate() -> None:
    enclave = FakeEnclave()
    client = client_of(enclave)
    client.send_mail("t", b"x")
    (reply,) = enclave.posted
    enclave.post_raw(reply)
    assert client.poll_mail() == []
    assert client.dropped_mail == 0 and enclave.queue == [] and client.state.chain.head.index == 1
    # The client's own mail, handed back by the host, is not for it: dropped and counted.
    enclave.post_raw(enclave.deliveries[0])
    assert client.poll_mail() == [] and client.dropped_mail == 1


def test_mail_from_no_attested_run_is_dropped_and_counted() -> None:
    enclave = FakeEnclave()
    client = client_of(enclave)
    stranger = PrivateKey.generate()
    enclave.post_raw(encrypt_mail(stranger, client.public_key(), MailHeader("t", 1), b"\x01" * 100))
    enclave.post_raw(os.urandom(200))
    assert client.poll_mail() == []
    assert client.dropped_mail == 2 and enclave.queue == []


def test_an_answer_to_a_mail_never_sent_is_an_error() -> None:
    enclave = FakeEnclave()
    client = client_of(enclave)
    enclave.post_raw(enclave.in_chain(client.public_key(), "reply", "t", Answer("t", 5, bytes(16)), b"?"))
    with pytest.raises(UnexpectedAnswer):
        client.poll_mail()


def test_unsolicited_replies_wait_in_the_saved_inbox(tmp_path: pathlib.Path) -> None:
    enclave = FakeEnclave()
    client = client_of(enclave)
    path = tmp_path / "state.json"
    client.autosave_to(str(path))
    client.send_mail("t", b"x")
    enclave.post_raw(enclave.in_chain(client.public_key(), "reply", "results", None, b"everyone's result"))
    # Another copy of the client fetches and saves it; the first one then finds it in the file.
    restored = EnclaveClient.restore_from_file(enclave, str(path), now=lambda: TIMESTAMP)
    restored.autosave_to(str(path))
    restored.start()
    replies = restored.poll_mail()
    assert [(r.topic, r.body, r.answers) for r in replies] == [("results", b"everyone's result", None)]
    assert ClientState.load(str(path)).inbox == []


def test_expire_is_judged_by_the_injected_clock() -> None:
    enclave = FakeEnclave()
    assert client_of(enclave, CONSTRAINT + " EXPIRE:PT1M", now=TIMESTAMP + 60).enclave_info is not None
    with pytest.raises(NotSatisfied) as expired:
        client_of(enclave, CONSTRAINT + " EXPIRE:PT1M", now=TIMESTAMP + 61)
    assert str(expired.value) == "constraint not satisfied: EXPIRE:PT1M: attestation is 61 s old, at most 60 s allowed"
    with pytest.raises(NotSatisfied) as unsigned:
        client_of(enclave, CONSTRAINT + " SIMKEY:" + "34b4d9043156cb6dcf0beb0a2949b7559c940d2bcb6dbe8c53a9b30278e3a746")
    assert "no key (mock evidence is unsigned)" in str(unsigned.value)


def test_a_forged_attestation_is_refused() -> None:
    enclave = FakeEnclave()
    good = enclave.info()
    forged = type(good)(good.data_signing_key, PrivateKey.generate().public_key(), good.run, good.run_signature, good.evidence)
    enclave.attestation = lambda: forged.encode()  # type: ignore[method-assign]
    with pytest.raises(InfoError) as error:
        client_of(enclave)
    assert error.value.kind == "key_binding"
