"""Retry policy of a step action or compensation: attempts, backoff, timeout, non-retryables."""

from __future__ import annotations

import random
from dataclasses import dataclass

from nativekit.errors import ConfigError


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits about ``initial * factor**(n-1)``.

    The wait is capped at ``maximum`` and, with ``jitter``, drawn uniformly from
    its upper half so retries of many sagas do not arrive in lockstep.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.factor < 1:
            raise ConfigError(
                f"Backoff(initial={self.initial}, factor={self.factor}, maximum={self.maximum}) "
                "is invalid; expected initial >= 0, maximum >= 0 and factor >= 1."
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        return random.uniform(base / 2, base) if self.jitter else base


@dataclass(frozen=True)
class Policy:
    """How one direction of a step is retried.

    Args:
        retries: attempts after the first one (``retries=3`` means at most 4 attempts).
        timeout: seconds one attempt may take; exceeding it counts as a failure.
        backoff: waits between attempts.
        no_retry: exception types that fail the step at once, without further attempts.
        max_interruptions: times an attempt may be interrupted by its process stopping
            (and re-run) before the step fails; None: ``NATIVEKIT_SAGA_MAX_INTERRUPTIONS``.
            Interrupted attempts do not count against ``retries``.
    """

    retries: int = 0
    timeout: float | None = None
    backoff: Backoff = Backoff()
    no_retry: tuple[type[BaseException], ...] = ()
    max_interruptions: int | None = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}.")
        if self.max_interruptions is not None and self.max_interruptions < 1:
            raise ConfigError(
                f"max_interruptions must be >= 1 (an interrupted attempt is re-run at least "
                f"once) or None for NATIVEKIT_SAGA_MAX_INTERRUPTIONS, got {self.max_interruptions}."
            )
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds or None, got {self.timeout}.")
        for exc in self.no_retry:
            if not (isinstance(exc, type) and issubclass(exc, BaseException)):
                raise ConfigError(f"no_retry must hold exception types, got {exc!r}.")

    @property
    def attempts(self) -> int:
        """Most attempts this policy allows."""
        return self.retries + 1

    def retryable(self, exc: BaseException) -> bool:
        """False for exceptions listed in ``no_retry``."""
        return not isinstance(exc, self.no_retry)


#: Retries of a step action by default: like Temporal's activities, a step is retried
#: with exponential backoff unless told otherwise (``no_retry`` for business refusals).
DEFAULT_RETRIES = 3

#: Default for compensations: they must not give up easily.
COMPENSATION_DEFAULT = Policy(retries=5, backoff=Backoff(initial=0.2, maximum=30.0))
