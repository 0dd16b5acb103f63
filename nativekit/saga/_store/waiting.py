"""What a saga waiting for a command reply expects (stored as JSON in ``wait`` fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Waiting"]


@dataclass(frozen=True)
class Waiting:
    """What a waiting saga expects: the reply to one attempt of one step direction.

    ``at`` is when the command was written (epoch seconds; absent in waits stored
    by older versions, whose deadline then always counts as a timeout).
    """

    step: str
    direction: str
    attempt: int
    token: str
    timeout: float
    at: float | None = None

    def encode(self) -> str:
        """Stored in the record's ``wait`` field."""
        return json.dumps(
            {
                "s": self.step,
                "d": self.direction,
                "a": self.attempt,
                "t": self.token,
                "o": self.timeout,
                "w": self.at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: str | None) -> Waiting | None:
        """Inverse of :meth:`encode` (None for no wait)."""
        if not raw:
            return None
        data = json.loads(raw)
        at = data.get("w")
        return cls(
            data["s"],
            data["d"],
            int(data["a"]),
            data["t"],
            float(data["o"]),
            None if at is None else float(at),
        )

    def matches(self, other: Waiting) -> bool:
        """Whether ``other`` is a reply to the same attempt (the timeout is not compared)."""
        return (self.step, self.direction, self.attempt, self.token) == (
            other.step,
            other.direction,
            other.attempt,
            other.token,
        )
