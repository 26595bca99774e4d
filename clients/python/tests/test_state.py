"""The state file: atomic, owner-only, versioned, and in the Rust client's layout."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from conclave_client import BadState, ClientState, EnclaveConstraint
from conclave_client.freshness import StateCheckpoint
from conclave_client.padding import Fixed, MovingAverage, NoPadding, PaddingPolicy
from conclave_client.state import KnownRun, PendingMail

CONSTRAINT = EnclaveConstraint.parse("C:" + "c0" * 32 + " SEC:INSECURE")


def test_round_trip_and_layout(tmp_path: pathlib.Path) -> None:
    state = ClientState.generate(CONSTRAINT)
    state.runs.append(KnownRun("ab" * 32, StateCheckpoint(1, bytes(32)), True))
    state.pending["t"] = PendingMail(4, "aGVsbG8=")
    state.padding = {"a": Fixed(100), "b": MovingAverage(2, [1, 2]), "c": NoPadding()}
    path = str(tmp_path / "state.json")
    state.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = ClientState.load(path)
    assert loaded.to_json() == state.to_json()
    raw = json.loads(pathlib.Path(path).read_text())
    assert list(raw) == [
        "version", "private_key", "constraint", "correlation_id", "host", "runs", "chain",
        "next_sequence_numbers", "pending", "inbox", "padding",
    ]
    assert raw["padding"] == {
        "a": {"fixed": 100}, "b": {"moving_average": {"window": 2, "recent": [1, 2]}}, "c": "none"
    }
    assert raw["runs"][0]["checkpoint"] == "1:" + "00" * 32
    assert "<redacted>" in repr(state) and state.private_key not in repr(state)


def test_saving_replaces_a_stale_temporary_file_and_never_follows_a_link(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.json"
    target = tmp_path / "victim"
    target.write_text("keep me")
    os.symlink(target, str(path) + ".tmp")
    ClientState.generate(CONSTRAINT).save(str(path))
    assert target.read_text() == "keep me"
    assert not os.path.lexists(str(path) + ".tmp")
    assert ClientState.load(str(path)).constraint == str(CONSTRAINT)


def test_other_versions_and_broken_files_are_refused(tmp_path: pathlib.Path) -> None:
    state = ClientState.generate(CONSTRAINT).to_json()
    state["version"] = 1
    with pytest.raises(BadState) as error:
        ClientState.from_bytes(json.dumps(state).encode())
    assert "state version 1 is not supported (this client reads version 2)" in str(error.value)
    with pytest.raises(BadState):
        ClientState.from_bytes(b"not json")
    state["version"] = 2
    state["private_key"] = "zz"
    with pytest.raises(BadState) as error:
        ClientState.from_bytes(json.dumps(state).encode())
    assert "private_key must be 64 hex digits" in str(error.value)


def test_largest_seen_is_the_default_and_never_shrinks() -> None:
    policy = PaddingPolicy.from_json({"largest_seen": {"largest": 0}})
    assert [policy.min_size_for(n) for n in (10, 50, 5)] == [10, 50, 50]
    assert MovingAverage(2).min_size_for(10) == 10
