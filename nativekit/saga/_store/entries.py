"""Outbox entries and where they wait: the entry format, the relay's view of the
outbox (:class:`Outbox`) and the in-process one (:class:`MemoryOutbox`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

__all__ = ["Batch", "MemoryOutbox", "Outbox", "OutboxEntry"]


@dataclass
class OutboxEntry:
    """A message waiting in the outbox: destination, payload, headers, id and write time."""

    id: str
    topic: str
    key: str | None
    value: str
    event_type: str
    headers: dict[str, str] = field(default_factory=dict)
    created: float = 0.0

    @classmethod
    def new(cls, topic: str, event: BaseModel, *, key: str | None) -> OutboxEntry:
        """An entry for ``event``, carrying the current trace context."""
        from nativekit.messaging._wire.envelope import inject_trace

        carrier: dict[str, str | bytes] = {}
        inject_trace(carrier)
        return cls(
            id=uuid.uuid4().hex,
            topic=topic,
            key=key,
            value=event.model_dump_json(),
            event_type=type(event).__name__,
            headers={k: v.decode() if isinstance(v, bytes) else v for k, v in carrier.items()},
            created=time.time(),
        )

    def encode(self) -> str:
        """Compact JSON (stored in the outbox)."""
        return json.dumps(
            {
                "i": self.id,
                "t": self.topic,
                "k": self.key,
                "v": self.value,
                "e": self.event_type,
                "h": self.headers,
                "c": self.created,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> OutboxEntry:
        """Inverse of :meth:`encode`."""
        d = json.loads(raw)
        return cls(d["i"], d["t"], d["k"], d["v"], d["e"], d["h"], d["c"])


@dataclass
class Batch:
    """Entries one relay read, with the handles to acknowledge them."""

    entries: list[OutboxEntry]
    handles: list[Any]


class Outbox(Protocol):
    """The relay's view of the outbox: read unpublished entries, delete published ones."""

    async def start(self) -> None:
        """Prepare (create consumer groups)."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when entries written by any process become readable (PostgreSQL:
        ``LISTEN``); a no-op where the store cannot tell (the relay polls)."""

    async def unlisten(self) -> None:
        """Stop calling ``wake``."""

    async def read(self, limit: int, saga_ids: Collection[str] | None = None) -> Batch:
        """Up to ``limit`` entries no live relay is publishing (entries of dead relays too);
        with ``saga_ids``, only from where those sagas' entries are (a hint, may read more)."""

    async def ack(self, handles: Sequence[Any]) -> None:
        """Delete published entries."""

    async def backlog(self) -> tuple[int, float]:
        """Entries not yet deleted, and the age in seconds of the oldest one."""


class MemoryOutbox:
    """The outbox of a :class:`~nativekit.saga._store.store.MemorySagaStore` (one process)."""

    def __init__(self, entries: list[str]) -> None:
        self._entries = entries
        self._taken: set[int] = set()

    async def start(self) -> None:
        """Nothing to prepare."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Writers of this process wake the relay themselves."""

    async def unlisten(self) -> None:
        """Nothing to stop."""

    async def read(self, limit: int, saga_ids: Collection[str] | None = None) -> Batch:
        """Entries not handed out yet."""
        batch = Batch([], [])
        for raw in self._entries:
            if len(batch.entries) >= limit:
                break
            if id(raw) in self._taken:
                continue
            self._taken.add(id(raw))
            batch.entries.append(OutboxEntry.decode(raw))
            batch.handles.append(raw)
        return batch

    async def ack(self, handles: Sequence[Any]) -> None:
        """Remove published entries."""
        done = {id(h) for h in handles}
        self._entries[:] = [e for e in self._entries if id(e) not in done]
        self._taken -= done

    async def backlog(self) -> tuple[int, float]:
        """Entries in the list and the oldest one's age."""
        if not self._entries:
            return 0, 0.0
        oldest = OutboxEntry.decode(self._entries[0]).created
        return len(self._entries), max(0.0, time.time() - oldest)
