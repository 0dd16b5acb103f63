"""Waking parked sagas: external events (``svc.sagas.signal``) and soon-due timers.

The store is the truth: a parked saga's lease runs out at its wake-up time and
any replica's recovery resumes it. This module only makes that faster where
it can: a signal that woke a saga claims and resumes it on the signalling
replica at once, and a replica that parked a saga on a short timer claims it
back when the timer is due instead of waiting for the next recovery pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter

from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.saga._define.step import _NAME
from nativekit.saga._errors import LeaseLost, SagaNotFound
from nativekit.saga._run.recovery import RecoveryLoops
from nativekit.saga._run.runner import Run
from nativekit.saga._store.store import definition_key

#: Timers due within this many seconds are woken by the replica that parked them.
LOCAL_WAKE_HORIZON = 300.0
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


class Wakeups(RecoveryLoops):
    """``signal`` and the local wake-up of parked runs (``SagaRuntime`` mixes it in)."""

    _wakers: set[asyncio.Task[None]]
    clock: Callable[[], float]

    async def signal(self, saga_id: str, event: str, payload: Any = None) -> bool:
        """Deliver the external ``event`` with ``payload`` to saga ``saga_id``.

        A step waiting in ``ctx.wait_for(event)`` resumes with the payload (a pydantic
        model or anything JSON-serializable); an event delivered before the step waits
        is kept for it. Each event name is applied once per saga: returns False when
        this event was delivered before (the new payload is ignored).

        Raises:
            SagaNotFound: no saga has this id.
            SagaStateError: the saga is COMPLETED, COMPENSATED or ABORTED.
        """
        if not _NAME.match(event):
            raise ConfigError(
                f"Event name {event!r} is not valid; use letters, digits, '.', '_' or '-'."
            )
        if isinstance(payload, BaseModel):
            raw = payload.model_dump_json()
        else:
            raw = _ANY.dump_json(payload).decode()
        stored, woken = await self.store.signal(saga_id, event, raw)
        self.log.info(
            "saga.signalled", saga_id=saga_id, event_name=event, stored=stored, woken=woken
        )
        if woken:
            await self.resume(saga_id)
        return stored

    async def resume(self, saga_id: str) -> bool:
        """Claim a parked saga whose lease ran out and run it here; False if another
        replica has it (or this one lacks its definition: recovery elsewhere takes it)."""
        record = await self.store.get(saga_id)
        if record is None or not record.status.active:
            return False
        if record.token and record.lease_until is not None and record.lease_until > self.clock():
            return False  # still leased (parked until later, or running): not ours to take
        saga = self.definitions.get(definition_key(record.name, record.definition))
        if saga is None or saga_id in self.runs:
            return False
        try:
            claimed = await self.store.claim(saga_id, uuid.uuid4().hex, lease=self.lease)
        except (LeaseLost, SagaNotFound):
            return False
        self.spawn(saga, claimed, claimed.token or "")
        return True

    def after_park(self, run: Run) -> None:
        """A run parked: wake it here when its timer is due soon, or at once when an event
        it waits for may have come (the store then released its lease)."""
        at = run.wake_at
        if at is None:
            return
        delay = max(0.0, at - run.env.clock())
        if run.woken_by_event and delay > 0:
            self._waker(run.record.saga_id, 0.0)
        if delay <= LOCAL_WAKE_HORIZON:
            self._waker(run.record.saga_id, delay)

    def _waker(self, saga_id: str, delay: float) -> None:
        task = asyncio.create_task(self._wake(saga_id, delay), name=f"saga-wake:{saga_id}")
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    async def _wake(self, saga_id: str, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if self._stopping.is_set():
            return
        try:
            await self.resume(saga_id)
        except BackendUnavailable as exc:  # recovery resumes it later
            self.log.warning("saga.wake.failed", saga_id=saga_id, error=repr(exc))

    async def stop_wakers(self) -> None:
        """Cancel pending local wake-ups (recovery of any replica does their work)."""
        for task in list(self._wakers):
            task.cancel()
        await asyncio.gather(*self._wakers, return_exceptions=True)
