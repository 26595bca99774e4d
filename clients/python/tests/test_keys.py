"""Key checks: low-order X25519 points and Ed25519 point validity, as the Rust crates judge them."""

from __future__ import annotations

import pytest

from conclave_client import HttpRelay, PrivateKey, RelayError
from conclave_client.keys import is_ed25519_point, is_low_order

P_MINUS_1 = bytes([0xEC]) + bytes([0xFF]) * 30 + bytes([0x7F])
LOW_ORDER = [
    bytes(32),  # 0
    bytes([1]) + bytes(31),  # 1
    P_MINUS_1,  # order 2
    bytes([0xED]) + P_MINUS_1[1:],  # p: 0 again, not canonical
    bytes(31) + bytes([0x80]),  # the top bit is ignored
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),  # order 8
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),  # order 8
]


@pytest.mark.parametrize("key", LOW_ORDER, ids=lambda k: k.hex()[:8])
def test_low_order_points_are_recognised(key: bytes) -> None:
    assert is_low_order(key)


def test_real_keys_are_not_low_order() -> None:
    for _ in range(8):
        assert not is_low_order(PrivateKey.generate().public_key())


def test_ed25519_points() -> None:
    # The simulated attestation key of the vectors, and the identity point.
    assert is_ed25519_point(bytes.fromhex("34b4d9043156cb6dcf0beb0a2949b7559c940d2bcb6dbe8c53a9b30278e3a746"))
    assert is_ed25519_point(bytes([1]) + bytes(31))
    # y = 2 is not on the curve; neither is a key of the wrong length.
    assert not is_ed25519_point(bytes([2]) + bytes(31))
    assert not is_ed25519_point(bytes(31))


def test_relay_urls_and_correlation_ids_are_checked_before_sending() -> None:
    assert HttpRelay("http://127.0.0.1:8080/").base_url == "http://127.0.0.1:8080"
    for bad in ("127.0.0.1:8080", "https://example.invalid", "http://", ""):
        with pytest.raises(RelayError) as error:
            HttpRelay(bad)
        assert error.value.code == "INVALID_URL"
    relay = HttpRelay("http://127.0.0.1:9")
    with pytest.raises(RelayError) as error:
        relay.poll("a/../b")
    assert error.value.code == "INVALID_CORRELATION_ID"
    with pytest.raises(RelayError) as error:
        relay.deliver("", b"x")
    assert error.value.code == "INVALID_CORRELATION_ID"
