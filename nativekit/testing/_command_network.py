"""Test seam for command steps: participants and the broker simulated in process.

:class:`CommandNetwork` plays the outbox relay, the broker and the participants
for sagas run on memory stores (``run_saga``, ``crash_matrix``): it takes the
commands written to a :class:`~nativekit.saga._store.store.MemorySagaStore`'s outbox,
calls your participant functions, deduplicating by idempotency key the way
``@svc.command_handler`` does (a duplicate gets the stored reply, the function
does not run again), and delivers the replies to the current runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel

from nativekit._lifecycle import cancel_and_wait
from nativekit.messaging._commands import handlers as h
from nativekit.messaging._commands.declared import CommandRejected
from nativekit.saga._commands.replies import apply_reply
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.outbox import OutboxEntry

__all__ = ["CommandNetwork", "Participant"]

#: ``async def handler(cmd) -> reply``; raise :class:`CommandRejected` for a failure reply.
Participant = Callable[[Any], Awaitable[BaseModel | None]]


class CommandNetwork:
    """Relay, broker and participants of command steps, in process.

    Args:
        store: the memory saga store whose outbox is relayed.
        participants: command handlers by command class name (``ReserveStock``).
        on_reply: called after the saga was claimed for a reply, before it resumes
            (the crash matrix raises there to crash between the two).
    """

    def __init__(
        self,
        store: MemorySagaStore,
        participants: Mapping[str, Participant],
        *,
        on_reply: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.participants = dict(participants)
        self.on_reply = on_reply
        self.runtime: SagaRuntime | None = None
        self.replies: dict[str, tuple[bool, bytes, str | None]] = {}
        #: How often each participant function succeeded, by idempotency key (the effects).
        self.applied: dict[str, int] = {}
        self.events: list[OutboxEntry] = []
        self._task: asyncio.Task[None] | None = None

    async def deliver(self) -> int:
        """Relay every outbox entry, answer commands, deliver replies; returns how many."""
        entries, self.store.outbox_entries[:] = list(self.store.outbox_entries), []
        for raw in entries:
            entry = OutboxEntry.decode(raw)
            if h.IDEMPOTENCY_KEY not in entry.headers:
                self.events.append(entry)
                continue
            await self._answer(entry)
        return len(entries)

    async def _answer(self, entry: OutboxEntry) -> None:
        key = entry.headers[h.IDEMPOTENCY_KEY]
        if key not in self.replies:
            handler = self.participants.get(entry.event_type)
            if handler is None:
                raise AssertionError(f"no participant for command {entry.event_type}")
            model = _command_type(handler)
            try:
                reply = await handler(model.model_validate_json(entry.value))
            except CommandRejected as exc:  # a refusal applies nothing
                self.replies[key] = (False, b"", str(exc))
            else:
                self.applied[key] = self.applied.get(key, 0) + 1
                body = reply.model_dump_json().encode() if reply is not None else b"null"
                self.replies[key] = (True, body, None)
        ok, body, error = self.replies[key]
        headers = dict(entry.headers)
        status: h.ReplyStatus = "ok" if ok else "failed"
        headers[h.REPLY_STATUS] = status
        if error:
            headers[h.REPLY_ERROR] = error
        runtime = self.runtime
        if runtime is None:
            return

        def before(record: Any) -> None:
            if self.on_reply is not None:
                self.on_reply(record.saga_id, headers[h.SAGA_STEP], headers[h.SAGA_DIRECTION])

        await apply_reply(runtime, body, headers.get, before_resume=before)

    def start(self, runtime: SagaRuntime) -> None:
        """Deliver continuously to ``runtime`` (until :meth:`stop`)."""
        self.runtime = runtime
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop delivering."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _loop(self) -> None:
        while True:
            if not await self.deliver():
                await asyncio.sleep(0.001)


def _command_type(handler: Participant) -> type[BaseModel]:
    from nativekit.messaging._commands.declared import inspect_command_handler

    return inspect_command_handler(handler).command
