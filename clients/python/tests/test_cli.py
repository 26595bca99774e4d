"""`python -m conclave_client attest|send|poll|checkpoint` against a real host: output split and exit codes."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import List

from hosting import Host, LosingProxy

TIMEOUT = 300  # a bound against hangs only


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "conclave_client", *args], capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode("utf-8", "replace")


def test_attest_prints_the_summary_and_checks_the_constraint(host: Host) -> None:
    ok = cli("attest", host.url, "--constraint", host.constraint())
    assert ok.returncode == 0, text(ok)
    out = ok.stdout.decode()
    assert "mode:                  SIMULATION" in out
    assert f"code hash:             {host.code_hash()}" in out
    assert "pin this host's simulated attestation key with SIMKEY:" in out
    assert "constraint:            satisfied (C:" in out


def test_attest_exit_codes(host: Host) -> None:
    other = "C:" + "ab" * 32 + " SEC:INSECURE"
    refused = cli("attest", host.url, "--constraint", other)
    assert refused.returncode == 1
    assert "constraint:            NOT satisfied" in refused.stdout.decode()
    assert text(refused).startswith("constraint not satisfied: C/S: code hash ")
    # INSECURE must be asked for: the default SEC:STALE refuses a simulation enclave.
    stale = cli("attest", host.url, "--constraint", f"C:{host.code_hash()}")
    assert stale.returncode == 1 and "add SEC:INSECURE" in text(stale)
    # A constraint that does not parse is a usage error, naming the token.
    bad = cli("attest", host.url, "--constraint", f"C:{host.code_hash()} FOO:1")
    assert bad.returncode == 2 and 'invalid token "FOO:1"' in text(bad)
    assert cli("attest", "127.0.0.1:1", "--constraint", host.constraint()).returncode == 2
    assert cli("attest").returncode == 2


def test_attest_an_unreachable_host_is_exit_2(host: Host) -> None:
    constraint = host.constraint()
    url = host.url
    host.stop()
    gone = cli("attest", url, "--constraint", constraint)
    assert gone.returncode == 2 and "cannot fetch the attestation: UNREACHABLE" in text(gone)


def test_send_writes_the_raw_reply_and_poll_the_count(host: Host, tmp_path: pathlib.Path) -> None:
    state = str(tmp_path / "state.json")
    sent = cli("send", host.url, "--constraint", host.constraint(), "--state", state, "hello")
    assert sent.returncode == 0, text(sent)
    assert sent.stdout == b"olleh"  # raw bytes: no newline when stdout is not a terminal
    body = tmp_path / "body.bin"
    body.write_bytes(b"\x00\x01binary\xff")
    sent = cli("send", host.url, "--constraint", host.constraint(), "--state", state, "--topic", "files", f"@{body}")
    assert sent.returncode == 0 and sent.stdout == b"\xffyranib\x01\x00"
    polled = cli("poll", host.url, "--state", state)
    assert polled.returncode == 0 and polled.stdout == b"" and text(polled).strip() == "0 replies"
    saved = json.loads(pathlib.Path(state).read_text())
    assert saved["next_sequence_numbers"] == {"default": 1, "files": 1} and saved["host"] == host.url
    shown = cli("checkpoint", "--state", state)
    assert shown.returncode == 0 and "replies verified:  2" in shown.stdout.decode()


def test_send_refuses_a_state_made_for_another_constraint_or_host(host: Host, tmp_path: pathlib.Path) -> None:
    state = str(tmp_path / "state.json")
    assert cli("send", host.url, "--constraint", host.constraint(), "--state", state, "x").returncode == 0
    other = cli("send", host.url, "--constraint", host.constraint() + " REVOKE:0", "--state", state, "x")
    assert other.returncode == 2 and "was made for the constraint" in text(other)
    moved = cli("send", "http://127.0.0.1:1", "--constraint", host.constraint(), "--state", state, "x")
    assert moved.returncode == 2 and "use one state file per host" in text(moved)
    missing = cli("poll", host.url, "--state", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "does not exist" in text(missing)
    unreadable = cli("send", host.url, "--constraint", host.constraint(), "--state", state, "@/nonexistent/file")
    assert unreadable.returncode == 2 and "cannot read mail body file" in text(unreadable)


def test_send_to_an_enclave_that_fails_the_constraint_is_exit_1(host: Host, tmp_path: pathlib.Path) -> None:
    wrong = "C:" + "ab" * 32 + " SEC:INSECURE"
    result = cli("send", host.url, "--constraint", wrong, "--state", str(tmp_path / "s.json"), "x")
    assert result.returncode == 1 and text(result).startswith("enclave rejected: constraint not satisfied")
    assert result.stdout == b""


def test_running_a_failed_send_again_is_a_retry_not_a_second_mail(host: Host, tmp_path: pathlib.Path) -> None:
    proxy = LosingProxy(host.url, drop_deliveries=1)
    try:
        state = str(tmp_path / "state.json")
        args = ["send", proxy.url, "--constraint", host.constraint(), "--state", state, "--topic", "bids", "42"]
        first = cli(*args)
        assert first.returncode == 2 and first.stdout == b""
        assert "Run the same command again to resend it" in text(first)
        again = cli(*args)
        assert again.returncode == 0, text(again)
        assert again.stdout == b"24"
        assert "sending it again (not a second copy)" in text(again)
        saved = json.loads(pathlib.Path(state).read_text())
        # One mail on the topic, one answer in the chain: the enclave processed it once.
        assert saved["next_sequence_numbers"] == {"bids": 1} and saved["chain"]["head"]["index"] == 1
        assert saved["pending"] == {}
        assert proxy.deliveries == 2
    finally:
        proxy.close()


def test_poll_prints_an_answer_whose_delivery_was_lost(host: Host, tmp_path: pathlib.Path) -> None:
    proxy = LosingProxy(host.url, drop_deliveries=1)
    try:
        state = str(tmp_path / "state.json")
        assert cli("send", proxy.url, "--constraint", host.constraint(), "--state", state, "lost").returncode == 2
        polled = cli("poll", proxy.url, "--state", state)
        assert polled.returncode == 0, text(polled)
        assert polled.stdout == b"tsol\n" and "1 replies" in text(polled)
        assert cli("poll", proxy.url, "--state", state).stdout == b""
    finally:
        proxy.close()


def test_poll_reports_a_rollback_as_exit_2(host: Host, tmp_path: pathlib.Path) -> None:
    state = str(tmp_path / "state.json")
    send: List[str] = ["send", host.url, "--constraint", host.constraint(), "--state", state]
    assert cli(*send, "one").returncode == 0
    host.stop()
    host.copy_data(tmp_path / "backup")
    host.start()
    assert cli(*send, "two").returncode == 0
    host.stop()
    host.restore_data(tmp_path / "backup")
    host.start()
    rolled = cli(*send, "three")
    assert rolled.returncode == 2 and rolled.stdout == b""
    assert "cannot send: rollback detected: this client has verified 2 replies" in text(rolled)


def test_the_rust_cli_and_this_one_continue_each_others_state(
    host: Host, tmp_path: pathlib.Path, conclave: pathlib.Path
) -> None:
    state = str(tmp_path / "state.json")
    assert cli("send", host.url, "--constraint", host.constraint(), "--state", state, "from python").returncode == 0
    rust = subprocess.run(
        [str(conclave), "send", host.url, "--constraint", host.constraint(), "--state", state, "from rust"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert rust.returncode == 0, rust.stderr.decode()
    assert rust.stdout == b"tsur morf"
    back = cli("send", host.url, "--constraint", host.constraint(), "--state", state, "back")
    assert back.returncode == 0 and back.stdout == b"kcab"
    ours = cli("checkpoint", "--state", state).stdout
    theirs = subprocess.run([str(conclave), "checkpoint", "--state", state], capture_output=True).stdout
    assert ours == theirs and b"replies verified:  3" in ours
