"""Where a consumer's background join of its group stands, for ``/readyz`` and ``/startupz``.

A service never waits for the broker to start serving: each consumer joins its
group in the background, retrying while the broker is unreachable. Until the
group assigned it its partitions the consumer reports "joining"; after the
join deadline (``NATIVEKIT_CONSUMER_JOIN_TIMEOUT_SECONDS``) the report says why it is
overdue instead.
"""

from __future__ import annotations

import time

from nativekit._health import CheckResult


class JoinState:
    """The join progress of one consumer.

    Args:
        group: the consumer group.
        deadline: seconds after which a join still under way is reported as overdue.
    """

    def __init__(self, group: str, deadline: float) -> None:
        self.group = group
        self.deadline = deadline
        self.since = time.monotonic()
        self.joined = False
        #: When (epoch seconds) the group first assigned this member its partitions.
        self.joined_at: float | None = None
        self.error: str | None = None

    def begin(self) -> None:
        """A join starts (service startup)."""
        self.since = time.monotonic()
        self.joined = False
        self.joined_at = None
        self.error = None

    def failed(self, exc: BaseException) -> None:
        """An attempt failed; the next one follows."""
        self.error = f"{type(exc).__name__}: {exc}"

    def done(self) -> None:
        """The group assigned this member its partitions (possibly none)."""
        if not self.joined:
            self.joined_at = time.time()
        self.joined = True
        self.error = None

    @property
    def overdue(self) -> bool:
        """Still joining after the deadline."""
        return not self.joined and time.monotonic() - self.since > self.deadline

    def report(self) -> CheckResult | None:
        """None once joined; else a failing result saying how long and why."""
        if self.joined:
            return None
        waited = time.monotonic() - self.since
        last = f"; last error: {self.error}" if self.error else ""
        if waited > self.deadline:
            return CheckResult(
                "fail",
                f"has not joined consumer group {self.group!r} within {self.deadline:g}s "
                f"(NATIVEKIT_CONSUMER_JOIN_TIMEOUT_SECONDS){last}. Check that the broker is "
                "reachable and the group is not held by members that died (they leave it "
                "after the session timeout).",
                observed_value=round(waited, 1),
                observed_unit="s",
            )
        return CheckResult(
            "fail",
            f"joining consumer group {self.group!r} for {waited:.1f}s{last}",
            observed_value=round(waited, 1),
            observed_unit="s",
        )
