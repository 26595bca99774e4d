"""Shared fixtures: the vector files and, for the integration tests, a real `conclave host`."""

from __future__ import annotations

import json
import os
import pathlib
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from hosting import Host

import pytest

#: The repository root (clients/python/tests/../../..).
ROOT = pathlib.Path(__file__).resolve().parents[3]
VECTORS = ROOT / "crates" / "core" / "tests" / "vectors"


def vector(name: str) -> Any:
    """One shared vector file, parsed."""
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


def conclave_binary() -> pathlib.Path:
    """The `conclave` binary: $CONCLAVE_BIN, else target/debug/conclave (build it with `cargo build -p conclave-cli`)."""
    explicit = os.environ.get("CONCLAVE_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "conclave"


@pytest.fixture(scope="session")
def conclave() -> pathlib.Path:
    path = conclave_binary()
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build -p conclave-cli` first (or set CONCLAVE_BIN)")
    return path


@pytest.fixture
def host(conclave: pathlib.Path, tmp_path: pathlib.Path) -> Iterator["Host"]:
    """A running `conclave host --example reverse` with its own data directory, stopped afterwards."""
    from hosting import Host

    running = Host(conclave, tmp_path / "host-data").start()
    try:
        yield running
    finally:
        running.stop()
