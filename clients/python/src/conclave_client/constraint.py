"""EnclaveConstraint: the one-line policy a client checks an enclave against.

::

    C:<hex>        acceptable code hash (launch measurement); repeatable
    S:<hex>        acceptable code-signer; repeatable; needs PROD
    PROD:<n>       product id (0..=65535); only and always with S
    REVOKE:<n>     minimum revocation level
    SEC:<lvl>      minimum security: INSECURE, STALE (default) or SECURE
    EXPIRE:<p>     maximum attestation age, an ISO 8601 duration (P30D, PT12H, P6M2W5D)
    SIMKEY:<hex>   acceptable simulated attestation key (64 hex digits, Ed25519); repeatable

The grammar, the canonical form and every message are those of
``crates/core/src/constraint.rs``; ``constraints-v1.json`` pins them.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from .errors import ConstraintError, NotSatisfied, rust_quote
from .info import SECURITY_LEVELS, AttestedIdentity, EnclaveInstanceInfo, VerifiedEnclaveInfo
from .keys import is_ed25519_point

_KEYS = "C, S, PROD, REVOKE, SEC, EXPIRE, SIMKEY"

# Rust's `split_whitespace`: the Unicode White_Space property (Python's
# `str.split` also splits on U+001C..U+001F, which Rust does not).
_WHITESPACE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")

# An ISO 8601 duration as the constraint language takes it: uppercase
# designators, no sign, date units Y M W D then T and H M S, in that order,
# each at most once; a fraction (1 to 9 digits after '.' or ',') only on
# the last unit, and only on a time unit. This is what jiff's Temporal span
# parser accepts once the Rust side has ruled out signs and lowercase.
_NUM = r"([0-9]+)"
_FRAC = r"([0-9]+)(?:[.,]([0-9]{1,9}))?"
_PERIOD = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(T(?:{_FRAC}H)?(?:{_FRAC}M)?(?:{_FRAC}S)?)?"
)
# jiff's span limits for years, months, weeks and days.
_DATE_LIMITS = (19_998, 239_976, 1_043_497, 7_304_484)
_DATE_SECONDS = (365 * 86_400, 30 * 86_400, 7 * 86_400, 86_400)
# jiff's span slots for time, in nanoseconds each, with their limits: hours,
# minutes, seconds, then milliseconds, microseconds and nanoseconds. A time
# value too large for its slot spills into the smaller ones, as jiff does;
# the Rust constraint then counts only hours, minutes and seconds.
_TIME_NANOS = (3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3, 1)
_TIME_LIMITS = (175_307_616, 10_518_456_960, 631_107_417_600, 631_107_417_600_000, 631_107_417_600_000_000, 2**63 - 1)


def _spill(slots: List[int], unit: int, nanos: int) -> bool:
    """Adds ``nanos`` to the time slots from ``unit`` down, jiff's way; ``False`` if it does not fit."""
    for slot in range(unit, len(slots)):
        if nanos == 0:
            return True
        size, limit = _TIME_NANOS[slot], _TIME_LIMITS[slot]
        count, nanos = divmod(nanos, size)
        count += slots[slot]
        if count > limit:
            nanos += (count - limit) * size
            count = limit
        slots[slot] = count
    return nanos == 0


def _invalid(token: str, reason: str) -> ConstraintError:
    return ConstraintError("invalid_token", f"invalid token {rust_quote(token)}: {reason}", token)


def _decode_hex(token: str, value: str) -> bytes:
    if not _HEX.fullmatch(value):
        raise _invalid(token, "value is not hex")
    return bytes.fromhex(value)


def _parse_hash(token: str, value: str) -> bytes:
    raw = _decode_hex(token, value)
    if len(raw) not in (32, 48):
        raise _invalid(token, f"hash is {len(raw)} bytes; expected 32 or 48 (64 or 96 hex digits)")
    return raw


def _parse_u16(token: str, value: str) -> int:
    # Rust's `u16::from_str`: an optional '+', then ASCII digits.
    digits = value[1:] if value.startswith("+") else value
    if not digits or not all("0" <= c <= "9" for c in digits) or int(digits) > 0xFFFF:
        raise _invalid(token, "value must be a whole number from 0 to 65535")
    return int(digits)


def _parse_simulation_key(token: str, value: str) -> bytes:
    raw = _decode_hex(token, value)
    if len(raw) != 32:
        raise _invalid(token, f"key is {len(raw)} bytes; expected a 32-byte ed25519 public key (64 hex digits)")
    if not is_ed25519_point(raw):
        raise _invalid(token, "value is not an ed25519 public key")
    return raw


def _parse_period(token: str, value: str) -> int:
    """An ISO 8601 duration in seconds: a year is 365 days, a month 30, a week 7."""
    bad = _invalid(token, "value must be an ISO 8601 duration such as P30D, PT12H or P6M2W5D")
    match = _PERIOD.fullmatch(value)
    if match is None:
        raise bad
    g = match.groups()
    dates = g[0:4]
    has_time = g[4] is not None
    times = [(g[5], g[6]), (g[7], g[8]), (g[9], g[10])]
    present_times = [i for i, (whole, _) in enumerate(times) if whole is not None]
    if has_time and not present_times:
        raise bad  # a T must be followed by a time unit
    if not present_times and all(d is None for d in dates):
        raise bad  # at least one unit
    fractions = [i for i, (_, frac) in enumerate(times) if frac is not None]
    if fractions and fractions[0] != present_times[-1]:
        raise bad  # a fraction ends the duration
    seconds = 0
    for text, limit, unit in zip(dates, _DATE_LIMITS, _DATE_SECONDS):
        if text is not None:
            if int(text) > limit:
                raise bad
            seconds += int(text) * unit
    slots = [0] * len(_TIME_NANOS)
    for i, (whole, _) in enumerate(times):
        count = int(whole) if whole is not None else 0
        if count == 0:
            continue
        if count >= 2**63:
            raise bad
        if slots[i] + count <= _TIME_LIMITS[i]:
            slots[i] += count
        elif not _spill(slots, i, count * _TIME_NANOS[i]):
            raise bad
    if fractions:
        unit = fractions[0]
        frac = times[unit][1] or ""
        if not _spill(slots, unit, int(frac.ljust(9, "0")) * _TIME_NANOS[unit] // 10**9):
            raise bad
    seconds += slots[0] * 3_600 + slots[1] * 60 + slots[2]
    if seconds == 0:
        raise _invalid(token, "the period must be at least one second")
    return seconds


def _show(value: Optional[int]) -> str:
    return "(none)" if value is None else str(value)


class EnclaveConstraint:
    """A parsed constraint; ``str()`` is its canonical form."""

    def __init__(self) -> None:
        self.code_hashes: List[bytes] = []
        self.signers: List[bytes] = []
        self.product_id: Optional[int] = None
        self.minimum_revocation_level: Optional[int] = None
        self.minimum_security = "STALE"
        #: The period as written, and in seconds.
        self.max_age: Optional[Tuple[str, int]] = None
        self.simulation_keys: List[bytes] = []

    @classmethod
    def parse(cls, text: str) -> "EnclaveConstraint":
        """Parses a constraint; a :class:`ConstraintError` names the offending token."""
        c = cls()
        seen_sec = False
        for token in _WHITESPACE.split(text):
            if not token:
                continue
            key, sep, value = token.partition(":")
            if not sep:
                raise _invalid(token, "expected KEY:VALUE")
            if not value:
                raise _invalid(token, "value is empty")

            def once(present: bool) -> None:
                if present:
                    raise _invalid(token, f"{key} may appear only once")

            if key == "C":
                digest = _parse_hash(token, value)
                if digest not in c.code_hashes:
                    c.code_hashes.append(digest)
            elif key == "S":
                digest = _parse_hash(token, value)
                if digest not in c.signers:
                    c.signers.append(digest)
            elif key == "PROD":
                once(c.product_id is not None)
                c.product_id = _parse_u16(token, value)
            elif key == "REVOKE":
                once(c.minimum_revocation_level is not None)
                c.minimum_revocation_level = _parse_u16(token, value)
            elif key == "SEC":
                once(seen_sec)
                seen_sec = True
                if value not in SECURITY_LEVELS:
                    raise _invalid(token, "value must be INSECURE, STALE or SECURE")
                c.minimum_security = value
            elif key == "EXPIRE":
                once(c.max_age is not None)
                c.max_age = (value, _parse_period(token, value))
            elif key == "SIMKEY":
                sim = _parse_simulation_key(token, value)
                if sim not in c.simulation_keys:
                    c.simulation_keys.append(sim)
            else:
                raise _invalid(token, f"unknown key {rust_quote(key)}; keys are {_KEYS}")
        if not c.code_hashes and not c.signers:
            raise ConstraintError("no_identity", "constraint needs at least one C:<code hash> or S:<signer> token")
        if c.signers and c.product_id is None:
            raise ConstraintError("missing_product_id", "S:<signer> needs a PROD:<product id> token too")
        if not c.signers and c.product_id is not None:
            raise _invalid(f"PROD:{c.product_id}", "PROD is only allowed together with S")
        return c

    def __str__(self) -> str:
        parts = [f"C:{h.hex()}" for h in self.code_hashes]
        parts += [f"S:{h.hex()}" for h in self.signers]
        if self.product_id is not None:
            parts.append(f"PROD:{self.product_id}")
        if self.minimum_revocation_level is not None:
            parts.append(f"REVOKE:{self.minimum_revocation_level}")
        parts.append(f"SEC:{self.minimum_security}")
        if self.max_age is not None:
            parts.append(f"EXPIRE:{self.max_age[0]}")
        parts += [f"SIMKEY:{k.hex()}" for k in self.simulation_keys]
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"EnclaveConstraint({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnclaveConstraint) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def check(self, info: EnclaveInstanceInfo, now_unix: int) -> VerifiedEnclaveInfo:
        """Verifies ``info`` at ``now_unix`` (an :class:`InfoError` if it does not), then checks it."""
        verified = info.verify(now_unix)
        self.check_identity(verified.identity, now_unix)
        return verified

    def check_identity(self, identity: AttestedIdentity, now_unix: int) -> None:
        """Raises :class:`NotSatisfied` unless the verified identity satisfies this constraint."""
        i = identity
        # First: if an unpinned key vouches for the evidence, nothing in it means anything.
        if self.simulation_keys and i.tee_kind is None:
            if i.simulated_attestation_key is None or i.simulated_attestation_key not in self.simulation_keys:
                actual = (
                    "no key (mock evidence is unsigned)"
                    if i.simulated_attestation_key is None
                    else f"simulated attestation key {i.simulated_attestation_key.hex()}"
                )
                accepted = ", ".join(k.hex() for k in self.simulation_keys)
                raise NotSatisfied(
                    "simulation_key",
                    f"SIMKEY: the evidence is signed by {actual}, not by one of the pinned simulated attestation "
                    f"keys ({accepted})",
                )
        code_ok = i.code_hash in self.code_hashes
        signer_ok = i.signer is not None and i.signer in self.signers
        if not code_ok and not signer_ok:
            signer = i.signer.hex() if i.signer is not None else "(none)"
            raise NotSatisfied(
                "identity",
                f"C/S: code hash {i.code_hash.hex()} is not one of the {len(self.code_hashes)} accepted code "
                f"hashes, and signer {signer} is not one of the {len(self.signers)} accepted signers",
            )
        if self.product_id is not None and i.product_id != self.product_id:
            raise NotSatisfied("product_id", f"PROD:{self.product_id}: enclave has product id {_show(i.product_id)}")
        minimum = self.minimum_revocation_level
        if minimum is not None and (i.revocation_level is None or i.revocation_level < minimum):
            raise NotSatisfied(
                "revocation_level", f"REVOKE:{minimum}: enclave has revocation level {_show(i.revocation_level)}"
            )
        if SECURITY_LEVELS.index(i.security) < SECURITY_LEVELS.index(self.minimum_security):
            hint = (
                "; SEC defaults to STALE: to accept a mock or simulation enclave on purpose, add SEC:INSECURE"
                if i.security == "INSECURE"
                else ""
            )
            raise NotSatisfied(
                "security",
                f"SEC:{self.minimum_security}: enclave security is {i.security} ({i.security_reason}){hint}",
            )
        if self.max_age is not None:
            period, max_age = self.max_age
            if i.timestamp_unix is None:
                evidence = i.tee_kind or "this"
                raise NotSatisfied(
                    "no_timestamp",
                    f"EXPIRE:{period}: {evidence} evidence carries no creation time, so its age cannot be checked; "
                    f"drop EXPIRE for {evidence} enclaves",
                )
            age = max(0, now_unix - i.timestamp_unix)
            if age > max_age:
                raise NotSatisfied(
                    "expired", f"EXPIRE:{period}: attestation is {age} s old, at most {max_age} s allowed"
                )
