"""The client library against a real `conclave host --example reverse` (simulation mode), over HTTP."""

from __future__ import annotations

import json
import os
import pathlib
import urllib.request
from typing import Any, Dict, List, Optional

import pytest

from conclave_client import (
    EnclaveClient,
    EnclaveConstraint,
    HttpRelay,
    QueuedMail,
    RelayError,
    RollbackDetected,
    Unsettled,
)
from conclave_client.mail import MailDecryptor, peek_header

from hosting import Host


def client_for(host: Host, state_file: pathlib.Path, relay: Optional[HttpRelay] = None) -> EnclaveClient:
    client = EnclaveClient(relay or HttpRelay(host.url), EnclaveConstraint.parse(host.constraint()), sleep=lambda _: None)
    client.autosave_to(str(state_file))
    client.start()
    return client


def queued(host: Host, correlation_id: str) -> List[Dict[str, Any]]:
    with urllib.request.urlopen(f"{host.url}/v1/mail/{correlation_id}") as response:
        return list(json.loads(response.read())["replies"])


class LosingRelay(HttpRelay):
    """Delivers the mail, then loses the host's answer, as a dropped connection would."""

    def __init__(self, url: str, lose: int) -> None:
        super().__init__(url)
        self.lose = lose

    def deliver(self, correlation_id: str, mail: bytes) -> Optional[QueuedMail]:
        answer = super().deliver(correlation_id, mail)
        if self.lose > 0:
            self.lose -= 1
            raise RelayError(RelayError.UNREACHABLE, "connection reset (lost by the test)")
        return answer


def test_attest_then_send_on_two_topics(host: Host, tmp_path: pathlib.Path) -> None:
    client = client_for(host, tmp_path / "client.json")
    info = client.enclave_info
    assert info is not None and info.mode == "SIMULATION" and info.identity.security == "INSECURE"
    first = client.send_mail("alpha", b"hello")
    assert first is not None and first.body == b"olleh" and first.answers == 0 and first.topic == "alpha"
    second = client.send_mail("beta", b"abc")
    assert second is not None and second.body == b"cba" and second.answers == 0
    third = client.send_mail("alpha", b"again")
    assert third is not None and third.body == b"niaga" and third.answers == 1
    # Numbers are per topic; the reply chain counts every answer, in order.
    assert client.state.next_sequence_numbers == {"alpha": 2, "beta": 1}
    assert [first.sequence_number, second.sequence_number, third.sequence_number] == [1, 2, 3]
    assert client.state.chain.head.index == 3 and not client.state.pending
    # The run the client attested is confirmed by the answers.
    assert [r.confirmed for r in client.state.runs] == [True]
    # Every answer was acknowledged: nothing waits in the host's queue.
    assert queued(host, client.state.correlation_id) == []
    # The state file is the client's key: only its owner may read it.
    assert os.stat(tmp_path / "client.json").st_mode & 0o777 == 0o600


def test_a_body_over_one_mebibyte_round_trips(host: Host, tmp_path: pathlib.Path) -> None:
    client = client_for(host, tmp_path / "client.json")
    body = os.urandom(1024 * 1024 + 12345)
    reply = client.send_mail("big", body)
    assert reply is not None and reply.body == body[::-1]


def test_a_large_reply_decrypts_as_a_stream(host: Host, tmp_path: pathlib.Path) -> None:
    # Deliver by hand, keep the raw reply from the queue, and decrypt it in small pieces.
    lose = LosingRelay(host.url, lose=1)
    client = client_for(host, tmp_path / "client.json", lose)
    body = os.urandom(300_000)
    with pytest.raises(Unsettled):
        client.send_mail("big", body)
    (waiting,) = queued(host, client.state.correlation_id)
    import base64

    raw = base64.b64decode(waiting["mail"])
    assert peek_header(raw).topic == "big"
    decryptor = MailDecryptor(client.state.key())
    pieces = [decryptor.update(raw[i : i + 7919]) for i in range(0, len(raw), 7919)]
    opened = decryptor.finish()
    assert len(pieces) > 30 and opened.sender == client.enclave_info.encryption_key  # type: ignore[union-attr]
    from conclave_client import ResponseFrame

    frame, reply_body = ResponseFrame.unwrap(b"".join(pieces))
    assert frame.kind == "reply" and reply_body == body[::-1]


def test_a_lost_answer_is_fetched_by_poll_and_the_mail_is_processed_once(host: Host, tmp_path: pathlib.Path) -> None:
    relay = LosingRelay(host.url, lose=1)
    client = client_for(host, tmp_path / "client.json", relay)
    with pytest.raises(Unsettled) as unsettled:
        client.send_mail("t", b"lost")
    assert unsettled.value.sequence_number == 0 and "kept and will be sent again" in str(unsettled.value)
    # The answer waits in the host's queue; the mail is still pending in the saved state.
    assert len(queued(host, client.state.correlation_id)) == 1
    restored = EnclaveClient.restore_from_file(HttpRelay(host.url), str(tmp_path / "client.json"))
    assert restored.pending_body("t") == b"lost"
    restored.autosave_to(str(tmp_path / "client.json"))
    restored.start()
    # Poll settles the pending mail (the same bytes again: the enclave says it
    # already processed them) and finds its answer in the queue.
    replies = restored.poll_mail()
    assert [(r.topic, r.body, r.answers) for r in replies] == [("t", b"tsol", 0)]
    assert restored.pending_topics() == [] and restored.state.chain.head.index == 1
    # Acknowledged once saved: the queue is empty, and nothing is returned twice.
    assert queued(host, restored.state.correlation_id) == []
    assert restored.poll_mail() == []
    follow = restored.send_mail("t", b"next")
    assert follow is not None and follow.body == b"txen" and follow.answers == 1


def test_a_restarted_host_is_attested_again(host: Host, tmp_path: pathlib.Path) -> None:
    client = client_for(host, tmp_path / "client.json")
    before = client.enclave_info
    assert client.send_mail("t", b"one") is not None
    host.restart()
    # The client still holds the old run's key; the delivery fails, it attests
    # the new run and encrypts the same mail again for it.
    reply = client.send_mail("t", b"two")
    assert reply is not None and reply.body == b"owt" and reply.answers == 1
    after = client.enclave_info
    assert before is not None and after is not None
    assert after.encryption_key != before.encryption_key
    assert after.run.counter > before.run.counter
    assert [r.confirmed for r in client.state.runs] == [True, True]
    assert client.state.chain.head.index == 2


def test_a_rolled_back_host_is_detected(host: Host, tmp_path: pathlib.Path) -> None:
    client = client_for(host, tmp_path / "client.json")
    assert client.send_mail("t", b"one") is not None
    host.stop()
    host.copy_data(tmp_path / "backup")
    host.start()
    assert client.send_mail("t", b"two") is not None
    assert client.state.chain.head.index == 2
    host.stop()
    host.restore_data(tmp_path / "backup")
    host.start()
    with pytest.raises(RollbackDetected) as detected:
        client.send_mail("t", b"three")
    assert (detected.value.client_index, detected.value.enclave_index) == (2, 1)
    assert "rollback detected" in str(detected.value)
    # The mail is kept: nothing the rolled-back enclave said settled it.
    assert client.pending_body("t") == b"three"
