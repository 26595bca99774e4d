"""Mail: an authenticated clear header and a Noise-encrypted, packetised body.

::

    sender                                              recipient
    MailHeader ──┐                                 ┌── MailHeader (checked)
    body ────────┼─ encrypt_mail ─► bytes ─► MailDecryptor ─► body bytes
    sender key ──┘   (Noise X, header = prologue)   └── authenticated sender key

The layout is docs/wire-format.md section 1; ``mail-v2.json`` pins it byte for
byte. The Noise handshake and ciphers are the ``noiseprotocol`` package's
(``Noise_X_25519_AESGCM_SHA256`` on ``cryptography``); this module only frames
its messages.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

from noise.connection import Keypair, NoiseConnection

from .errors import MailError, rust_quote
from .keys import KEY_LEN, PrivateKey

#: The Noise protocol every mail uses.
NOISE_PROTOCOL = "Noise_X_25519_AESGCM_SHA256"
#: The two bytes every mail starts with.
MAIL_MAGIC = b"CM"
#: The wire-format version this package writes and reads.
MAIL_VERSION = 2
#: The longest Noise message, tag included.
MAX_PACKET_LEN = 65535
#: The AES-GCM tag that ends every Noise message.
TAG_LEN = 16
#: The most plaintext one packet carries.
MAX_PACKET_PLAINTEXT = MAX_PACKET_LEN - TAG_LEN
#: Ephemeral key, encrypted static key, encrypted 8-byte body length.
HANDSHAKE_LEN = 32 + (32 + TAG_LEN) + (8 + TAG_LEN)
#: The longest topic, in bytes.
MAX_TOPIC_LEN = 255

_TOPIC_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def topic_is_valid(topic: str) -> bool:
    """1 to 255 characters of ASCII letters, digits and '-'."""
    raw = topic.encode("utf-8")
    return 0 < len(raw) <= MAX_TOPIC_LEN and all(b in _TOPIC_BYTES for b in raw)


def validate_topic(topic: str) -> None:
    """Raises :class:`MailError` (``invalid_topic``) unless the topic is allowed."""
    if not topic_is_valid(topic):
        raise MailError(
            "invalid_topic", f"invalid topic {rust_quote(topic)}: use 1 to 255 characters of letters, digits and '-'"
        )


@dataclass(frozen=True)
class MailHeader:
    """A mail's clear, authenticated header."""

    topic: str
    sequence_number: int
    envelope: bytes = b""

    def __post_init__(self) -> None:
        validate_topic(self.topic)
        if len(self.envelope) > 0xFFFF:
            raise MailError("envelope_too_long", f"envelope of {len(self.envelope)} bytes is too long (at most 65535)")
        if not 0 <= self.sequence_number < 2**64:
            raise ValueError("a sequence number is a u64")

    def encode_prefix(self) -> bytes:
        """Magic, version and header: the clear prefix, which is also the Noise prologue."""
        topic = self.topic.encode("ascii")
        return b"".join(
            [
                MAIL_MAGIC,
                bytes([MAIL_VERSION, len(topic)]),
                topic,
                self.sequence_number.to_bytes(8, "big"),
                len(self.envelope).to_bytes(2, "big"),
                self.envelope,
            ]
        )


def _decode_prefix(data: memoryview) -> Optional[tuple[MailHeader, int]]:
    """The header and prefix length, or ``None`` when more bytes are needed."""
    if len(data) < 3:
        return None
    if bytes(data[:2]) != MAIL_MAGIC:
        raise MailError("malformed", "not a mail: bad magic bytes")
    if data[2] != MAIL_VERSION:
        raise MailError(
            "unsupported_version", f"unsupported mail version {data[2]} (this code reads version {MAIL_VERSION})"
        )
    if len(data) < 4:
        return None
    topic_len = data[3]
    fixed_end = 4 + topic_len + 8 + 2
    if len(data) < fixed_end:
        return None
    try:
        topic = bytes(data[4 : 4 + topic_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise MailError("malformed", "not a mail: topic is not ASCII") from None
    validate_topic(topic)
    at = 4 + topic_len
    sequence_number = int.from_bytes(data[at : at + 8], "big")
    env_len = int.from_bytes(data[at + 8 : at + 10], "big")
    end = fixed_end + env_len
    if len(data) < end:
        return None
    return MailHeader(topic, sequence_number, bytes(data[fixed_end:end])), end


def peek_header(mail: bytes) -> MailHeader:
    """The clear header of a complete mail, not yet authenticated."""
    decoded = _decode_prefix(memoryview(mail))
    if decoded is None:
        raise MailError("truncated", "mail is truncated: the header is incomplete")
    return decoded[0]


def encrypted_len(header: MailHeader, padded_body_len: int) -> int:
    """The exact size of an encrypted mail."""
    prefix = len(header.encode_prefix())
    full, rest = divmod(padded_body_len, MAX_PACKET_PLAINTEXT)
    packets = full * (2 + MAX_PACKET_LEN) + ((2 + rest + TAG_LEN) if rest else 0)
    return prefix + 2 + HANDSHAKE_LEN + packets + 2 + TAG_LEN


def encrypt_mail(
    sender: PrivateKey,
    recipient: bytes,
    header: MailHeader,
    body: bytes,
    min_size: int = 0,
    ephemeral: Optional[bytes] = None,
) -> bytes:
    """Encrypts ``body`` from ``sender`` to the X25519 key ``recipient``.

    The body is padded with zeros to at least ``min_size`` bytes inside the
    encryption. ``ephemeral`` fixes the ephemeral private key, for
    known-answer tests only; by default it is fresh random for every mail.
    """
    if len(recipient) != KEY_LEN:
        raise ValueError("a recipient key is 32 bytes")
    prefix = header.encode_prefix()
    noise = NoiseConnection.from_name(NOISE_PROTOCOL.encode("ascii"))
    noise.set_as_initiator()
    noise.set_prologue(prefix)
    noise.set_keypair_from_private_bytes(Keypair.STATIC, sender.secret_bytes())
    noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, bytes(recipient))
    with warnings.catch_warnings():
        if ephemeral is not None:
            # noiseprotocol warns that a fixed ephemeral key is for tests: it is.
            warnings.simplefilter("ignore")
            noise.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
        noise.start_handshake()
    handshake = bytes(noise.write_message(len(body).to_bytes(8, "big")))
    if len(handshake) != HANDSHAKE_LEN:
        raise MailError("internal", f"internal noise error (this is a bug): handshake of {len(handshake)} bytes")
    padded = max(len(body), min_size)
    out = bytearray()
    out += prefix
    out += HANDSHAKE_LEN.to_bytes(2, "big")
    out += handshake
    view = memoryview(body)
    offset = 0
    while offset < padded:
        take = min(padded - offset, MAX_PACKET_PLAINTEXT)
        from_body = max(0, min(len(body) - offset, take))
        chunk = bytes(view[offset : offset + from_body])
        if from_body < take:
            chunk += bytes(take - from_body)
        packet = noise.encrypt(chunk)
        out += len(packet).to_bytes(2, "big")
        out += packet
        offset += take
    terminator = noise.encrypt(b"")
    out += len(terminator).to_bytes(2, "big")
    out += terminator
    return bytes(out)


@dataclass(frozen=True)
class OpenedMail:
    """What a finished :class:`MailDecryptor` proved about the mail."""

    header: MailHeader
    #: The sender's static X25519 key, proven by the Noise handshake.
    sender: bytes
    #: The body length (padding excluded).
    body_len: int


@dataclass(frozen=True)
class DecryptedMail:
    """A fully decrypted mail."""

    header: MailHeader
    sender: bytes
    body: bytes

    def __repr__(self) -> str:
        # Bodies are private data: show only their length.
        return f"DecryptedMail(header={self.header!r}, sender={self.sender.hex()}, body_len={len(self.body)})"


_PREFIX, _HANDSHAKE, _PACKETS, _DONE, _FAILED = range(5)


class MailDecryptor:
    """Streaming decryption: feed a mail's bytes in pieces of any size.

    :meth:`update` returns body bytes as soon as each packet is
    authenticated; the mail as a whole is proven complete only by
    :meth:`finish`: act on nothing before it returns.
    """

    def __init__(self, recipient: PrivateKey) -> None:
        self._recipient = recipient
        self._buffer = bytearray()
        self._stage = _PREFIX
        self._header: Optional[MailHeader] = None
        self._opened: Optional[OpenedMail] = None
        self._noise: Any = None
        self._index = 0
        self._delivered = 0

    @property
    def opened(self) -> Optional[OpenedMail]:
        """The header and sender, once the handshake has authenticated them."""
        return self._opened

    def update(self, data: bytes) -> bytes:
        """Feeds more bytes; returns the body bytes they completed. After an error the decryptor is unusable."""
        if self._stage == _FAILED:
            raise MailError("malformed", "not a mail: decryptor already failed")
        self._buffer += data
        out = bytearray()
        try:
            with memoryview(self._buffer) as view:
                consumed = self._advance(view, out)
        except BaseException:
            self._stage = _FAILED
            # A fresh buffer: views of the old one may live on in the traceback.
            self._buffer = bytearray()
            raise
        del self._buffer[:consumed]
        return bytes(out)

    def _advance(self, data: memoryview, out: bytearray) -> int:
        at = 0
        while True:
            rest = data[at:]
            if self._stage == _PREFIX:
                decoded = _decode_prefix(rest)
                if decoded is None:
                    return at
                self._header, length = decoded
                at += length
                self._stage = _HANDSHAKE
            elif self._stage == _HANDSHAKE:
                frame = _frame(rest)
                if frame is None:
                    return at
                if len(frame) != HANDSHAKE_LEN:
                    raise MailError("malformed", "not a mail: handshake has the wrong length")
                assert self._header is not None
                payload, sender = self._handshake(bytes(frame))
                if len(payload) != 8:
                    raise MailError("malformed", "not a mail: handshake payload has the wrong length")
                at += 2 + len(frame)
                self._opened = OpenedMail(self._header, sender, int.from_bytes(payload, "big"))
                self._stage = _PACKETS
            elif self._stage == _PACKETS:
                frame = _frame(rest)
                if frame is None:
                    return at
                if len(frame) < TAG_LEN:
                    raise MailError("malformed", "not a mail: packet shorter than its tag")
                try:
                    plain = self._noise.decrypt(bytes(frame))
                except Exception:
                    raise MailError(
                        "packet_authentication",
                        f"body packet {self._index} failed authentication: the mail was altered in transit",
                        index=self._index,
                    ) from None
                at += 2 + len(frame)
                assert self._opened is not None
                if not plain:
                    # The terminator: every declared body byte must have arrived.
                    if self._delivered < self._opened.body_len:
                        raise MailError(
                            "body_length_mismatch",
                            f"body is {self._delivered} bytes but the sender declared {self._opened.body_len}",
                        )
                    self._stage = _DONE
                    continue
                wanted = min(self._opened.body_len - self._delivered, len(plain))
                out += plain[:wanted]
                self._delivered += wanted
                self._index += 1
            elif self._stage == _DONE:
                if len(rest):
                    raise MailError("trailing_bytes", f"{len(rest)} unexpected bytes after the end of the mail")
                return at
            else:
                raise MailError("malformed", "not a mail: decryptor already failed")

    def _handshake(self, message: bytes) -> tuple[bytes, bytes]:
        assert self._header is not None
        noise = NoiseConnection.from_name(NOISE_PROTOCOL.encode("ascii"))
        noise.set_as_responder()
        noise.set_prologue(self._header.encode_prefix())
        noise.set_keypair_from_private_bytes(Keypair.STATIC, self._recipient.secret_bytes())
        noise.start_handshake()
        # noiseprotocol drops its handshake state once the handshake is done;
        # keep it to read the sender's static key (Noise's "rs") afterwards.
        state = noise.noise_protocol.handshake_state
        try:
            payload = bytes(noise.read_message(message))
        except Exception:
            raise MailError(
                "handshake_failed",
                "mail could not be decrypted: it is addressed to another key, or its header or handshake was altered",
            ) from None
        self._noise = noise
        return payload, bytes(state.rs.public_bytes)

    def finish(self) -> OpenedMail:
        """Ends the mail: succeeds only if the terminator arrived and nothing followed."""
        if self._stage == _DONE and not self._buffer and self._opened is not None:
            return self._opened
        if self._stage == _DONE:
            raise MailError("trailing_bytes", f"{len(self._buffer)} unexpected bytes after the end of the mail")
        if self._stage == _PREFIX:
            raise MailError("truncated", "mail is truncated: the header is incomplete")
        if self._stage == _HANDSHAKE:
            raise MailError("truncated", "mail is truncated: the handshake is incomplete")
        if self._stage == _PACKETS and self._buffer:
            raise MailError("truncated", "mail is truncated: the last packet is cut short")
        if self._stage == _PACKETS:
            raise MailError("truncated", "mail is truncated: the terminator packet is missing")
        raise MailError("malformed", "not a mail: decryptor already failed")


def _frame(data: memoryview) -> Optional[memoryview]:
    """One u16-length-prefixed frame, or ``None`` when more bytes are needed."""
    if len(data) < 2:
        return None
    length = int.from_bytes(data[:2], "big")
    if len(data) < 2 + length:
        return None
    return data[2 : 2 + length]


def decrypt_mail(recipient: PrivateKey, mail: bytes) -> DecryptedMail:
    """Decrypts a whole mail held in memory."""
    decryptor = MailDecryptor(recipient)
    body = decryptor.update(mail)
    opened = decryptor.finish()
    return DecryptedMail(opened.header, opened.sender, body)
