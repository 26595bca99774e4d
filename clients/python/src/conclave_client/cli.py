"""``python -m conclave_client attest|send|poll|checkpoint``: the ``conclave`` CLI's client commands.

Flags, output and exit codes mirror ``crates/cli/src/client_cmd.rs``: reply
bytes on stdout, counts and notes on stderr; exit 0 on success, 1 when the
enclave fails the constraint or its attestation does not verify, 2 for
anything else.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, List, NoReturn, Optional, Sequence

from .client import EnclaveClient
from .constraint import EnclaveConstraint
from .errors import (
    ConclaveError,
    InfoError,
    NotSatisfied,
    RelayError,
    Unsettled,
    rust_quote,
)
from .http import HttpRelay
from .info import EnclaveInstanceInfo, VerifiedEnclaveInfo
from .state import ClientState

PROG = "python -m conclave_client"

_CLIENT_EXIT_CODES = """\
Exit codes:
  0  success
  1  the enclave does not satisfy the constraint, or its attestation does not verify (reason on stderr)
  2  any other error: bad flags or constraint, host unreachable or refusing, unreadable files"""

_SEND_HELP = """\
Creates the state file (the client's private key, correlation id, sequence numbers, and what it
has verified of the enclave's state; mode 0600) on first use and saves it before every delivery, so
later sends continue the conversation. The mail is kept in the state file until the enclave itself
answers it: if the host fails or cannot be reached, running the same command again sends the same
mail again, and it is processed once. A different body on the same topic first settles the earlier
mail. The reply body is written to stdout as raw bytes; if the enclave processed the mail without
replying, nothing is written (later replies: `poll`).

Exit codes:
  0  sent and answered (the reply, if any, written)
  1  the enclave does not satisfy the constraint, or its attestation does not verify (reason on stderr)
  2  any other error: bad flags or constraint, host unreachable, mail not answered yet (kept, run again),
     the enclave refused the mail, a rollback or fork detected, unreadable files"""

_POLL_HELP = """\
Fetches the replies waiting for this client, checks and decrypts them, writes each body to stdout
as raw bytes followed by a newline, oldest first, then acknowledges them so the host deletes them.
The count goes to stderr. The state file must exist (made by `send`).

Exit codes:
  0  polled (possibly nothing)
  1  the enclave does not satisfy the state's constraint, or its attestation does not verify
  2  any other error: host unreachable, a reply fails its checks, unreadable state file"""

_CHECKPOINT_HELP = """\
Prints the latest state of the enclave this client has verified, as COUNTER:ID, and how many
replies it has verified. Parties compare their checkpoints out of band: if two of them show the
same counter with different ids, the host showed them different copies of the enclave (a fork).

Exit codes:
  0  printed
  2  the state file cannot be read"""


class Fail(Exception):
    """An error for ``main`` to print as ``error: ...`` with exit code 2."""


def _now() -> int:
    return int(time.time())


def _text(error: BaseException) -> str:
    """How the Rust client shows an error (a relay error reads as a sentence there)."""
    if isinstance(error, RelayError):
        return error.describe()
    if isinstance(error, OSError):
        return f"{error.strerror} (os error {error.errno})" if error.strerror else str(error)
    return str(error)


def _relay(url: str) -> HttpRelay:
    try:
        return HttpRelay(url)
    except RelayError as e:
        raise Fail(e.detail) from None


def _parse_constraint(text: str) -> EnclaveConstraint:
    try:
        return EnclaveConstraint.parse(text)
    except ConclaveError as e:
        raise Fail(f"invalid constraint {rust_quote(text)}: {e}") from None


def _print_summary(info: VerifiedEnclaveInfo) -> None:
    i = info.identity

    def show(value: Optional[int]) -> str:
        return "(none)" if value is None else str(value)

    print(f"mode:                  {info.mode}")
    print(f"code hash:             {i.code_hash.hex()}")
    print(f"code signer:           {i.signer.hex() if i.signer is not None else '(none)'}")
    print(f"product id:            {show(i.product_id)}")
    print(f"revocation level:      {show(i.revocation_level)}")
    print(f"security:              {i.security}")
    print(f"security reason:       {i.security_reason}")
    if i.simulated_attestation_key is not None:
        key = i.simulated_attestation_key.hex()
        print(f"simulation key:        {key}")
        print(f"                       pin this host's simulated attestation key with SIMKEY:{key}")
    print(f"data signing key:      {info.data_signing_key.hex()}")
    print(f"encryption key:        {info.encryption_key.hex()}")


def attest(args: argparse.Namespace) -> int:
    """``attest URL --constraint C``."""
    constraint = _parse_constraint(args.constraint)
    try:
        encoded = _relay(args.url).attestation()
    except RelayError as e:
        raise Fail(f"cannot fetch the attestation: {e}") from None
    try:
        info = EnclaveInstanceInfo.decode(encoded)
    except InfoError as e:
        raise Fail(f"the host's attestation is unreadable: {e}") from None
    try:
        verified = info.verify(_now())
    except InfoError as e:
        print(f"attestation does not verify: {e}", file=sys.stderr)
        return 1
    _print_summary(verified)
    try:
        constraint.check_identity(verified.identity, _now())
    except NotSatisfied as e:
        print("constraint:            NOT satisfied")
        sys.stdout.flush()
        print(e, file=sys.stderr)
        return 1
    print(f"constraint:            satisfied ({constraint})")
    return 0


def _start(client: EnclaveClient) -> Optional[int]:
    """Attests; a constraint or attestation failure is exit code 1."""
    try:
        client.start()
    except NotSatisfied as e:
        print(f"enclave rejected: {e}", file=sys.stderr)
        return 1
    except InfoError as e:
        print(f"enclave rejected: attestation is invalid: {e}", file=sys.stderr)
        return 1
    except ConclaveError as e:
        raise Fail(f"cannot attest the enclave: {_text(e)}") from None
    return None


def _read_body(body: str) -> bytes:
    if body.startswith("@"):
        path = body[1:]
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise Fail(f"cannot read mail body file {path}: {_text(e)}") from None
    return os.fsencode(body)


def _check_host(state: ClientState, url: str, path: str) -> None:
    """Refuses a state file used with another host: its numbers and queue belong there."""
    if state.host is not None and state.host.rstrip("/") != url.rstrip("/"):
        raise Fail(f"state file {path} belongs to the host {state.host}, not {url}: use one state file per host")


def _restore(url: str, path: str) -> EnclaveClient:
    try:
        return EnclaveClient.restore_from_file(_relay(url), path)
    except ConclaveError as e:
        raise Fail(f"cannot restore client state {path}: {_text(e)}") from None


def _autosave(client: EnclaveClient, path: str) -> None:
    try:
        client.autosave_to(path)
    except ConclaveError as e:
        raise Fail(f"cannot save client state {path}: {_text(e)}") from None


def _warn_dropped(client: EnclaveClient) -> None:
    if client.dropped_mail > 0:
        print(
            f"warning: dropped {client.dropped_mail} queued mail that did not decrypt for this client or came from "
            "no attested run",
            file=sys.stderr,
        )


def send(args: argparse.Namespace) -> int:
    """``send URL --constraint C --state FILE [--topic T] BODY|@FILE``."""
    constraint = _parse_constraint(args.constraint)
    body = _read_body(args.body)
    relay = _relay(args.url)
    if os.path.exists(args.state):
        client = _restore(args.url, args.state)
        if str(client.constraint) != str(constraint):
            raise Fail(
                f"state file {args.state} was made for the constraint {rust_quote(str(client.constraint))}; use "
                "that constraint or another state file"
            )
        _check_host(client.state, args.url, args.state)
    else:
        client = EnclaveClient(relay, constraint)
        client.state.host = args.url
    # Every step is saved before the next delivery: a crash or a lost
    # connection loses no mail, and the next run sends the same mail again.
    _autosave(client, args.state)
    code = _start(client)
    if code is not None:
        return code
    # Running the same command again after a failure is a retry, not a second mail.
    retry = client.pending_body(args.topic) == body
    try:
        if retry:
            print(
                f"the same mail on topic {rust_quote(args.topic)} was sent before without an answer: sending it "
                "again (not a second copy)",
                file=sys.stderr,
            )
            reply = client.resend_pending(args.topic)
        else:
            reply = client.send_mail(args.topic, body)
    except Unsettled as e:
        _warn_dropped(client)
        raise Fail(f"cannot send: {e}. Run the same command again to resend it; it will not be processed twice") from None
    except ConclaveError as e:
        _warn_dropped(client)
        raise Fail(f"cannot send: {_text(e)}") from None
    _warn_dropped(client)
    if reply is None:
        print("sent; the enclave processed it without replying (later replies: `poll`)", file=sys.stderr)
        return 0
    out = sys.stdout.buffer
    out.write(reply.body)
    # Raw bytes for pipes; a final newline only for a person at a terminal.
    if sys.stdout.isatty():
        out.write(b"\n")
    out.flush()
    return 0


def poll(args: argparse.Namespace) -> int:
    """``poll URL --state FILE``."""
    if not os.path.exists(args.state):
        raise Fail(f"client state file {args.state} does not exist: `send` creates it with the first mail")
    client = _restore(args.url, args.state)
    _check_host(client.state, args.url, args.state)
    _autosave(client, args.state)
    code = _start(client)
    if code is not None:
        return code
    try:
        replies = client.poll_mail()
    except ConclaveError as e:
        _warn_dropped(client)
        raise Fail(f"cannot poll: {_text(e)}") from None
    _warn_dropped(client)
    out = sys.stdout.buffer
    shown = 0
    for reply in replies:
        if reply.kind == "refused":
            answered = "a mail" if reply.answers is None else f"mail {reply.answers}"
            message = reply.body.decode("utf-8", errors="replace")
            print(f"the enclave refused {answered} on topic {rust_quote(reply.topic)}: {message}", file=sys.stderr)
            continue
        out.write(reply.body + b"\n")
        shown += 1
    out.flush()
    print(f"{shown} replies", file=sys.stderr)
    for topic in client.pending_topics():
        print(
            f"mail on topic {rust_quote(topic)} is still waiting for an answer; it is sent again at the next poll or "
            "send",
            file=sys.stderr,
        )
    return 0


def checkpoint(args: argparse.Namespace) -> int:
    """``checkpoint --state FILE``."""
    try:
        state = ClientState.load(args.state)
    except ConclaveError as e:
        raise Fail(f"cannot read client state {args.state}: {_text(e)}") from None
    print(f"checkpoint:        {state.chain.state}")
    print(f"replies verified:  {state.chain.head.index}")
    print(f"reply chain:       {state.chain.head.digest.hex()}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def parser() -> argparse.ArgumentParser:
    """The command line: the ``conclave`` CLI's client commands."""
    top = _Parser(
        prog=PROG,
        description="Conclave client (Python): attest an enclave behind a web host, send it mail, poll replies",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes (every command):\n  0  success\n  1  the enclave does not satisfy the constraint, or its "
        "attestation does not verify\n  2  usage error, invalid input, unreadable file, unreachable host, or any "
        "other failure",
    )
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, about: str, epilog: str, run: Any, url: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=about, description=about, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.set_defaults(run=run)
        if url:
            p.add_argument("url", metavar="URL", help="The web host, e.g. http://127.0.0.1:8080")
        return p

    p = command(
        "attest",
        "Fetch a web host's attestation, print its summary and check it against a constraint",
        _CLIENT_EXIT_CODES,
        attest,
    )
    p.add_argument(
        "--constraint", metavar="C", required=True,
        help='The constraint the enclave must satisfy, e.g. "C:<code hash> SEC:INSECURE"',
    )
    p = command(
        "send", "Attest a web host's enclave, send it one encrypted mail and print the reply body", _SEND_HELP, send
    )
    p.add_argument(
        "--constraint", metavar="C", required=True,
        help="The constraint the enclave must satisfy. An existing state file keeps the constraint it was made "
        "with; giving a different one is an error",
    )
    p.add_argument("--state", metavar="FILE", required=True, help="The client state file (created if missing)")
    p.add_argument(
        "--topic", metavar="T", default="default",
        help="The topic: one conversation of this client with the enclave [default: default]",
    )
    p.add_argument("body", metavar="BODY | @FILE", help="The mail body: text, or @FILE to send a file's bytes")
    written = "The client state file written by `send`"
    p = command(
        "poll", "Fetch, print and acknowledge the replies waiting for a client (state from `send`)", _POLL_HELP, poll
    )
    p.add_argument("--state", metavar="FILE", required=True, help=written)
    p = command(
        "checkpoint",
        "Print the enclave state a client has verified, to compare with other parties",
        _CHECKPOINT_HELP,
        checkpoint,
        url=False,
    )
    p.add_argument("--state", metavar="FILE", required=True, help=written)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns its exit code."""
    args = parser().parse_args(None if argv is None else list(argv))
    try:
        code: int = args.run(args)
        return code
    except Fail as e:
        sys.stdout.flush()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2


def entry() -> NoReturn:
    """The console script."""
    sys.exit(main())


__all__: List[str] = ["main", "parser", "entry"]
