"""Child sagas on the runtime's side: start once, wait while local, compensate, notify.

The parent's run asks for these through ``RunEnv.children``
(:class:`nativekit.saga._run.state.Children`); see
:mod:`nativekit.saga._define.child_steps` for the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nativekit.errors import BackendUnavailable
from nativekit.saga._define.definition import Saga
from nativekit.saga._errors import LeaseLost, SagaNotFound, SagaStateError
from nativekit.saga._operator import actions as operations
from nativekit.saga._run.wakeups import Wakeups
from nativekit.saga._store.model import SagaRecord, SagaStatus


class ChildRuns(Wakeups):
    """What a runtime does for child steps (``SagaRuntime`` mixes it in)."""

    retention: float
    #: Children whose local run a parent is waiting for in :meth:`settle`.
    _settling: set[str]

    async def get(self, saga_id: str) -> SagaRecord:
        """The instance (``SagaRuntime.get``)."""
        raise NotImplementedError

    async def launch(
        self,
        definition: Saga[Any],
        value: Any,
        *,
        saga_id: str | None,
        deadline: float | None,
        parent: str | None = None,
        parent_event: str | None = None,
    ) -> Any:
        """Store and run a new instance (``SagaRuntime.launch``)."""
        raise NotImplementedError

    async def start_child(
        self, saga: Any, data: Any, *, saga_id: str, parent: str, event: str, deadline: float | None
    ) -> None:
        """Start the child ``saga_id`` unless it exists (with the parent's deadline)."""
        if saga_id in self.runs:
            return
        definition = self.resolve(saga)
        value = definition.validate_input(data)
        await self.launch(
            definition,
            value,
            saga_id=saga_id,
            deadline=deadline,
            parent=parent,
            parent_event=event,
        )

    async def settle(self, saga_id: str) -> SagaRecord | None:
        """Wait while the child runs in this process; its record once it ended, else None
        (it parked, or runs on another replica: the parent parks too)."""
        local = self.runs.get(saga_id)
        if local is not None:
            run, task = local
            self._settling.add(saga_id)
            try:
                await asyncio.wait({task})
            finally:
                self._settling.discard(saga_id)
            if run.suspended:
                return None
            if not run.record.status.active and run.creating is None:
                return run.record
        return await self.store.get(saga_id)

    async def compensate_child(self, saga_id: str) -> SagaRecord:
        """Compensate a COMPLETED (or still running) child; wait until it ends."""
        record = await self.store.get(saga_id)
        if record is None:
            raise SagaNotFound(f"child saga {saga_id!r} is gone (past its retention?)")
        if record.status in (SagaStatus.COMPLETED, SagaStatus.RUNNING):
            # another compensation of the parent may have taken it over: then wait for it
            with contextlib.suppress(SagaStateError, LeaseLost):
                await operations.compensate(self, saga_id, also=(SagaStatus.COMPLETED,))
        return await self.wait(saga_id)

    async def notify_parent(self, record: SagaRecord) -> None:
        """A child ended: wake its parent (best effort; the parent polls its child too)."""
        if record.parent is None or record.parent_event is None:
            return
        if record.saga_id in self._settling:
            return  # the parent waits for this very run here: it reads its end directly
        try:
            await self.signal(record.parent, record.parent_event, {"status": record.status.value})
        except (SagaStateError, SagaNotFound, BackendUnavailable) as exc:
            self.log.warning(
                "saga.child.notify_failed",
                saga_id=record.saga_id,
                parent=record.parent,
                error=repr(exc),
            )

    async def wait(self, saga_id: str, timeout: float | None = None) -> SagaRecord:  # noqa: ASYNC109
        """Wait until the instance ended (``SagaRuntime.wait``)."""
        raise NotImplementedError
