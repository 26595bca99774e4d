"""Key helpers: X25519 keys mail is encrypted to and from, Ed25519 checks.

Keys travel as raw 32-byte strings; secrets never appear in a ``repr``.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_LEN = 32

# Any fixed scalar works: clamping makes it a multiple of the cofactor, so it
# sends exactly the small-order points to the identity (an all-zero result).
_PROBE = X25519PrivateKey.from_private_bytes(b"\x5a" * 32)

# Edwards25519 field prime and curve constant, for the point-validity check below.
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P


class PrivateKey:
    """An X25519 private key. ``repr`` shows only the public half."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_LEN:
            raise ValueError("an x25519 private key is 32 bytes")
        self._secret = bytes(secret)

    @classmethod
    def generate(cls) -> "PrivateKey":
        """A fresh key from the operating system's random source."""
        return cls(os.urandom(KEY_LEN))

    def secret_bytes(self) -> bytes:
        """The raw secret. Handle with care: this is the key."""
        return self._secret

    def public_key(self) -> bytes:
        """The matching public key."""
        return public_key_of(self._secret)

    def __repr__(self) -> str:
        return f"PrivateKey(public: {self.public_key().hex()}, secret: <redacted>)"


def public_key_of(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret."""
    private = X25519PrivateKey.from_private_bytes(secret)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def is_low_order(public_key: bytes) -> bool:
    """Whether ``public_key`` is a low-order X25519 point (in any encoding).

    Every Diffie-Hellman with such a key gives the all-zero secret, so mail to
    it is readable by anyone and mail from it proves nothing. OpenSSL refuses
    to return an all-zero shared secret, which is how it shows here.
    """
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError:
        return True
    return False


def is_ed25519_point(key: bytes) -> bool:
    """Whether 32 bytes decompress to a point of edwards25519.

    The same test as ed25519-dalek's ``VerifyingKey::from_bytes``: the y
    coordinate is read modulo p (the top bit is x's sign) and the key is a
    point exactly when (y² - 1) / (d·y² + 1) is a square. OpenSSL checks this
    only inside a signature verification, where a bad key and a bad signature
    look alike; the constraint and verifier name them apart, as Rust does.
    """
    if len(key) != KEY_LEN:
        return False
    y = (int.from_bytes(key, "little") & ((1 << 255) - 1)) % _P
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    return x2 == 0 or pow(x2, (_P - 1) // 2, _P) == 1
