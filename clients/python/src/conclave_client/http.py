"""HttpRelay: the web host's HTTP API (docs/http-api.md), over the standard library.

::

    attestation()  GET  {base}/v1/attestation             → encoded EnclaveInstanceInfo
    deliver()      POST {base}/v1/mail  (Correlation-ID)  → 200 reply + Reply-ID, or 204
    poll()         GET  {base}/v1/mail/{id}               → {"replies": [{"id", "mail" (base64)}]}
    acknowledge()  POST {base}/v1/mail/{id}/ack {"ids"}   → {"deleted": n}

The host's JSON errors become :class:`RelayError` with the same stable code;
a host that cannot be reached gives ``UNREACHABLE``; an answer that is not
what the API promises gives ``BAD_RESPONSE``. Nothing here is trusted: the
client checks everything it is handed.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Tuple

from .errors import RelayError, rust_quote

_CORRELATION_ID = re.compile(r"[A-Za-z0-9._-]{1,256}")
#: The largest response body read (a poll returns at most the host's poll limit of replies).
MAX_RESPONSE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class QueuedMail:
    """One mail from the host's reply queue, with its queue id."""

    id: int
    bytes: bytes

    def __repr__(self) -> str:
        return f"QueuedMail(id={self.id}, len={len(self.bytes)})"


class MailRelay(Protocol):
    """What a client needs from whoever carries its mail to the enclave."""

    def attestation(self) -> bytes:
        """The encoded EnclaveInstanceInfo of the running enclave."""

    def deliver(self, correlation_id: str, mail: bytes) -> Optional[QueuedMail]:
        """Delivers one mail; the enclave's first answer under the id, if it posted one."""

    def poll(self, correlation_id: str) -> List[QueuedMail]:
        """The replies queued under the id, oldest first, not deleted."""

    def acknowledge(self, correlation_id: str, ids: List[int]) -> None:
        """Deletes handled replies from the queue."""


def check_correlation_id(correlation_id: str) -> None:
    """The web host's rule, checked here too because the id becomes part of a URL path."""
    if not _CORRELATION_ID.fullmatch(correlation_id) or not correlation_id.isascii():
        raise RelayError(
            "INVALID_CORRELATION_ID", "invalid correlation id: use 1 to 256 letters, digits, '-', '_' or '.'"
        )


def _bad_response(message: str) -> RelayError:
    return RelayError(RelayError.BAD_RESPONSE, message)


class HttpRelay:
    """A :class:`MailRelay` talking to a web host at a base URL such as ``http://127.0.0.1:8080``."""

    UNREACHABLE = RelayError.UNREACHABLE
    BAD_RESPONSE = RelayError.BAD_RESPONSE

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        base = base_url.rstrip("/")
        if not base.startswith("http://") or base == "http://":
            raise RelayError(
                "INVALID_URL", f"invalid host URL {rust_quote(base_url)}: expected http://HOST:PORT (https is not built in)"
            )
        self.base_url = base
        self.timeout = timeout
        # Proxies from the environment are honoured, as by any HTTP client.
        self._opener = urllib.request.build_opener()

    def _call(
        self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
    ) -> Tuple[int, Dict[str, str], bytes]:
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                found = {k.lower(): v for k, v in response.headers.items()}
                data = self._read(response)
        except urllib.error.HTTPError as error:
            data = self._read(error)
            try:
                parsed: Any = json.loads(data)
                code, message = parsed["error"], parsed["message"]
                if not isinstance(code, str) or not isinstance(message, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise _bad_response(f"HTTP status {error.code} without a JSON error from {self.base_url}") from None
            raise RelayError(code, message) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RelayError(RelayError.UNREACHABLE, f"cannot reach {self.base_url}: {reason}") from None
        return status, found, data

    def _read(self, response: Any) -> bytes:
        data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
        if len(data) > MAX_RESPONSE_BYTES:
            raise _bad_response(f"an answer from {self.base_url} is larger than {MAX_RESPONSE_BYTES} bytes")
        return data

    def attestation(self) -> bytes:
        _, _, body = self._call("GET", "/v1/attestation", headers={"Accept": "application/octet-stream"})
        return body

    def deliver(self, correlation_id: str, mail: bytes) -> Optional[QueuedMail]:
        check_correlation_id(correlation_id)
        headers = {"Correlation-ID": correlation_id, "Content-Type": "application/octet-stream"}
        status, found, body = self._call("POST", "/v1/mail", mail, headers)
        if status == 204:
            return None
        if status == 200:
            reply_id = found.get("reply-id", "")
            if not reply_id.isdigit() or not reply_id.isascii():
                raise _bad_response("a reply without a valid Reply-ID header")
            return QueuedMail(int(reply_id), body)
        raise _bad_response(f"unexpected HTTP status {status} for a delivery")

    def poll(self, correlation_id: str) -> List[QueuedMail]:
        check_correlation_id(correlation_id)
        _, _, body = self._call("GET", f"/v1/mail/{correlation_id}")
        try:
            replies = json.loads(body)["replies"]
            pairs = [(int(r["id"]), str(r["mail"])) for r in replies]
        except (ValueError, KeyError, TypeError) as e:
            raise _bad_response(f"unreadable poll answer: {e!r}") from None
        out = []
        for reply_id, mail in pairs:
            try:
                out.append(QueuedMail(reply_id, base64.b64decode(mail, validate=True)))
            except (binascii.Error, ValueError):
                raise _bad_response(f"reply {reply_id} is not base64") from None
        return out

    def acknowledge(self, correlation_id: str, ids: List[int]) -> None:
        check_correlation_id(correlation_id)
        body = json.dumps({"ids": list(ids)}).encode("ascii")
        self._call("POST", f"/v1/mail/{correlation_id}/ack", body, {"Content-Type": "application/json"})
