"""When a failed call may be sent again, and how long to wait first."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

#: Methods that mean the same when sent twice (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Answers that say "not now" rather than "no": worth another attempt.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Answers that count against the peer's circuit breaker.
BREAKER_STATUSES = frozenset({502, 503, 504})
IDEMPOTENCY_HEADER = "idempotency-key"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried.

    Attributes:
        retries: attempts after the first (0 turns retries off).
        backoff: the first pause's upper bound, in seconds; doubles per attempt.
        backoff_max: the longest pause (also caps a peer's ``Retry-After``).
    """

    retries: int = 2
    backoff: float = 0.1
    backoff_max: float = 2.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (full jitter; Retry-After wins)."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.backoff_max)
            except ValueError:
                pass  # an HTTP date: fall back to the backoff
        return random.uniform(0, min(self.backoff_max, self.backoff * 2**attempt))


def may_retry(method: str, headers: Mapping[str, str]) -> bool:
    """True for idempotent methods and for requests carrying an Idempotency-Key."""
    return method in IDEMPOTENT or any(k.lower() == IDEMPOTENCY_HEADER for k in headers)
