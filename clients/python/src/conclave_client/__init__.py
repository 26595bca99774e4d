"""Conclave client for Python: attest an enclave, then exchange encrypted mail with it.

::

    EnclaveClient ── start() ──► HttpRelay ──► web host       check against EnclaveConstraint
          │ one sequence of mail per topic
          ├─ send_mail(topic, body) ──► POST /v1/mail ──► enclave
          └◄ its answer, or poll_mail(): GET /v1/mail/{id}, then acknowledge

The host is untrusted: every answer is decrypted and checked here (the
attestation, the reply chain, which mail it answers). The rules and byte
layouts are those of docs/wire-format.md, pinned by the shared vector files
in crates/core/tests/vectors. Getting started::

    from conclave_client import EnclaveClient, EnclaveConstraint, HttpRelay

    constraint = EnclaveConstraint.parse("C:<code hash> SEC:INSECURE")
    client = EnclaveClient(HttpRelay("http://127.0.0.1:8080"), constraint)
    client.autosave_to("client.json")      # keys, numbers, verified chain; mode 0600
    client.start()                         # attest: raises unless the constraint holds
    reply = client.send_mail("default", b"hello")
    print(reply.body if reply else "processed, no reply")
"""

from .client import EnclaveClient, EnclaveReply
from .constraint import EnclaveConstraint
from .errors import (
    AlreadyProcessed,
    BadReply,
    BadState,
    ClientError,
    ConclaveError,
    ConstraintError,
    ForkDetected,
    FrameError,
    InfoError,
    MailError,
    NotSatisfied,
    NotStarted,
    Refused,
    Rejected,
    RelayError,
    RollbackDetected,
    StateFileError,
    UnexpectedAnswer,
    UnreadableAttestation,
    Unsettled,
    Withheld,
)
from .frame import Answer, Rejection, RequestFrame, ResponseFrame
from .freshness import ChainLink, ReplyChain, ReplyChainVerifier, StateCheckpoint, Verdict
from .http import HttpRelay, MailRelay, QueuedMail
from .info import EnclaveInstanceInfo, VerifiedEnclaveInfo
from .keys import PrivateKey
from .mail import MailDecryptor, MailHeader, decrypt_mail, encrypt_mail
from .padding import Fixed, LargestSeen, MovingAverage, NoPadding, PaddingPolicy
from .state import ClientState

__version__ = "0.1.0"

__all__ = [
    "AlreadyProcessed",
    "Answer",
    "BadReply",
    "BadState",
    "ChainLink",
    "ClientError",
    "ClientState",
    "ConclaveError",
    "ConstraintError",
    "EnclaveClient",
    "EnclaveConstraint",
    "EnclaveInstanceInfo",
    "EnclaveReply",
    "Fixed",
    "ForkDetected",
    "FrameError",
    "HttpRelay",
    "InfoError",
    "LargestSeen",
    "MailDecryptor",
    "MailError",
    "MailHeader",
    "MailRelay",
    "MovingAverage",
    "NoPadding",
    "NotSatisfied",
    "NotStarted",
    "PaddingPolicy",
    "PrivateKey",
    "QueuedMail",
    "Refused",
    "Rejected",
    "Rejection",
    "RelayError",
    "ReplyChain",
    "ReplyChainVerifier",
    "RequestFrame",
    "ResponseFrame",
    "RollbackDetected",
    "StateCheckpoint",
    "StateFileError",
    "UnexpectedAnswer",
    "UnreadableAttestation",
    "Unsettled",
    "VerifiedEnclaveInfo",
    "Verdict",
    "Withheld",
    "decrypt_mail",
    "encrypt_mail",
]
