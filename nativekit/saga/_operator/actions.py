"""Operator actions on saga instances: retry forward, compensate, abort.

Each action takes the instance over with a forced claim (a new lease token),
so a runner still working on it is fenced out: its next write is refused. The
changes themselves are those of :mod:`nativekit.saga._operator.admin`; here the saga then
runs in this process at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from nativekit.saga._define.definition import Saga
from nativekit.saga._operator import admin as admin
from nativekit.saga._store.model import SagaRecord, SagaStatus, Transition
from nativekit.saga._store.store import SagaStore


class SagaRuntime(Protocol):
    """What an operator action needs of the runtime it resumes a saga on."""

    lease: float
    retention: float
    runs: dict[str, tuple[Any, asyncio.Task[Any]]]

    @property
    def store(self) -> SagaStore:
        """Where the instances live."""

    @property
    def log(self) -> Any:
        """The runtime's logger."""

    def definition_of(self, record: SagaRecord) -> Saga[Any]:
        """The registered definition the instance was started with."""

    async def get(self, saga_id: str) -> SagaRecord:
        """The instance; raises SagaNotFound."""

    def spawn(self, saga: Saga[Any], record: SagaRecord, token: str) -> Any:
        """Run ``record`` in the background from where it stands."""


async def retry(runtime: SagaRuntime, saga_id: str) -> SagaRecord:
    """Resume a FAILED or ABORTED saga forward, giving its failed step a fresh policy.

    Refused once compensation has undone a step (use :meth:`compensate`).
    """
    record, token = await _take_over(runtime, saga_id, admin.RETRYABLE)
    saga = runtime.definition_of(record)
    return await _resume(runtime, saga, record, token, admin.retry_change(record), "retry")


async def compensate(
    runtime: SagaRuntime, saga_id: str, *, also: tuple[SagaStatus, ...] = ()
) -> SagaRecord:
    """Roll a saga back: from RUNNING (cancel), FAILED (resume compensation) or ABORTED
    (``also=(COMPLETED,)``: a completed child saga whose parent compensates)."""
    record, token = await _take_over(runtime, saga_id, admin.COMPENSABLE + also)
    saga = runtime.definition_of(record)
    change = admin.compensate_change(record)
    return await _resume(runtime, saga, record, token, change, "compensate")


async def abort(
    runtime: SagaRuntime, saga_id: str, reason: str = "aborted by an operator"
) -> SagaRecord:
    """Stop a saga where it is: nothing runs after this (no compensation)."""
    record, token = await _take_over(runtime, saga_id, admin.ABORTABLE)
    await _write(runtime, record, token, admin.abort_change(reason))
    runtime.log.warning("saga.aborted", saga=record.name, saga_id=saga_id, reason=reason)
    return await runtime.get(saga_id)


def _admin(runtime: SagaRuntime) -> admin.SagaAdmin:
    return admin.SagaAdmin(runtime.store, lease=runtime.lease, retention=runtime.retention)


async def _take_over(
    runtime: SagaRuntime, saga_id: str, allowed: tuple[SagaStatus, ...]
) -> tuple[SagaRecord, str]:
    def stop_local_run() -> None:
        local = runtime.runs.pop(saga_id, None)
        if local is not None:
            local[1].cancel()

    return await _admin(runtime).take_over(saga_id, allowed, before_claim=stop_local_run)


async def _write(runtime: SagaRuntime, record: SagaRecord, token: str, change: Transition) -> None:
    await _admin(runtime).write(record, token, change)


async def _resume(
    runtime: SagaRuntime,
    saga: Saga[Any],
    record: SagaRecord,
    token: str,
    change: Transition,
    action: str,
) -> SagaRecord:
    await _write(runtime, record, token, change)
    if "error" in change.fields:
        record.error = change.fields["error"] or None
    runtime.log.warning(
        "saga.operator.resumed", action=action, saga=record.name, saga_id=record.saga_id
    )
    runtime.spawn(saga, record, token)
    return record
