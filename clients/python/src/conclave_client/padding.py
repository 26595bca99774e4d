"""Minimum-size padding policies: they hide how long bodies are from the host.

The host sees every mail's length. A policy picks a minimum body size; the
mail is padded (inside the encryption) up to it. Policies keep their history
in the client's state file, in the Rust client's JSON form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List


class PaddingPolicy:
    """How to choose the minimum body size of the next mail."""

    def min_size_for(self, body_len: int) -> int:
        """The minimum size for a body of ``body_len`` bytes, recording it in the history."""
        raise NotImplementedError

    def to_json(self) -> Any:
        """The state file's form."""
        raise NotImplementedError

    @staticmethod
    def from_json(value: Any) -> "PaddingPolicy":
        """Reads :meth:`to_json` (the Rust client's serde form)."""
        if value == "none":
            return NoPadding()
        if isinstance(value, dict) and len(value) == 1:
            ((name, inner),) = value.items()
            if name == "fixed":
                return Fixed(int(inner))
            if name == "largest_seen":
                return LargestSeen(int(inner["largest"]))
            if name == "moving_average":
                return MovingAverage(int(inner["window"]), [int(n) for n in inner["recent"]])
        raise ValueError(f"unknown padding policy {value!r}")


@dataclass
class NoPadding(PaddingPolicy):
    """No padding: the host learns each body's exact length."""

    def min_size_for(self, body_len: int) -> int:
        return 0

    def to_json(self) -> Any:
        return "none"


@dataclass
class Fixed(PaddingPolicy):
    """Every body is padded to at least ``min_size`` bytes."""

    min_size: int

    def min_size_for(self, body_len: int) -> int:
        return self.min_size

    def to_json(self) -> Any:
        return {"fixed": self.min_size}


@dataclass
class LargestSeen(PaddingPolicy):
    """Every body is padded to the largest body sent so far (the default)."""

    largest: int = 0

    def min_size_for(self, body_len: int) -> int:
        self.largest = max(self.largest, body_len)
        return self.largest

    def to_json(self) -> Any:
        return {"largest_seen": {"largest": self.largest}}


@dataclass
class MovingAverage(PaddingPolicy):
    """Every body is padded to the average length of the last ``window`` bodies."""

    window: int
    recent: List[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.window = max(1, self.window)

    def min_size_for(self, body_len: int) -> int:
        if len(self.recent) == self.window:
            self.recent.pop(0)
        self.recent.append(body_len)
        return sum(self.recent) // len(self.recent)

    def to_json(self) -> Any:
        return {"moving_average": {"window": self.window, "recent": list(self.recent)}}
