"""EnclaveInstanceInfo (version 2): decode it, then verify it yourself.

An info carries the enclave's Ed25519 data-signing key and X25519 encryption
key, the checkpoint of the state its run started from (signed by the
data-signing key), and the evidence that binds the keys to an enclave
identity: its report data must be SHA-512(signing key ‖ encryption key).
The layout is docs/wire-format.md section 2; ``attestations-v2.json`` pins
every check.

Hardware evidence (SGX DCAP, TDX, SEV-SNP, Nitro) is decoded but not
verified: this client refuses it with ``hardware_unsupported``. Use the Rust
client (``conclave attest``) for hardware enclaves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import InfoError
from .freshness import StateCheckpoint
from .keys import is_ed25519_point, is_low_order

INFO_MAGIC = b"CEII"
#: The encoding version this package reads.
INFO_VERSION = 2
_SIMULATION_DOMAIN = b"conclave-simulated-evidence-v1\0"
_RUN_DOMAIN = b"conclave-run-start-v1\0"
_REPORT_LEN = 32 + 32 + 2 + 2 + 64 + 8

TAG_MOCK = 1
TAG_SIMULATION = 2
TAG_HARDWARE = 3

#: Hardware evidence kinds by their tag in the HardwareEvidence encoding
#: (docs/attestation.md), with how many length-prefixed fields each has.
HARDWARE_KINDS = {1: ("sgx-dcap", 2), 2: ("tdx", 2), 3: ("sev-snp", 3), 4: ("nitro", 1)}

_MOCK_REASON = (
    "mock mode: the enclave runs inside the host's process and its evidence is unsigned; nothing is protected "
    "from the host"
)
_SIMULATION_REASON = (
    "simulation mode: the evidence is signed by a simulated attestation key that the host's operator holds, and "
    "the host can read the enclave's memory"
)

SECURITY_LEVELS = ("INSECURE", "STALE", "SECURE")


def _malformed(reason: str) -> InfoError:
    return InfoError("malformed", f"malformed enclave instance info: {reason}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if len(self.data) - self.at < n:
            raise _malformed("truncated")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def rest(self) -> bytes:
        return self.data[self.at :]


@dataclass(frozen=True)
class EnclaveReport:
    """The identity fields of mock and simulation evidence (140 bytes)."""

    code_hash: bytes
    code_signing_key_hash: bytes
    product_id: int
    revocation_level: int
    report_data: bytes
    timestamp_unix: int

    def to_bytes(self) -> bytes:
        """The 140-byte encoding."""
        return b"".join(
            [
                self.code_hash,
                self.code_signing_key_hash,
                self.product_id.to_bytes(2, "big"),
                self.revocation_level.to_bytes(2, "big"),
                self.report_data,
                self.timestamp_unix.to_bytes(8, "big"),
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> "EnclaveReport":
        """Decodes :meth:`to_bytes`."""
        if len(raw) != _REPORT_LEN:
            raise _malformed("report has the wrong length")
        return cls(
            raw[0:32],
            raw[32:64],
            int.from_bytes(raw[64:66], "big"),
            int.from_bytes(raw[66:68], "big"),
            raw[68:132],
            int.from_bytes(raw[132:140], "big"),
        )


@dataclass(frozen=True)
class Evidence:
    """Evidence binding an enclave's keys to its identity.

    ``tag`` is 1 (mock: ``report``), 2 (simulation: ``report`` signed by
    ``attestation_key``) or 3 (hardware: ``hardware`` holds its encoding and
    ``hardware_kind`` its name).
    """

    tag: int
    report: Optional[EnclaveReport] = None
    attestation_key: Optional[bytes] = None
    signature: Optional[bytes] = None
    hardware: Optional[bytes] = None
    hardware_kind: Optional[str] = None

    def to_bytes(self) -> bytes:
        """Kind tag, ``u32`` length, body."""
        if self.tag == TAG_HARDWARE:
            body = self.hardware or b""
        else:
            assert self.report is not None
            body = self.report.to_bytes()
            if self.tag == TAG_SIMULATION:
                body += (self.attestation_key or b"") + (self.signature or b"")
        return bytes([self.tag]) + len(body).to_bytes(4, "big") + body

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Evidence":
        """Decodes :meth:`to_bytes`; nothing may follow it."""
        r = _Reader(raw)
        tag = r.take(1)[0]
        length = int.from_bytes(r.take(4), "big")
        body = r.take(length)
        if r.rest():
            raise _malformed("trailing bytes after the evidence")
        if tag == TAG_MOCK:
            if len(body) != _REPORT_LEN:
                raise _malformed("mock evidence has the wrong length")
            return cls(tag, report=EnclaveReport.from_bytes(body))
        if tag == TAG_SIMULATION:
            if len(body) != _REPORT_LEN + 32 + 64:
                raise _malformed("simulated evidence has the wrong length")
            return cls(
                tag,
                report=EnclaveReport.from_bytes(body[:_REPORT_LEN]),
                attestation_key=body[_REPORT_LEN : _REPORT_LEN + 32],
                signature=body[_REPORT_LEN + 32 :],
            )
        if tag == TAG_HARDWARE:
            return cls(tag, hardware=body, hardware_kind=_hardware_kind(body))
        raise _malformed("unknown evidence kind")


def _hardware_kind(body: bytes) -> str:
    """Checks the HardwareEvidence envelope (version, kind, field lengths) and names the kind."""
    bad = _malformed("hardware evidence is malformed")
    if len(body) < 2 or body[0] != 1 or body[1] not in HARDWARE_KINDS:
        raise bad
    name, fields = HARDWARE_KINDS[body[1]]
    at = 2
    for _ in range(fields):
        if len(body) - at < 4:
            raise bad
        length = int.from_bytes(body[at : at + 4], "big")
        at += 4 + length
        if at > len(body):
            raise bad
    if at != len(body):
        raise bad
    return name


def key_binding(data_signing_key: bytes, encryption_key: bytes) -> bytes:
    """The report data an enclave with these keys must put in its evidence."""
    return hashlib.sha512(data_signing_key + encryption_key).digest()


def run_message(encryption_key: bytes, run: StateCheckpoint) -> bytes:
    """What the data-signing key signs to vouch for a run's checkpoint."""
    return _RUN_DOMAIN + encryption_key + run.to_bytes()


@dataclass(frozen=True)
class AttestedIdentity:
    """The fields a constraint checks, taken from verified evidence."""

    code_hash: bytes
    signer: Optional[bytes]
    product_id: Optional[int]
    revocation_level: Optional[int]
    #: ``INSECURE``, ``STALE`` or ``SECURE``.
    security: str
    security_reason: str
    timestamp_unix: Optional[int]
    #: The key that signed simulation evidence; ``None`` for mock evidence.
    simulated_attestation_key: Optional[bytes]
    #: The hardware evidence kind (``sgx-dcap``…), ``None`` for mock and simulation.
    tee_kind: Optional[str] = None


@dataclass(frozen=True)
class VerifiedEnclaveInfo:
    """An :class:`EnclaveInstanceInfo` whose evidence and key binding were verified."""

    #: ``MOCK`` or ``SIMULATION`` (``DEBUG``/``RELEASE`` need hardware evidence).
    mode: str
    identity: AttestedIdentity
    data_signing_key: bytes
    #: Where mail goes.
    encryption_key: bytes
    #: The checkpoint of the state this run started from.
    run: StateCheckpoint

    def to_json(self) -> Dict[str, Any]:
        """The JSON view, as ``GET /v1/attestation`` with ``Accept: application/json`` shows it."""
        i = self.identity
        return {
            "mode": self.mode,
            "code_hash": i.code_hash.hex(),
            "code_signing_key_hash": i.signer.hex() if i.signer is not None else None,
            "product_id": i.product_id,
            "revocation_level": i.revocation_level,
            "security": {"summary": i.security, "reason": i.security_reason, "timestamp": i.timestamp_unix},
            "simulated_attestation_key": (
                i.simulated_attestation_key.hex() if i.simulated_attestation_key is not None else None
            ),
            "data_signing_key": self.data_signing_key.hex(),
            "encryption_key": self.encryption_key.hex(),
            "run_checkpoint": str(self.run),
        }


def _verify_ed25519(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class EnclaveInstanceInfo:
    """A decoded, not yet verified EnclaveInstanceInfo."""

    data_signing_key: bytes
    encryption_key: bytes
    run: StateCheckpoint
    run_signature: bytes
    evidence: Evidence

    def encode(self) -> bytes:
        """The versioned binary encoding."""
        return b"".join(
            [
                INFO_MAGIC,
                INFO_VERSION.to_bytes(2, "big"),
                self.data_signing_key,
                self.encryption_key,
                self.run.to_bytes(),
                self.run_signature,
                self.evidence.to_bytes(),
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> "EnclaveInstanceInfo":
        """Decodes :meth:`encode`'s output. Verifies nothing."""
        r = _Reader(bytes(raw))
        if r.take(4) != INFO_MAGIC:
            raise _malformed("bad magic bytes")
        version = int.from_bytes(r.take(2), "big")
        if version != INFO_VERSION:
            raise InfoError(
                "unsupported_version",
                f"unsupported enclave instance info version {version} (this code reads version {INFO_VERSION})",
            )
        data_signing_key = r.take(32)
        encryption_key = r.take(32)
        run = StateCheckpoint.from_bytes(r.take(40))
        run_signature = r.take(64)
        return cls(data_signing_key, encryption_key, run, run_signature, Evidence.from_bytes(r.rest()))

    def verify(self, now_unix: int) -> VerifiedEnclaveInfo:
        """Verifies the evidence, the key binding, the run signature and the encryption key, in that order.

        ``now_unix`` is the verification time (hardware evidence would be
        judged at it; mock and simulation evidence do not depend on it).
        """
        del now_unix  # Only hardware evidence depends on the time, and it is refused below.
        if not is_ed25519_point(self.data_signing_key):
            raise InfoError("bad_signing_key", "data-signing key is not a valid ed25519 public key")
        expected = key_binding(self.data_signing_key, self.encryption_key)
        ev = self.evidence
        if ev.tag == TAG_HARDWARE:
            raise InfoError(
                "hardware_unsupported",
                f"{ev.hardware_kind} evidence failed verification: hardware evidence is not supported by this "
                "client yet; verify it with the Rust client (`conclave attest`)",
            )
        report = ev.report
        assert report is not None
        if ev.tag == TAG_SIMULATION:
            key = ev.attestation_key or b""
            signature = ev.signature or b""
            if not is_ed25519_point(key) or not _verify_ed25519(
                key, _SIMULATION_DOMAIN + report.to_bytes(), signature
            ):
                raise InfoError("simulation_signature", "simulated evidence signature is invalid: the evidence was altered")
            mode, reason, sim_key = "SIMULATION", _SIMULATION_REASON, key
        else:
            mode, reason, sim_key = "MOCK", _MOCK_REASON, None
        if report.report_data != expected:
            raise InfoError(
                "key_binding",
                f"key binding failed: report data {report.report_data.hex()} is not SHA-512 of the enclave's keys "
                f"({expected.hex()})",
            )
        if not _verify_ed25519(self.data_signing_key, run_message(self.encryption_key, self.run), self.run_signature):
            raise InfoError("run_signature", "run checkpoint signature is invalid: the attestation was altered")
        if is_low_order(self.encryption_key):
            raise InfoError(
                "low_order_key",
                f"encryption key {self.encryption_key.hex()} is a low-order point: mail to it would be readable by "
                "anyone",
            )
        identity = AttestedIdentity(
            code_hash=report.code_hash,
            signer=report.code_signing_key_hash,
            product_id=report.product_id,
            revocation_level=report.revocation_level,
            security="INSECURE",
            security_reason=reason,
            timestamp_unix=report.timestamp_unix,
            simulated_attestation_key=sim_key,
        )
        return VerifiedEnclaveInfo(mode, identity, self.data_signing_key, self.encryption_key, self.run)
