"""``SagaStore``: durable, fenced saga state; ``MemorySagaStore`` is the reference.

Every mutation is atomic. A runner owns a saga through a lease: a random token
and an expiry. ``write`` is refused with :class:`LeaseLost` unless the token
matches the one stored, so once another runner claimed the saga (after the
lease expired, or an operator took it over) the old runner cannot advance it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from nativekit.errors import ConfigError
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus, Transition, Waiting
from nativekit.saga._store.outbox import Outbox

#: The statuses :meth:`SagaStore.counts` reports: the finished ones expire after retention.
UNFINISHED = tuple(status for status in SagaStatus if not status.finished)


def definition_key(name: str, definition: str) -> str:
    """The ``name:hash`` string identifying one saga definition."""
    return f"{name}:{definition}"


class SagaStore(Protocol):
    """Where saga instances live. Times are the store's clock, durations in seconds."""

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        """Store a new instance leased to ``token``; if the id exists return it and False.

        An instance of that id already leased to ``token`` counts as created (True): a
        retried call whose first run went through (its answer lost) is still the one
        that started the instance.
        """
        ...

    async def get(self, saga_id: str) -> SagaRecord | None:
        """The instance, or None."""
        ...

    async def status(self, saga_id: str) -> SagaStatus | None:
        """Only the instance's status (cheaper than :meth:`get`), or None."""
        ...

    async def write(
        self,
        saga_id: str,
        token: str,
        change: Transition,
        *,
        current: SagaStatus,
        name: str,
        definition: str,
        lease: float,
        retention: float,
    ) -> None:
        """Apply ``change`` if ``token`` holds the lease; extend the lease or release it
        (``change.release``, or ``change.release_if_any`` names a field the record holds
        with a non-empty value: a field set to "" counts as absent). A store may leave a
        lease that has between half of ``lease`` and all of it left as it is (PostgreSQL
        does, so that the update can be HOT); the runtime renews every third of a lease.

        The store sets ``updated`` to its own clock. ``current``, ``name`` and
        ``definition`` are what the lease holder knows of the instance (they
        locate its index entries). A change into COMPLETED,
        COMPENSATED or ABORTED expires the instance ``retention`` seconds later.
        Raises :class:`LeaseLost` for a stale token.
        """
        ...

    async def claim(
        self, saga_id: str, token: str, *, lease: float, force: bool = False
    ) -> SagaRecord:
        """Lease the instance to ``token`` if its lease expired (always with ``force``).

        Raises :class:`SagaNotFound`, or :class:`LeaseLost` while another lease is live.
        """
        ...

    async def claim_expired(
        self, known: Collection[str], tokens: Callable[[], str], *, lease: float, limit: int
    ) -> list[SagaRecord]:
        """Claim up to ``limit`` active instances whose lease expired.

        Only instances whose :func:`definition_key` is in ``known`` are claimed,
        so a replica never takes a saga it has no code for.
        """
        ...

    async def renew(self, leases: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        """Extend the leases ``(saga_id, token)``; False where the token is stale."""
        ...

    async def claim_reply(
        self,
        saga_id: str,
        wait: Waiting,
        token: str,
        *,
        lease: float,
        known: Collection[str],
        reply: str = "",
    ) -> SagaRecord | None:
        """Lease the instance to ``token`` only while it waits for exactly ``wait``'s reply.

        One atomic step: the instance must be active, wait for the same step,
        direction, attempt and reply token, and have a definition in ``known``.
        The wait is either the record's ``wait`` field (a step alone), or the field
        ``wait:<step>`` (a command member of a parallel group). For the latter, the
        reply (opaque ``reply``) is stored as ``reply:<step>`` and ``wait:<step>`` is
        emptied; while another ``wait:*`` field is still non-empty, the lease is left
        as it is and None returned (stored, the saga still waits for other members).
        Raises :class:`UnknownSaga` when there is no such instance or its definition
        is not in ``known``, :class:`LeaseLost` when it no longer waits for that reply.
        """
        ...

    async def signal(self, saga_id: str, event: str, payload: str) -> tuple[bool, bool]:
        """Deliver the external ``event`` (JSON ``payload``) to an instance, atomically.

        The payload is stored as field ``event:<event>`` unless that field exists
        (an event is applied once). When the instance is active and its ``awaiting``
        field (a JSON list) names ``event``, its lease is released (expires now, token
        cleared) so recovery, or the caller with :meth:`claim`, resumes it.

        Returns ``(stored, woken)``: stored is False for a repeated event.
        Raises :class:`SagaNotFound`, or :class:`SagaStateError` when the instance is
        COMPLETED, COMPENSATED or ABORTED (nothing would ever read the event).
        """
        ...

    def outbox(self, *, consumer: str, claim_after: float) -> Outbox:
        """The outbox that :meth:`write` appends to, as read by the relay ``consumer``.

        Entries a relay read but did not delete are taken over by another after
        ``claim_after`` seconds.
        """
        ...

    async def list(
        self,
        *,
        status: SagaStatus | None = None,
        name: str | None = None,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Instances by time in their status, oldest first.

        Args:
            status: only instances in this status.
            name: only instances of this saga.
            older_than: only instances in their status for at least this many seconds.
            limit: page size.
            cursor: the ``cursor`` of the previous page.
        """
        ...

    async def live_definitions(self, name: str) -> dict[str, int]:
        """Count of RUNNING/COMPENSATING instances of saga ``name`` per definition hash."""
        ...

    async def backlog(self) -> int:
        """Active instances whose lease expired and nobody has claimed yet."""
        ...

    async def counts(self, names: Collection[str]) -> dict[tuple[str, SagaStatus], int]:
        """Instances per (saga name, status) for the sagas ``names`` and every status an
        instance stays in until something moves it (RUNNING, COMPENSATING, FAILED; 0 when
        none); read from indexes, not by loading the instances."""
        ...

    async def ping(self) -> None:
        """Raise :class:`nativekit.BackendUnavailable` if the store cannot be reached."""
        ...

    async def aclose(self) -> None:
        """Release connections owned by the store."""
        ...


def refused_event(saga_id: str, event: str, status: SagaStatus | str) -> str:
    """The error of a signal to a finished instance."""
    return (
        f"saga {saga_id!r} is {status} and takes no more events; event {event!r} was "
        "not delivered (signal only sagas that are RUNNING, COMPENSATING or FAILED)"
    )


def page_key(record: SagaRecord) -> tuple[float, str]:
    """Sort key of listings: when the saga entered its status, then id."""
    return (record.since, record.saga_id)


def encode_cursor(key: tuple[float, str]) -> str:
    """An opaque cursor after ``key``."""
    return f"{key[0]!r}|{key[1]}"


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """Inverse of :func:`encode_cursor`.

    Raises:
        ConfigError: ``cursor`` is not one a listing returned.
    """
    if not cursor:
        return None
    score, _, saga_id = cursor.partition("|")
    try:
        since = float(score)
    except ValueError:
        since = math.nan
    if not math.isfinite(since):
        raise ConfigError(
            f"cursor {cursor!r} is not one a listing returned; pass the 'cursor' of the "
            "previous page, or none for the first page."
        )
    return since, saga_id
