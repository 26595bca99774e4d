"""A real `conclave host` for the integration tests, started on port 0 and talked to over HTTP."""

from __future__ import annotations

import http.server
import json
import pathlib
import selectors
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Any, Optional

# Generous bounds that only stop a hung test; nothing asserts how long anything took.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class Host:
    """One `conclave host --example NAME` process over a data directory it keeps across restarts."""

    def __init__(self, binary: pathlib.Path, data_dir: pathlib.Path, example: str = "reverse") -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.example = example
        self.port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.log = data_dir.parent / f"{data_dir.name}-host.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Host":
        """Starts the host (on the port it had before, after the first start) and waits until it serves."""
        assert self.process is None, "the host is running"
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [
                str(self.binary), "host", "--example", self.example,
                "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(START_TIMEOUT):
                self.stop()
                raise RuntimeError(f"the host did not start; see {self.log}")
        line = self.process.stdout.readline().decode("utf-8", "replace").strip()
        if not line.startswith("listening on http://"):
            self.stop()
            raise RuntimeError(f"the host did not start ({line!r}); see {self.log}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Stops the host with SIGTERM (its clean shutdown) and waits for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def copy_data(self, to: pathlib.Path) -> None:
        """Copies the (stopped) host's data directory."""
        assert self.process is None, "stop the host before copying its data"
        shutil.copytree(self.data_dir, to)

    def restore_data(self, source: pathlib.Path) -> None:
        """Replaces the (stopped) host's data directory with a copy: a rollback of its state."""
        assert self.process is None, "stop the host before restoring its data"
        shutil.rmtree(self.data_dir)
        shutil.copytree(source, self.data_dir)

    def get_json(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=STOP_TIMEOUT) as response:
            return json.loads(response.read())

    def code_hash(self) -> str:
        """The running enclave's code hash, from the JSON view (fine for a test's constraint)."""
        return str(self.get_json("/v1/attestation")["code_hash"])

    def constraint(self) -> str:
        return f"C:{self.code_hash()} SEC:INSECURE"


class LosingProxy:
    """An HTTP proxy in front of a host that forwards everything but drops the answer to chosen mail deliveries.

    The host processes the mail; the client sees the connection close
    without a response, as after a network failure.
    """

    def __init__(self, target: str, drop_deliveries: int = 1) -> None:
        self.target = target
        self.drop = drop_deliveries
        self.dropped = 0
        self.deliveries = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                request = urllib.request.Request(proxy.target + self.path, data=body, method=self.command, headers=headers)
                try:
                    response = urllib.request.urlopen(request, timeout=STOP_TIMEOUT)
                    status, reply_headers, data = response.status, response.headers, response.read()
                except urllib.error.HTTPError as error:
                    status, reply_headers, data = error.code, error.headers, error.read()
                if self.command == "POST" and self.path == "/v1/mail":
                    proxy.deliveries += 1
                    if proxy.dropped < proxy.drop:
                        proxy.dropped += 1
                        self.close_connection = True
                        return
                self.send_response(status)
                for k, v in reply_headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _forward
            do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
