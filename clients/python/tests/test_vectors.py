"""Every shared known-answer vector (crates/core/tests/vectors/*.json) reproduced byte for byte and verdict for verdict."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from conclave_client import (
    ConclaveError,
    EnclaveConstraint,
    EnclaveInstanceInfo,
    FrameError,
    InfoError,
    MailHeader,
    PrivateKey,
    RequestFrame,
    ResponseFrame,
    decrypt_mail,
    encrypt_mail,
)
from conclave_client.frame import Answer, Rejection
from conclave_client.freshness import (
    ChainLink,
    ReplyChain,
    ReplyChainVerifier,
    StateCheckpoint,
    chain_digest,
    check_request,
    state_id,
)
from conclave_client.info import key_binding, run_message

from conftest import VECTORS, vector

VERIFIED_AT = 1_800_000_000


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def checkpoint(value: Dict[str, Any]) -> StateCheckpoint:
    return StateCheckpoint(value["counter"], h(value["id"]))


def chain(value: Dict[str, Any]) -> ReplyChain:
    return ReplyChain(value["index"], h(value["digest"]))


def test_every_vector_file_has_a_test() -> None:
    covered = {
        "mail-v2.json",
        "frames-v1.json",
        "exchange-v2.json",
        "freshness-v1.json",
        "info-v2.json",
        "attestations-v2.json",
        "constraints-v1.json",
    }
    on_disk = {p.name for p in VECTORS.glob("*.json")}
    assert on_disk - covered == set(), "a new vector file needs a test here"


# --- mail-v2.json ------------------------------------------------------------------


def test_mail_is_reproduced_byte_for_byte() -> None:
    v = vector("mail-v2.json")
    header = MailHeader(v["topic"], v["sequence_number"], h(v["envelope"]))
    assert header.encode_prefix().hex() == v["prologue"]
    sender = PrivateKey(h(v["sender_private_key"]))
    assert sender.public_key().hex() == v["sender_public_key"]
    mail = encrypt_mail(
        sender, h(v["recipient_public_key"]), header, h(v["body"]), v["min_size"], ephemeral=h(v["ephemeral_private_key"])
    )
    assert mail.hex() == v["mail"]


def test_mail_decrypts_with_its_authenticated_sender() -> None:
    v = vector("mail-v2.json")
    opened = decrypt_mail(PrivateKey(h(v["recipient_private_key"])), h(v["mail"]))
    assert opened.body == h(v["body"])
    assert opened.sender.hex() == v["sender_public_key"]
    assert opened.header == MailHeader(v["topic"], v["sequence_number"], h(v["envelope"]))


# --- frames-v1.json ----------------------------------------------------------------


def test_request_frames() -> None:
    for case in vector("frames-v1.json")["requests"]:
        frame = RequestFrame(
            h(case["request_id"]), chain(case["chain"]), tuple(checkpoint(r) for r in case["runs"])
        )
        assert frame.wrap(h(case["body"])).hex() == case["encoded"], case["name"]
        assert RequestFrame.unwrap(h(case["encoded"])) == (frame, h(case["body"])), case["name"]


def _response(case: Dict[str, Any]) -> ResponseFrame:
    link = None if case["link"] is None else ChainLink(case["link"]["index"], h(case["link"]["previous"]))
    a = case["answers"]
    answers = None if a is None else Answer(a["topic"], a["sequence_number"], h(a["request_id"]))
    r = case["rejection"]
    rejection = None if r is None else Rejection(r["code"], r["expected"], r["received"], r["chain_index"])
    return ResponseFrame(case["kind"], checkpoint(case["state"]), link, answers, rejection)


def test_response_frames() -> None:
    for case in vector("frames-v1.json")["responses"]:
        frame = _response(case)
        assert frame.wrap(h(case["body"])).hex() == case["encoded"], case["name"]
        assert ResponseFrame.unwrap(h(case["encoded"])) == (frame, h(case["body"])), case["name"]


def test_malformed_frames_name_their_error() -> None:
    for case in vector("frames-v1.json")["invalid"]:
        reader = RequestFrame.unwrap if case["frame"] == "request" else ResponseFrame.unwrap
        with pytest.raises(FrameError) as error:
            reader(h(case["encoded"]))
        assert (error.value.kind, str(error.value)) == (case["error"], case["message"]), case["name"]


# --- exchange-v2.json ----------------------------------------------------------------


def test_exchange_end_to_end() -> None:
    v = vector("exchange-v2.json")
    client = PrivateKey(h(v["client_private_key"]))
    enclave = PrivateKey(h(v["enclave_private_key"]))
    assert client.public_key().hex() == v["client_public_key"]
    assert enclave.public_key().hex() == v["enclave_public_key"]
    run = checkpoint(v["run"])
    # The client's mail: request frame ‖ body, padded to 64, mail 0 on "bids".
    framed = RequestFrame(h(v["request_id"]), ReplyChain(), (run,)).wrap(h(v["body"]))
    mail = encrypt_mail(
        client, enclave.public_key(), MailHeader("bids", 0), framed, 64, ephemeral=h(v["mail_ephemeral_private_key"])
    )
    assert mail.hex() == v["mail"]
    # The enclave reads it.
    opened = decrypt_mail(enclave, mail)
    assert opened.sender == client.public_key()
    request, body = RequestFrame.unwrap(opened.body)
    assert body == h(v["body"]) and request.runs == (run,)
    # The enclave's reply, opened by the client: it answers mail 0 and is next in the chain.
    reply = decrypt_mail(client, h(v["reply"]))
    assert reply.sender == enclave.public_key()
    frame, reply_body = ResponseFrame.unwrap(reply.body)
    assert reply_body == h(v["reply_body"])
    assert frame.kind == "reply" and frame.state == checkpoint(v["reply_state"])
    assert frame.answers == Answer("bids", 0, h(v["request_id"]))
    assert frame.link is not None
    verifier = ReplyChainVerifier()
    assert verifier.check(frame.link, frame.state).kind == "next"
    verifier.advance(frame.link, frame.state)
    assert verifier.head == chain(v["chain_after"])


# --- freshness-v1.json ----------------------------------------------------------------


def test_state_ids_and_chain_digests() -> None:
    v = vector("freshness-v1.json")
    for case in v["state_ids"]:
        assert state_id(h(case["previous"]), case["counter"], h(case["nonce"])).hex() == case["id"]
        parent = StateCheckpoint(case["counter"] - 1, h(case["previous"]))
        assert parent.next(h(case["nonce"])) == StateCheckpoint(case["counter"], h(case["id"]))
    for case in v["chain_digests"]:
        assert chain_digest(h(case["previous"]), case["index"], checkpoint(case["state"])).hex() == case["digest"]


def test_client_scenarios() -> None:
    v = vector("freshness-v1.json")
    from conclave_client.freshness import RECENT_LINKS

    assert v["recent_links"] == RECENT_LINKS
    for scenario in v["client_scenarios"]:
        verifier = ReplyChainVerifier()
        for step in scenario["steps"]:
            link = ChainLink(step["link"]["index"], h(step["link"]["previous"]))
            state = checkpoint(step["state"])
            verdict = verifier.check(link, state)
            assert verdict.to_json() == step["verdict"], scenario["name"]
            if verdict.kind == "next":
                verifier.advance(link, state)
        assert verifier.head == chain(scenario["head"]), scenario["name"]


def test_enclave_checks() -> None:
    for case in vector("freshness-v1.json")["enclave_checks"]:
        verdict = check_request(
            chain(case["recorded"]),
            chain(case["claimed"]),
            [checkpoint(r) for r in case["runs"]],
            [checkpoint(r) for r in case["history"]],
        )
        assert (verdict or "accept") == case["verdict"], case["name"]


# --- info-v2.json, attestations-v2.json ----------------------------------------------------


def test_info_fields_and_encoding() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    v = vector("info-v2.json")
    secret = Ed25519PrivateKey.from_private_bytes(h(v["data_signing_secret"]))
    assert secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == v["data_signing_key"]
    assert key_binding(h(v["data_signing_key"]), h(v["encryption_key"])).hex() == v["report_data"]
    assert run_message(h(v["encryption_key"]), checkpoint(v["run"])).hex() == v["run_message"]
    for field in ("encoded", "simulated_encoded"):
        info = EnclaveInstanceInfo.decode(h(v[field]))
        assert info.encode().hex() == v[field]
        assert info.data_signing_key.hex() == v["data_signing_key"]
        assert info.encryption_key.hex() == v["encryption_key"]
        assert info.run == checkpoint(v["run"])
        verified = info.verify(VERIFIED_AT)
        assert verified.mode == ("MOCK" if field == "encoded" else "SIMULATION")
    sim = EnclaveInstanceInfo.decode(h(v["simulated_encoded"])).verify(VERIFIED_AT)
    assert sim.identity.simulated_attestation_key is not None
    assert sim.identity.simulated_attestation_key.hex() == v["simulated_attestation_key"]


def test_attestation_verdicts() -> None:
    v = vector("attestations-v2.json")
    assert v["verified_at"] == VERIFIED_AT
    for case in v["cases"]:
        info = EnclaveInstanceInfo.decode(h(case["encoded"]))
        if case["expected"] == "valid":
            assert info.verify(v["verified_at"]).to_json() == case["verdict"]["ok"], case["name"]
        else:
            with pytest.raises(InfoError) as error:
                info.verify(v["verified_at"])
            assert error.value.kind == case["expected"], case["name"]
            assert str(error.value) == case["verdict"]["error"], case["name"]


# --- constraints-v1.json -----------------------------------------------------------------


def test_valid_constraints_print_their_canonical_form() -> None:
    for case in vector("constraints-v1.json")["valid"]:
        parsed = EnclaveConstraint.parse(case["input"])
        assert str(parsed) == case["canonical"], case["input"]
        assert str(EnclaveConstraint.parse(str(parsed))) == case["canonical"]


def test_invalid_constraints_name_the_token() -> None:
    for case in vector("constraints-v1.json")["invalid"]:
        with pytest.raises(ConclaveError) as error:
            EnclaveConstraint.parse(case["input"])
        assert str(error.value) == case["message"], case["input"]
        assert getattr(error.value, "token", None) == case["token"], case["input"]
