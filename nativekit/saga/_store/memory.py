"""``MemorySagaStore``: the in-process reference implementation of :class:`SagaStore`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence

from nativekit.saga._errors import LeaseLost, SagaNotFound, SagaStateError, UnknownSaga
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus, Transition, Waiting
from nativekit.saga._store.outbox import MemoryOutbox, Outbox
from nativekit.saga._store.store import (
    UNFINISHED,
    decode_cursor,
    definition_key,
    encode_cursor,
    page_key,
    refused_event,
)


class MemorySagaStore:
    """In-process store: the reference implementation, for development and tests.

    Args:
        clock: time source in epoch seconds; tests pass a controllable one to
            expire leases without waiting.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._records: dict[str, dict[str, str]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._expires: dict[str, float] = {}
        #: Outbox entries written with transitions, oldest first (``nativekit.saga._store.outbox``).
        self.outbox_entries: list[str] = []

    def _load(self, saga_id: str) -> dict[str, str] | None:
        expires = self._expires.get(saga_id)
        if expires is not None and expires <= self.clock():
            self._records.pop(saga_id, None)
            self._leases.pop(saga_id, None)
            self._expires.pop(saga_id, None)
        return self._records.get(saga_id)

    def _record(self, saga_id: str) -> SagaRecord:
        fields = self._load(saga_id)
        if fields is None:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        full = dict(fields)
        lease = self._leases.get(saga_id)
        if lease is not None:
            full["token"], full["lease"] = lease[0], repr(lease[1] * 1000)
        return SagaRecord.from_fields(full)

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        """Store a new instance leased to ``token`` (see :class:`SagaStore`)."""
        if self._load(record.saga_id) is not None:
            existing = self._record(record.saga_id)
            return existing, existing.token == token
        fields = record.to_fields()
        fields["since"] = repr(self.clock())
        self._records[record.saga_id] = fields
        self._leases[record.saga_id] = (token, self.clock() + lease)
        return self._record(record.saga_id), True

    async def get(self, saga_id: str) -> SagaRecord | None:
        """The instance, or None."""
        if self._load(saga_id) is None:
            return None
        return self._record(saga_id)

    async def status(self, saga_id: str) -> SagaStatus | None:
        """Only the instance's status, or None."""
        fields = self._load(saga_id)
        return SagaStatus(fields["status"]) if fields is not None else None

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
        """Apply ``change`` if ``token`` holds the lease; extend or release the lease."""
        fields = self._load(saga_id)
        held = self._leases.get(saga_id)
        if fields is None or held is None or held[0] != token:
            raise LeaseLost(f"saga {saga_id!r}: lease token {token[:8]}… is no longer current")
        if fields["status"] != current.value:
            raise SagaStateError(f"saga {saga_id!r} is no longer {current.value}")
        fields.update(change.fields)
        fields["updated"] = repr(self.clock())
        self.outbox_entries.extend(change.outbox)
        lease = change.lease if change.lease is not None else lease
        if change.status is not None and change.status.value != fields["status"]:
            fields["status"] = change.status.value
            fields["since"] = repr(self.clock())
        status = SagaStatus(fields["status"])
        if not status.active:
            del self._leases[saga_id]
        elif change.release or any(fields.get(f) for f in change.release_if_any):
            self._leases[saga_id] = ("", self.clock())
        else:
            self._leases[saga_id] = (token, self.clock() + lease)
        if status.finished:
            self._expires[saga_id] = self.clock() + retention
        else:  # an ABORTED saga retried: it must not expire mid-run
            self._expires.pop(saga_id, None)

    async def claim(
        self, saga_id: str, token: str, *, lease: float, force: bool = False
    ) -> SagaRecord:
        """Lease the instance to ``token`` if its lease expired (always with ``force``)."""
        if self._load(saga_id) is None:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        held = self._leases.get(saga_id)
        status = SagaStatus(self._records[saga_id]["status"])
        if not force and (not status.active or (held is not None and held[1] > self.clock())):
            raise LeaseLost(f"saga {saga_id!r} is leased to another runner or not claimable")
        self._leases[saga_id] = (token, self.clock() + lease)
        return self._record(saga_id)

    async def claim_expired(
        self, known: Collection[str], tokens: Callable[[], str], *, lease: float, limit: int
    ) -> list[SagaRecord]:
        """Claim up to ``limit`` active instances of known definitions whose lease expired."""
        now = self.clock()
        claimed: list[SagaRecord] = []
        for saga_id in sorted(self._leases, key=lambda i: self._leases[i][1]):
            if len(claimed) >= limit:
                break
            fields = self._load(saga_id)
            if fields is None or self._leases[saga_id][1] > now:
                continue
            if definition_key(fields["name"], fields["def"]) not in known:
                continue
            if not SagaStatus(fields["status"]).active:
                continue
            self._leases[saga_id] = (tokens(), now + lease)
            claimed.append(self._record(saga_id))
        return claimed

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
        """Lease the instance to ``token`` only while it waits for exactly ``wait``'s reply
        (a group member's reply is stored; None while other members still wait)."""
        fields = self._load(saga_id)
        if fields is None:
            raise UnknownSaga(saga_id)
        member = f"wait:{wait.step}"
        stored = Waiting.decode(fields.get("wait"))
        alone = stored is not None and stored.matches(wait)
        if not alone:
            stored = Waiting.decode(fields.get(member))
        if not SagaStatus(fields["status"]).active or stored is None or not stored.matches(wait):
            raise LeaseLost(f"saga {saga_id!r} no longer waits for that reply")
        if definition_key(fields["name"], fields["def"]) not in known:
            raise UnknownSaga(saga_id)
        if not alone:
            fields[member] = ""
            fields[f"reply:{wait.step}"] = reply
            if any(k.startswith("wait:") and v for k, v in fields.items()):
                return None
        self._leases[saga_id] = (token, self.clock() + lease)
        return self._record(saga_id)

    async def signal(self, saga_id: str, event: str, payload: str) -> tuple[bool, bool]:
        """Store ``event`` once; release the lease of an active instance that awaits it."""
        fields = self._load(saga_id)
        if fields is None:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        status = SagaStatus(fields["status"])
        if status.finished:
            raise SagaStateError(refused_event(saga_id, event, status))
        key = f"event:{event}"
        if key in fields:
            return False, False
        fields[key] = payload
        woken = status.active and event in json.loads(fields.get("awaiting") or "[]")
        if woken:
            self._leases[saga_id] = ("", self.clock())
        return True, woken

    def outbox(self, *, consumer: str, claim_after: float) -> Outbox:
        """The entries :meth:`write` appended (one relay per process reads them)."""
        return MemoryOutbox(self.outbox_entries)

    async def renew(self, leases: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        """Extend the leases ``(saga_id, token)``; False where the token is stale."""
        renewed = []
        for saga_id, token in leases:
            held = self._leases.get(saga_id)
            ok = held is not None and held[0] == token and self._load(saga_id) is not None
            if ok:
                self._leases[saga_id] = (token, self.clock() + lease)
            renewed.append(ok)
        return renewed

    async def list(
        self,
        *,
        status: SagaStatus | None = None,
        name: str | None = None,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Instances oldest first, filtered by status, name and minimum age (seconds)."""
        after = decode_cursor(cursor)
        newest = self.clock() - older_than if older_than is not None else None
        matches = []
        for saga_id in list(self._records):
            if self._load(saga_id) is None:
                continue
            record = self._record(saga_id)
            if status is not None and record.status is not status:
                continue
            if name is not None and record.name != name:
                continue
            if newest is not None and record.since > newest:
                continue
            if after is not None and page_key(record) <= after:
                continue
            matches.append(record)
        matches.sort(key=page_key)
        items = matches[:limit]
        more = len(matches) > limit
        return Page(items, encode_cursor(page_key(items[-1])) if more else None)

    async def live_definitions(self, name: str) -> dict[str, int]:
        """Count of RUNNING/COMPENSATING instances of saga ``name`` per definition hash."""
        counts: dict[str, int] = {}
        for saga_id in list(self._records):
            fields = self._load(saga_id)
            if fields and fields["name"] == name and SagaStatus(fields["status"]).active:
                counts[fields["def"]] = counts.get(fields["def"], 0) + 1
        return counts

    async def backlog(self) -> int:
        """Active instances whose lease expired and nobody has claimed yet."""
        now = self.clock()
        return sum(
            1
            for saga_id, (_, until) in list(self._leases.items())
            if until <= now
            and (fields := self._load(saga_id)) is not None
            and SagaStatus(fields["status"]).active
        )

    async def counts(self, names: Collection[str]) -> dict[tuple[str, SagaStatus], int]:
        """Instances per (saga name, status) for ``names``."""
        found = {(name, status): 0 for name in names for status in UNFINISHED}
        for saga_id in list(self._records):
            if (fields := self._load(saga_id)) is not None:
                key = (fields["name"], SagaStatus(fields["status"]))
                if key in found:
                    found[key] += 1
        return found

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""
