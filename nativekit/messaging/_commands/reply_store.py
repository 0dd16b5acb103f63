"""Answered commands: the reply stored with each idempotency key (participant side).

A key is either held by one worker (with a lease and a random token) or
answered (the reply, kept for the dedup retention). ``claim`` returns the
token, the stored reply, or None while another worker holds a live lease.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredReply:
    """A participant's answer: success with a payload, or failure with a reason."""

    ok: bool
    event_type: str
    value: bytes
    error: str | None

    def encode(self) -> str:
        """Compact JSON."""
        return json.dumps(
            {"ok": self.ok, "t": self.event_type, "v": self.value.decode(), "e": self.error},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> StoredReply:
        """Inverse of :meth:`encode`."""
        data = json.loads(raw)
        return cls(bool(data["ok"]), data["t"], data["v"].encode(), data["e"])


class ReplyStore(Protocol):
    """Remembers the reply given to each command idempotency key."""

    async def claim(self, key: str, *, lease: float) -> str | StoredReply | None:
        """A token when the caller now owns ``key``; the reply when answered; None if busy."""
        ...

    async def finish(self, key: str, token: str, reply: StoredReply, *, retain: float) -> bool:
        """Store ``reply`` for ``key`` if ``token`` still owns it (or nobody does); True
        also when ``key`` already holds this very reply (a retried call that went through)."""
        ...

    async def release(self, key: str, token: str) -> None:
        """Give ``key`` up without an answer (the command will be handled again)."""
        ...

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        """Extend ``token``'s hold of ``key`` to ``lease`` seconds from now; False when
        ``token`` no longer holds it."""
        ...


class MemoryReplyStore:
    """The reference :class:`ReplyStore`, in this process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str | StoredReply, float]] = {}

    def _live(self, key: str) -> str | StoredReply | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    async def claim(self, key: str, *, lease: float) -> str | StoredReply | None:
        """A token, the stored reply, or None while another worker holds the key."""
        current = self._live(key)
        if isinstance(current, StoredReply):
            return current
        if current is not None:
            return None
        token = uuid.uuid4().hex
        self._entries[key] = (token, time.monotonic() + lease)
        return token

    async def finish(self, key: str, token: str, reply: StoredReply, *, retain: float) -> bool:
        """Store the reply unless another worker took the key over."""
        current = self._live(key)
        if current == reply:
            return True
        if current is not None and current != token:
            return False
        self._entries[key] = (reply, time.monotonic() + retain)
        return True

    async def release(self, key: str, token: str) -> None:
        """Drop the key if ``token`` holds it."""
        if self._live(key) == token:
            del self._entries[key]

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        """Extend the hold of ``token`` on ``key``."""
        if self._live(key) != token:
            return False
        self._entries[key] = (token, time.monotonic() + lease)
        return True
