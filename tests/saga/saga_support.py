"""Helpers shared by the saga tests."""

from __future__ import annotations

from nativekit.saga import Backoff

FAST = Backoff(initial=0.01, maximum=0.02)


class Participant:
    """A fake downstream service: applies each effect once per idempotency key."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.applied: dict[str, int] = {}

    def apply(self, key: str) -> None:
        """Record a call; apply the effect unless this key was applied before."""
        self.calls.append(key)
        self.applied.setdefault(key, 0)
        if self.applied[key] == 0:
            self.applied[key] = 1

    def keys(self, saga_id: str) -> list[str]:
        """Keys applied for one saga, in call order."""
        seen: list[str] = []
        for key in self.calls:
            if key.startswith(f"{saga_id}:") and key not in seen:
                seen.append(key)
        return seen
