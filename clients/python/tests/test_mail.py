"""Mail envelope: streaming decryption, truncation, tampering and padding (wire format section 1)."""

from __future__ import annotations

import os

import pytest

from conclave_client import MailDecryptor, MailError, MailHeader, PrivateKey, decrypt_mail, encrypt_mail
from conclave_client.mail import MAX_PACKET_PLAINTEXT, encrypted_len, peek_header

SENDER = PrivateKey(bytes([0x11]) * 32)
RECIPIENT = PrivateKey(bytes([0x22]) * 32)


def mail(body: bytes, min_size: int = 0, topic: str = "t") -> bytes:
    return encrypt_mail(SENDER, RECIPIENT.public_key(), MailHeader(topic, 3, b"env"), body, min_size)


@pytest.mark.parametrize("size", [0, 1, MAX_PACKET_PLAINTEXT, MAX_PACKET_PLAINTEXT + 1, 3 * MAX_PACKET_PLAINTEXT + 5])
def test_sizes_and_padding(size: int) -> None:
    body = os.urandom(size)
    for min_size in (0, size + 1000):
        raw = mail(body, min_size)
        header = MailHeader("t", 3, b"env")
        assert len(raw) == encrypted_len(header, max(size, min_size))
        opened = decrypt_mail(RECIPIENT, raw)
        assert opened.body == body and opened.sender == SENDER.public_key() and opened.header == header


@pytest.mark.parametrize("piece", [1, 7, 65537, 10**7])
def test_streaming_in_pieces_of_any_size(piece: int) -> None:
    body = os.urandom(2 * MAX_PACKET_PLAINTEXT + 99)
    raw = mail(body, 0)
    decryptor = MailDecryptor(RECIPIENT)
    out = b"".join(decryptor.update(raw[i : i + piece]) for i in range(0, len(raw), piece))
    assert decryptor.finish().body_len == len(body) and out == body


def test_every_truncation_is_detected() -> None:
    raw = mail(b"hello", 40)
    for cut in range(len(raw)):
        decryptor = MailDecryptor(RECIPIENT)
        decryptor.update(raw[:cut])
        with pytest.raises(MailError) as error:
            decryptor.finish()
        assert error.value.kind == "truncated", cut


def test_tampering_is_named() -> None:
    raw = bytearray(mail(b"hello world", 0))
    prefix = len(MailHeader("t", 3, b"env").encode_prefix())
    header = bytearray(raw)
    header[prefix - 1] ^= 1  # an envelope byte: the prologue no longer matches
    with pytest.raises(MailError) as error:
        decrypt_mail(RECIPIENT, bytes(header))
    assert error.value.kind == "handshake_failed"
    packet = bytearray(raw)
    packet[prefix + 2 + 104 + 2] ^= 1
    with pytest.raises(MailError) as error:
        decrypt_mail(RECIPIENT, bytes(packet))
    assert (error.value.kind, error.value.index) == ("packet_authentication", 0)
    with pytest.raises(MailError) as error:
        decrypt_mail(RECIPIENT, bytes(raw) + b"x")
    assert str(error.value) == "1 unexpected bytes after the end of the mail"
    with pytest.raises(MailError) as error:
        decrypt_mail(PrivateKey.generate(), bytes(raw))
    assert error.value.kind == "handshake_failed"


def test_other_versions_and_topics_are_refused_by_name() -> None:
    raw = bytearray(mail(b"x"))
    raw[2] = 1
    with pytest.raises(MailError) as error:
        peek_header(bytes(raw))
    assert str(error.value) == "unsupported mail version 1 (this code reads version 2)"
    with pytest.raises(MailError) as error:
        MailHeader("no spaces", 0)
    assert error.value.kind == "invalid_topic"
    with pytest.raises(MailError):
        MailHeader("x" * 256, 0)
    assert MailHeader("x" * 255, 0).topic


def test_repr_hides_the_secret_and_the_body() -> None:
    assert "11" * 32 not in repr(SENDER) and "redacted" in repr(SENDER)
    assert "secret" not in repr(decrypt_mail(RECIPIENT, mail(b"secret")))
