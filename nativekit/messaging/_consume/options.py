"""How a consumer handles messages: the options ``Service.consumer`` takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nativekit.messaging._wire.envelope import Message


@dataclass(frozen=True)
class ConsumerOptions:
    """How a consumer handles messages (see ``Service.consumer`` for the meaning)."""

    topics: tuple[str, ...]
    group: str
    retries: int = 3
    backoff: float = 0.2
    backoff_max: float = 10.0
    non_retryable: tuple[type[BaseException], ...] = ()
    concurrency: int = 1
    max_in_flight: int = 2000
    fetch_max: int = 500
    dedup_key: Callable[[Message], str] | None = None
    idempotent: bool = True
    dead_letter_topic: str | None = None
    lease: float = 30.0
    retain: float = 7 * 86400.0
    drain_timeout: float = 10.0
    poll_timeout: float = 0.5
    commit_interval: float = 0.1
    event_types: frozenset[str] | None = None  # others (by event-type header) are skipped

    def dlq_for(self, topic: str) -> str:
        """The dead-letter topic for records of ``topic``."""
        return self.dead_letter_topic or f"{topic}.dlq"
