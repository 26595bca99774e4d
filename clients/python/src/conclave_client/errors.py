"""Every error this package raises: one base class, one class per area.

Each class carries a stable ``kind`` (or ``code``) and structured fields, so a
caller can act on the cause without reading the message. Messages are the
same short lowercase clauses as the Rust crates' (``crates/core``,
``crates/client``), so a user sees one wording whatever the client.
"""

from __future__ import annotations

from typing import Optional


def rust_quote(text: str) -> str:
    """``text`` quoted as Rust's ``{:?}`` prints a string, so messages read alike."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class ConclaveError(Exception):
    """The base of every error raised by ``conclave_client``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class MailError(ConclaveError):
    """A mail could not be built or read.

    ``kind`` is one of ``invalid_topic``, ``envelope_too_long``, ``malformed``,
    ``unsupported_version``, ``truncated``, ``handshake_failed``,
    ``packet_authentication``, ``trailing_bytes``, ``body_length_mismatch``,
    ``low_order_sender``.
    """

    def __init__(self, kind: str, message: str, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.kind = kind
        #: The packet that failed, for ``packet_authentication``.
        self.index = index


class FrameError(ConclaveError):
    """A request or response frame could not be read.

    ``kind`` is ``truncated``, ``unsupported_version`` or ``malformed``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class InfoError(ConclaveError):
    """An EnclaveInstanceInfo could not be decoded or does not verify.

    ``kind`` is ``malformed``, ``unsupported_version``, ``key_binding``,
    ``simulation_signature``, ``bad_signing_key``, ``run_signature``,
    ``low_order_key`` or ``hardware_unsupported``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ConstraintError(ConclaveError):
    """A constraint could not be parsed.

    ``kind`` is ``invalid_token`` (``token`` names it), ``no_identity`` or
    ``missing_product_id``.
    """

    def __init__(self, kind: str, message: str, token: Optional[str] = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.token = token


class NotSatisfied(ConclaveError):
    """A verified enclave does not satisfy the constraint.

    ``kind`` names the failing part: ``identity``, ``product_id``,
    ``revocation_level``, ``security``, ``expired``, ``no_timestamp`` or
    ``simulation_key``; ``detail`` is the reason without the prefix.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"constraint not satisfied: {detail}")
        self.kind = kind
        self.detail = detail


class RelayError(ConclaveError):
    """The host refused, failed, or could not be reached.

    ``code`` is the host's stable error code (``MAIL_INVALID``,
    ``SERVICE_UNAVAILABLE``…), ``UNREACHABLE`` for a transport failure or
    ``BAD_RESPONSE`` for an answer that does not follow the API. Nothing a
    host says is authenticated.
    """

    UNREACHABLE = "UNREACHABLE"
    BAD_RESPONSE = "BAD_RESPONSE"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message

    def describe(self) -> str:
        """How the client's errors show it."""
        if self.code == self.UNREACHABLE:
            return f"cannot reach the host ({self.detail}): is `conclave host` running at that address?"
        return f"host refused: {self}"


class ClientError(ConclaveError):
    """The base of the errors of :class:`conclave_client.EnclaveClient`."""


class Unsettled(ClientError):
    """The mail has no answer yet; it is kept and sent again by the next send or poll."""

    def __init__(self, topic: str, sequence_number: int, last: RelayError) -> None:
        super().__init__(
            f"mail {sequence_number} on topic {rust_quote(topic)} is not answered yet ({last}); it is kept and "
            "will be sent again by the next send or poll"
        )
        self.topic = topic
        self.sequence_number = sequence_number
        self.last = last


class RollbackDetected(ClientError):
    """The enclave (authenticated) knows fewer replies than this client verified."""

    def __init__(self, enclave_index: int, client_index: int) -> None:
        super().__init__(
            f"rollback detected: this client has verified {client_index} replies from the enclave, but the "
            f"enclave's state knows of only {enclave_index}; the host restored an older state (or this client's "
            "state file was replaced by a newer one)"
        )
        self.enclave_index = enclave_index
        self.client_index = client_index


class ForkDetected(ClientError):
    """The enclave's history and what this client was shown have split."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"fork detected: {detail}; the host is running the enclave from another copy of its state. Compare "
            "checkpoints with the other parties before trusting any result"
        )
        self.detail = detail


class Withheld(ClientError):
    """A reply the enclave sent this client never arrived, although later ones did."""

    def __init__(self, missing: int) -> None:
        super().__init__(
            f"reply {missing} from the enclave never arrived, although later ones did: the host withheld it (or "
            "delivered it under another correlation id)"
        )
        self.missing = missing


class Refused(ClientError):
    """The enclave's application refused the mail (authenticated); its number is used up."""

    def __init__(self, topic: str, sequence_number: int, refusal: str) -> None:
        super().__init__(f"the enclave refused mail {sequence_number} on topic {rust_quote(topic)}: {refusal}")
        self.topic = topic
        self.sequence_number = sequence_number
        self.refusal = refusal


def _rejection_text(code: str, expected: int, received: int) -> str:
    if code in ("SEQUENCE_GAP", "SEQUENCE_REORDERED"):
        return (
            f"{code}: it expects sequence number {expected} but this mail is {received}; this client has no "
            "record of the mail in between (was its state file restored from a backup?)"
        )
    if code == "STATE_FULL":
        return "STATE_FULL: the enclave's state is full; try again later"
    if code == "BAD_REQUEST":
        return "BAD_REQUEST: the enclave could not read this client's request"
    return code


class Rejected(ClientError):
    """The enclave rejected the mail before reading it, for a reason other than rollback or fork."""

    def __init__(self, topic: str, received: int, code: str, expected: int, chain_index: int) -> None:
        super().__init__(
            f"the enclave rejected mail {received} on topic {rust_quote(topic)}: "
            f"{_rejection_text(code, expected, received)}"
        )
        self.topic = topic
        self.received = received
        self.code = code
        self.expected = expected
        self.chain_index = chain_index


class AlreadyProcessed(ClientError):
    """The enclave processed this mail, but this client has no answer for it."""

    def __init__(self, topic: str, sequence_number: int) -> None:
        super().__init__(
            f"the enclave has already processed mail {sequence_number} on topic {rust_quote(topic)}, but this "
            "client has no answer for it: this client's state file is out of date (restored from a backup?), or "
            "the host is showing it another copy of the enclave"
        )
        self.topic = topic
        self.sequence_number = sequence_number


class UnexpectedAnswer(ClientError):
    """The enclave answered a mail this client never sent."""

    def __init__(self, topic: str, sequence_number: int) -> None:
        super().__init__(
            f"the enclave answered mail {sequence_number} on topic {rust_quote(topic)}, which this client never "
            "sent; this client's state file is older than its conversation (restored from a backup?)"
        )
        self.topic = topic
        self.sequence_number = sequence_number


class BadReply(ClientError):
    """A reply from the enclave is malformed or inconsistent."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"a reply from the enclave is invalid: {detail}")
        self.detail = detail


class UnreadableAttestation(ClientError):
    """The host's attestation could not be decoded."""

    def __init__(self, error: InfoError) -> None:
        super().__init__(f"attestation from the host is unreadable: {error}")
        self.error = error


class NotStarted(ClientError):
    """The client was used before ``start``."""

    def __init__(self) -> None:
        super().__init__("client is not started: call start first")


class BadState(ClientError):
    """Saved state is unreadable or inconsistent."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"client state is invalid: {detail}")
        self.detail = detail


class StateFileError(ClientError):
    """Reading or writing the state file failed."""

    def __init__(self, action: str, path: str, error: OSError) -> None:
        reason = f"{error.strerror} (os error {error.errno})" if error.strerror else str(error)
        super().__init__(f"cannot {action} client state file {path}: {reason}")
        self.action = action
        self.path = path
        self.error = error
