"""Driving one saga instance: steps forward, compensations backward, every transition persisted.

Command steps plug in through ``RunEnv.commands``: the attempt persists the
command (an outbox entry) with the reply it waits for, and the run ends
(:class:`Suspended`); the reply consumer claims the saga and resumes it with the
reply, or recovery counts the attempt as timed out after the deadline.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from nativekit.saga._define.step import Direction, Step
from nativekit.saga._errors import LeaseLost
from nativekit.saga._run.parallel import GroupRunner
from nativekit.saga._run.state import Suspended, current_run
from nativekit.saga._store.model import SagaRecord, SagaStatus, StepStatus


class Run(GroupRunner):
    # -- driving --------------------------------------------------------------------

    async def drive(self) -> SagaRecord:
        """Run until the saga is COMPLETED, COMPENSATED or FAILED (or the lease is lost)."""
        tracer = self.env.tracer
        span_cm: Any = (
            tracer.start_as_current_span(
                f"saga {self.saga.name}",
                attributes={"saga.name": self.saga.name, "saga.id": self.record.saga_id},
            )
            if tracer is not None
            else contextlib.nullcontext()
        )
        current_run.set(self)
        with span_cm as span:
            try:
                await self._loop()
            except Suspended:
                self.suspended = True
                return self.record
            except LeaseLost:
                self.log.warning("saga.lease.lost", status=self.record.status.value)
                raise
            finally:
                scope, self.open_scope = self.open_scope, None
                if scope is not None:  # a step's completion never written: its effects too
                    await scope.close()
                await self.drop_chained()
            if span is not None:
                span.set_attribute("saga.status", self.record.status.value)
        return self.record

    async def _loop(self) -> None:
        while (status := self.pending.status or self.record.status).active:
            if status is SagaStatus.RUNNING:
                if self.past_deadline():
                    self._stop_at_deadline()
                    continue
                step = self._next_forward()
                if step is None:
                    await self._finish(SagaStatus.COMPLETED)
                elif step.group is not None:
                    failed = await self._run_group(step.group)
                    if failed is not None:
                        await self._after_forward_failure(failed)
                elif not await self._alone(step, "forward"):
                    await self._after_forward_failure(step)
            else:
                step = self._next_compensation()
                if step is None:
                    await self._finish(SagaStatus.COMPENSATED)
                elif not await self._alone(step, "compensate"):
                    await self._finish(
                        SagaStatus.FAILED,
                        error=f"compensation of step {step.name!r} exhausted its policy: "
                        f"{self.record.step(step.name).error}",
                    )

    async def _alone(self, step: Step[Any, Any], direction: Direction) -> bool:
        """Run one step that is not in a group; park the saga if the step parked."""
        try:
            return await self._run(step, direction)
        except Suspended:
            if self.waits:
                await self.park()
            raise

    def _stop_at_deadline(self) -> None:
        """Past the deadline (and no pivot completed): stop going forward, compensate."""
        record = self.record
        now = self.env.clock()
        for name, srec in record.steps.items():
            if srec.status is StepStatus.RUNNING:  # parked, or cut short by a crash
                srec.status, srec.uncertain, srec.waiting = StepStatus.FAILED, True, False
                srec.ended_at = now
                srec.error = "DeadlinePassed: the saga's deadline passed"
                self.mark(name, srec)
        for field in [f"wait:{n}" for n in record.waits] + [f"reply:{n}" for n in record.replies]:
            self.pending.fields[field] = ""  # replies to group members from now on are late
        record.waits.clear()
        record.replies.clear()
        error = f"the saga's deadline passed (at {record.deadline!r}, epoch s)"
        self.log.warning("saga.deadline.passed", deadline=record.deadline)
        self.pending.status = SagaStatus.COMPENSATING
        self.pending.fields["error"] = error
        record.error = error

    def _next_forward(self) -> Step[Any, Any] | None:
        for step in self.saga.steps:
            if self.record.step(step.name).status is not StepStatus.COMPLETED:
                return step
        return None

    def _compensation_plan(self) -> list[Step[Any, Any]]:
        """Steps to undo, latest first: an uncertain step, then completed ones in reverse."""
        record = self.record
        names = list(reversed(record.order))
        uncertain = [
            s.name
            for s in self.saga.steps
            if s.name not in record.order and record.step(s.name).uncertain
        ]
        plan = []
        for name in uncertain + names:
            step = self.saga.get_step(name)
            if step is not None and step.compensation is not None:
                plan.append(step)
        return plan

    def _next_compensation(self) -> Step[Any, Any] | None:
        for step in self._compensation_plan():
            if self.record.step(step.name).status is not StepStatus.COMPENSATED:
                return step
        return None

    async def _after_forward_failure(self, step: Step[Any, Any]) -> None:
        record = self.record
        error = record.step(step.name).error
        pivots = [n for n in record.order if (s := self.saga.get_step(n)) is not None and s.pivot]
        if pivots:
            await self._finish(
                SagaStatus.FAILED,
                error=f"step {step.name!r} failed after pivot step {pivots[-1]!r} completed, "
                f"so the saga can only go forward: {error}",
            )
            return
        if step.pivot and record.step(step.name).uncertain:
            await self._finish(
                SagaStatus.FAILED,
                error=f"pivot step {step.name!r} has no compensation and its outcome is "
                f"unknown: {error}",
            )
            return
        self.log.info("saga.compensating", failed_step=step.name, error=error)
        self.pending.status = SagaStatus.COMPENSATING
        self.pending.fields["error"] = f"step {step.name!r} failed: {error}"
        record.error = self.pending.fields["error"]

    async def _finish(self, status: SagaStatus, *, error: str | None = None) -> None:
        self.pending.status = status
        if error is not None:
            self.pending.fields["error"] = error
            self.record.error = error
        await self.flush()
        if self.record.parent is not None and self.env.children is not None:
            self.record.status = status
            await self.env.children.notify_parent(self.record)
        if status is SagaStatus.FAILED:
            self.log.error("saga.failed", error=error)
        elif status is SagaStatus.COMPLETED:
            self.log.info("saga.completed")
        else:
            self.log.info("saga.compensated")
        metrics = self.env.metrics
        if metrics is not None:  # from its start, whichever replica started it
            metrics.finished(self.saga.name, status, time.time() - self.record.created_at)
