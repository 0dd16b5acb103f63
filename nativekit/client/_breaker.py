"""A circuit breaker per peer host: stop calling a host that keeps failing."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    """Closed, open after ``failures`` consecutive failures, half-open after ``reset`` seconds.

    Half-open lets one trial call through: its success closes the breaker, its
    failure opens it for another ``reset`` seconds.
    """

    def __init__(
        self, *, failures: int, reset: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.reset = reset
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset else "open"

    def allow(self) -> bool:
        """May a call go out now? (In half-open, only the first caller's may.)"""
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at < self.reset or self._trial:
            return False
        self._trial = True
        return True

    def retry_in(self) -> float:
        """Seconds until a trial call is let through (0 when closed)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset - (self.clock() - self.opened_at))

    def succeeded(self) -> None:
        """A call got a healthy answer."""
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failed(self) -> bool:
        """A call failed; returns True when this opened (or re-opened) the breaker."""
        self.failures += 1
        if self._trial or (self.opened_at is None and self.failures >= self.threshold):
            self.opened_at = self.clock()
            self._trial = False
            return True
        return False
