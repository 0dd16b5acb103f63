"""Operator actions on saga instances: retry forward, compensate, abort.

Each action takes the instance over with a forced claim (a new lease token),
so a runner still working on it is fenced out: its next write is refused.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from nativekit.saga.errors import SagaStateError
from nativekit.saga.model import SagaRecord, SagaStatus, StepStatus, Transition

if TYPE_CHECKING:
    from nativekit.saga.runtime import SagaRuntime


async def retry(runtime: SagaRuntime, saga_id: str) -> SagaRecord:
    """Resume a FAILED or ABORTED saga forward, giving its failed step a fresh policy.

    Refused once compensation has undone a step (use :meth:`compensate`).
    """
    record, token = await _take_over(runtime, saga_id, (SagaStatus.FAILED, SagaStatus.ABORTED))
    saga = runtime.definition_of(record)
    if any(
        s.status in (StepStatus.COMPENSATED, StepStatus.COMPENSATING) for s in record.steps.values()
    ) or any(s.compensation_attempts for s in record.steps.values()):
        raise SagaStateError(
            f"saga {saga_id!r} already ran compensations; it cannot go forward again. "
            "Use compensate to finish rolling it back."
        )
    change = Transition(status=SagaStatus.RUNNING, fields={"error": ""})
    for step in saga.steps:
        srec = record.step(step.name)
        if srec.status is not StepStatus.COMPLETED:
            srec.attempts = 0
            srec.status = StepStatus.PENDING
            change.fields[f"step:{step.name}"] = srec.to_json()
    return await _resume(runtime, saga, record, token, change, "retry")


async def compensate(runtime: SagaRuntime, saga_id: str) -> SagaRecord:
    """Roll a saga back: from RUNNING (cancel), FAILED (resume compensation) or ABORTED."""
    record, token = await _take_over(
        runtime,
        saga_id,
        (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED, SagaStatus.ABORTED),
    )
    saga = runtime.definition_of(record)
    change = Transition(status=SagaStatus.COMPENSATING)
    if record.status is not SagaStatus.COMPENSATING:
        change.fields["error"] = record.error or "compensation requested by an operator"
    for name, srec in record.steps.items():
        if srec.status is StepStatus.RUNNING:
            srec.uncertain = True  # another runner may be inside it right now
            change.fields[f"step:{name}"] = srec.to_json()
        if srec.status is StepStatus.COMPENSATION_FAILED:
            srec.compensation_attempts = 0
            srec.status = StepStatus.COMPENSATING
            change.fields[f"step:{name}"] = srec.to_json()
    return await _resume(runtime, saga, record, token, change, "compensate")


async def abort(
    runtime: SagaRuntime, saga_id: str, reason: str = "aborted by an operator"
) -> SagaRecord:
    """Stop a saga where it is: nothing runs after this (no compensation)."""
    record, token = await _take_over(
        runtime,
        saga_id,
        (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED),
    )
    await _write(
        runtime, record, token, Transition(status=SagaStatus.ABORTED, fields={"error": reason})
    )
    runtime.log.warning("saga.aborted", saga=record.name, saga_id=saga_id, reason=reason)
    return await runtime.get(saga_id)


async def _take_over(
    runtime: SagaRuntime, saga_id: str, allowed: tuple[SagaStatus, ...]
) -> tuple[SagaRecord, str]:
    record = await runtime.get(saga_id)
    if record.status not in allowed:
        raise SagaStateError(
            f"saga {saga_id!r} is {record.status.value}; this action needs one of "
            f"{', '.join(s.value for s in allowed)}"
        )
    local = runtime.runs.pop(saga_id, None)
    if local is not None:
        local[1].cancel()
    token = uuid.uuid4().hex
    record = await runtime.store.claim(saga_id, token, lease=runtime.lease, force=True)
    if record.status not in allowed:  # changed between the read and the claim
        raise SagaStateError(f"saga {saga_id!r} became {record.status.value}; try again")
    return record, token


async def _write(runtime: SagaRuntime, record: SagaRecord, token: str, change: Transition) -> None:
    await runtime.store.write(
        record.saga_id,
        token,
        change,
        current=record.status,
        name=record.name,
        definition=record.definition,
        lease=runtime.lease,
        retention=runtime._env_args["retention"],
    )
    if change.status is not None:
        record.status = change.status


async def _resume(
    runtime: SagaRuntime,
    saga: Any,
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
    runtime._spawn(saga, record, token)
    return record
