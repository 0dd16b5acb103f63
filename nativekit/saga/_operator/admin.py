"""Operator actions as store transitions: retry, compensate, abort without the saga's code.

A process that does not register a saga (the ``nativekit`` command, a replica of
another service) can still operate its instances, because every action is a
change of the stored record:

* **abort** writes ABORTED; nothing runs afterwards.
* **retry** and **compensate** write RUNNING or COMPENSATING (with the step
  records reset as the action needs) and *release* the lease. The recovery
  loop of a replica that registers the saga claims the released instance on
  its next pass (``NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS``) and runs the steps.

Each action first takes the instance over with a forced claim (a new lease
token), so a runner still working on it is fenced out: its next write is
refused. :mod:`nativekit.saga._operator.actions` applies the same changes in a
service that has the definition and runs the saga at once instead of
releasing it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection

from nativekit.saga._errors import SagaNotFound, SagaStateError
from nativekit.saga._store.model import SagaRecord, SagaStatus, StepStatus, Transition
from nativekit.saga._store.store import SagaStore

#: Statuses each action accepts.
RETRYABLE = (SagaStatus.FAILED, SagaStatus.ABORTED)
COMPENSABLE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED, SagaStatus.ABORTED)
ABORTABLE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)


def check_status(record: SagaRecord, allowed: Collection[SagaStatus]) -> None:
    """Raise :class:`SagaStateError` unless ``record`` is in one of ``allowed``."""
    if record.status not in allowed:
        raise SagaStateError(
            f"saga {record.saga_id!r} is {record.status.value}; this action needs one of "
            f"{', '.join(s.value for s in allowed)}"
        )


def retry_change(record: SagaRecord) -> Transition:
    """The change that sends a FAILED or ABORTED saga forward again.

    Every step that did not complete gets a fresh policy (attempts and
    interruptions back to 0); steps that never ran have no record and start fresh
    anyway. Refused once compensation has undone a step: the saga can then only
    finish rolling back.
    """
    steps = record.steps.values()
    if any(s.status in (StepStatus.COMPENSATED, StepStatus.COMPENSATING) for s in steps) or any(
        s.compensation_attempts for s in steps
    ):
        raise SagaStateError(
            f"saga {record.saga_id!r} already ran compensations; it cannot go forward again. "
            "Use compensate to finish rolling it back."
        )
    change = Transition(status=SagaStatus.RUNNING, fields={"error": ""})
    for name, srec in record.steps.items():
        if srec.status is not StepStatus.COMPLETED:
            srec.attempts = srec.interruptions = 0
            srec.status = StepStatus.PENDING
            change.fields[f"step:{name}"] = srec.to_json()
    _end_member_waits(record, change)
    return change


def _end_member_waits(record: SagaRecord, change: Transition) -> None:
    """Replies awaited or stored for command members of a parallel group no longer
    count: a reply to them from now on is late."""
    for name in record.waits:
        change.fields[f"wait:{name}"] = ""
    for name in record.replies:
        change.fields[f"reply:{name}"] = ""


def compensate_change(record: SagaRecord) -> Transition:
    """The change that rolls a saga back from RUNNING, COMPENSATING, FAILED or ABORTED.

    A step caught RUNNING is marked uncertain (a runner may be inside it right
    now), so it is compensated too; a compensation that had failed gets a
    fresh policy.
    """
    change = Transition(status=SagaStatus.COMPENSATING)
    if record.status is not SagaStatus.COMPENSATING:
        change.fields["error"] = record.error or "compensation requested by an operator"
    if record.awaiting:  # a parked saga: the events it waited for no longer matter
        change.fields["awaiting"] = ""
    for name, srec in record.steps.items():
        if srec.status is StepStatus.RUNNING:
            srec.uncertain = True
            srec.waiting = False
            change.fields[f"step:{name}"] = srec.to_json()
        if srec.status is StepStatus.COMPENSATION_FAILED:
            srec.compensation_attempts = srec.compensation_interruptions = 0
            srec.status = StepStatus.COMPENSATING
            change.fields[f"step:{name}"] = srec.to_json()
    _end_member_waits(record, change)
    return change


def abort_change(reason: str) -> Transition:
    """The change that stops a saga where it is (no compensation runs)."""
    return Transition(status=SagaStatus.ABORTED, fields={"error": reason})


class SagaAdmin:
    """Operator actions on a :class:`SagaStore` by a process without the saga definitions.

    Args:
        store: the store the services use (same Redis, key prefix and shards).
        lease: seconds of the takeover lease (the services' ``saga_lease_seconds``).
        retention: seconds an ABORTED saga is kept (``saga_retention_seconds``).
    """

    def __init__(self, store: SagaStore, *, lease: float = 30.0, retention: float = 604_800.0):
        self.store = store
        self.lease = lease
        self.retention = retention

    async def get(self, saga_id: str) -> SagaRecord:
        """The instance with its history; raises :class:`SagaNotFound`."""
        record = await self.store.get(saga_id)
        if record is None:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        return record

    async def retry(self, saga_id: str) -> SagaRecord:
        """Send a FAILED or ABORTED saga forward; a replica with its code resumes it."""
        record, token = await self.take_over(saga_id, RETRYABLE)
        return await self._apply(record, token, retry_change(record), release=True)

    async def compensate(self, saga_id: str) -> SagaRecord:
        """Roll a saga back; a replica with its code runs the compensations."""
        record, token = await self.take_over(saga_id, COMPENSABLE)
        return await self._apply(record, token, compensate_change(record), release=True)

    async def abort(self, saga_id: str, reason: str = "aborted by an operator") -> SagaRecord:
        """Stop a saga where it is: nothing runs for it afterwards."""
        record, token = await self.take_over(saga_id, ABORTABLE)
        return await self._apply(record, token, abort_change(reason), release=False)

    async def take_over(
        self,
        saga_id: str,
        allowed: Collection[SagaStatus],
        *,
        before_claim: Callable[[], None] | None = None,
    ) -> tuple[SagaRecord, str]:
        """Check the status, then claim the instance by force under a new lease token.

        ``before_claim`` runs once the status was accepted (e.g. to stop a local run).
        """
        check_status(await self.get(saga_id), allowed)
        if before_claim is not None:
            before_claim()
        token = uuid.uuid4().hex
        record = await self.store.claim(saga_id, token, lease=self.lease, force=True)
        if record.status not in allowed:  # changed between the read and the claim
            raise SagaStateError(f"saga {saga_id!r} became {record.status.value}; try again")
        return record, token

    async def write(self, record: SagaRecord, token: str, change: Transition) -> None:
        """Apply ``change`` under the takeover lease; ``record.status`` follows it."""
        await self.store.write(
            record.saga_id,
            token,
            change,
            current=record.status,
            name=record.name,
            definition=record.definition,
            lease=self.lease,
            retention=self.retention,
        )
        if change.status is not None:
            record.status = change.status

    async def _apply(
        self, record: SagaRecord, token: str, change: Transition, *, release: bool
    ) -> SagaRecord:
        change.release = release
        await self.write(record, token, change)
        return await self.get(record.saga_id)
