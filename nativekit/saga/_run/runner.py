"""Driving one saga instance: steps forward, compensations backward, every transition persisted.

The rule that makes crashes harmless: a change is written (fenced by the
lease token) before the next side effect starts. Changes that fall between two
side effects are coalesced into one write, so a step costs one round trip:
"step N completed" and "step N+1 started" are the same write.

An attempt is the unit a step policy counts. A timeout counts like a failure
whose outcome is unknown (``uncertain``). An attempt interrupted by its process
stopping (found on recovery: the step is still marked running) is not a
failure: it is re-run with the same idempotency key without using up a retry,
at most ``max_interruptions`` times, so a step that kills its process every
time still ends. When the saga compensates, an uncertain step is compensated too.

Command steps (:mod:`nativekit.saga._define.command_steps`) plug in through ``RunEnv.commands``:
the attempt persists the command (an outbox entry) with the reply it waits for, and
the run ends (:class:`Suspended`); the reply consumer claims the saga and resumes
it with the reply, or recovery counts the attempt as timed out after the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nativekit._telemetry.logging import get_logger
from nativekit.saga._define.definition import Direction, Saga, SagaContext, Step, idempotency_key
from nativekit.saga._errors import LeaseLost
from nativekit.saga._run.telemetry import SagaMetrics
from nativekit.saga._store.model import (
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    Transition,
    encode_order,
)
from nativekit.saga._store.store import SagaStore

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from nativekit.saga._define.command_steps import CommandDriver, Outcome
    from nativekit.saga._run.runtime import Creating
from nativekit.saga._define.policy import Policy


class Hooks(Protocol):
    """Called around every step attempt; the test seam injects crashes and failures here."""

    async def before(self, record: SagaRecord, step: str, direction: Direction) -> None:
        """After the attempt's start is persisted, before the step function runs."""

    async def after(self, record: SagaRecord, step: str, direction: Direction) -> None:
        """After the step function returned, before its completion is persisted."""


class NotCreated(Exception):
    """The saga id existed already when this run tried to create it: the run does nothing."""


class StepTimeout(TimeoutError):
    """A step attempt took longer than its policy's ``timeout``."""


@dataclass
class RunEnv:
    """What every run of a runtime shares."""

    store: SagaStore
    service: str
    lease: float
    retention: float
    metrics: SagaMetrics | None
    tracer: Tracer | None
    hooks: Hooks | None = None
    clock: Callable[[], float] = time.time
    #: Interruptions of one step direction re-run before it fails (policy may override).
    max_interruptions: int = 3
    #: Command/reply steps, None when unused.
    commands: CommandDriver | None = None


class Suspended(BaseException):
    """A command step persisted its command and now waits for the reply: the run ends here."""


#: The run whose step is executing (``outbox_publish`` stages there).
current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "nativekit_saga_run", default=None
)


def describe(exc: BaseException) -> str:
    """An error as stored with the step: ``Type: message``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Run:
    """One runner's ownership of one saga instance, from claim to end or lost lease."""

    def __init__(self, env: RunEnv, saga: Saga[Any], record: SagaRecord, token: str) -> None:
        self.env = env
        self.saga = saga
        self.record = record
        self.token = token
        self.pending = Transition()
        self._log: Any = None
        self._data: Any = None
        self._results: dict[str, Any] | None = None
        #: Set by ``sagas.start``: the first flush creates the instance and resolves it.
        self.creating: Creating | None = None
        #: The command reply this run was resumed with: (reply token, outcome).
        self.reply: tuple[str, Outcome] | None = None
        #: Outbox entries staged by the executing attempt, written when it completes.
        self.staged: list[str] = []
        #: The run ended because a command step now waits for its reply (state persisted).
        self.suspended = False

    @property
    def log(self) -> Any:
        """Logger bound with service, saga and saga_id (bound on first use)."""
        if self._log is None:
            self._log = get_logger(
                service=self.env.service,
                logger="nativekit.saga",
                saga=self.saga.name,
                saga_id=self.record.saga_id,
            )
        return self._log

    # -- persistence ----------------------------------------------------------------

    async def flush(self) -> None:
        """Persist the pending changes (fenced by the lease token)."""
        change, self.pending = self.pending, Transition()
        if self.creating is not None:
            await self._create(self.creating)
            return
        if not change:
            return
        record = self.record
        await self.env.store.write(
            record.saga_id,
            self.token,
            change,
            current=record.status,
            name=record.name,
            definition=record.definition,
            lease=self.env.lease,
            retention=self.env.retention,
        )
        if change.status is not None:
            record.status = change.status
        if change.outbox and self.env.commands is not None:
            self.env.commands.wake(self.record.saga_id)

    async def _create(self, creating: Creating) -> None:
        try:
            stored, created = await self.env.store.create(
                self.record, token=self.token, lease=self.env.lease
            )
        except Exception as exc:
            self.creating = None
            creating.done.set_exception(exc)
            raise NotCreated from exc
        self.creating = None
        creating.done.set_result((stored, created))
        if not created:
            raise NotCreated
        self.log.info("saga.started")

    def _mark(self, name: str, step: StepRecord) -> None:
        self.pending.fields[f"step:{name}"] = step.to_json()

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
            if span is not None:
                span.set_attribute("saga.status", self.record.status.value)
        return self.record

    async def _loop(self) -> None:
        while (status := self.pending.status or self.record.status).active:
            if status is SagaStatus.RUNNING:
                step = self._next_forward()
                if step is None:
                    await self._finish(SagaStatus.COMPLETED)
                elif not await self._run(step, "forward"):
                    await self._after_forward_failure(step)
            else:
                step = self._next_compensation()
                if step is None:
                    await self._finish(SagaStatus.COMPENSATED)
                elif not await self._run(step, "compensate"):
                    await self._finish(
                        SagaStatus.FAILED,
                        error=f"compensation of step {step.name!r} exhausted its policy: "
                        f"{self.record.step(step.name).error}",
                    )

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
        metrics = self.env.metrics
        name = self.saga.name
        if status is SagaStatus.FAILED:
            self.log.error("saga.failed", error=error)
            if metrics is not None:
                metrics.failed.labels(metrics.service, name).inc()
        elif status is SagaStatus.COMPLETED:
            self.log.info("saga.completed")
            if metrics is not None:
                metrics.completed.labels(metrics.service, name).inc()
        else:
            self.log.info("saga.compensated")
            if metrics is not None:
                metrics.compensated.labels(metrics.service, name).inc()

    # -- one direction of one step ----------------------------------------------------

    async def _run(self, step: Step[Any, Any], direction: Direction) -> bool:
        """Attempt ``step`` in ``direction`` per its policy; True once it succeeded."""
        forward = direction == "forward"
        policy = step.policy if forward else step.compensation_policy
        srec = self.record.step(step.name)
        commands = self.env.commands
        # a command step resumed by its reply (or whose reply wait expired)
        outcome = commands.outcome(self, step, direction) if commands is not None else None
        resend = outcome is not None and outcome.unheard
        if resend:  # nobody here heard the reply: send the same attempt again, no verdict
            outcome = None
            attempt = srec.attempts if forward else srec.compensation_attempts
            self._interrupted(step, direction, attempt, reason="reply deadline unheard")
        elif (
            outcome is None
            and _was_running(srec, forward)
            and not self._interruption(step, srec, forward, policy)
        ):
            return False
        while True:
            if outcome is None:
                if not resend and srec.failures(forward) >= policy.attempts:
                    # only records of older versions, which counted crashes as attempts
                    srec.uncertain = srec.uncertain or srec.status is StepStatus.RUNNING
                    return self._fail(step, srec, forward, srec.error or "attempts used up")
                done = srec.attempts if forward else srec.compensation_attempts
                attempt, resend = (done if resend else done + 1), False
                self._start_attempt(step.name, srec, forward, attempt)
                if (
                    commands is None
                    or not commands.is_command(step, direction)
                    or self.creating is not None  # the instance must be created first
                ):
                    await self.flush()  # else a command step writes its start with its command
            else:
                attempt = srec.attempts if forward else srec.compensation_attempts
            self.staged = []
            try:
                if outcome is not None:
                    value = outcome.result()
                else:
                    value = await self._attempt(step, direction, attempt)
            except Exception as exc:
                outcome = None
                srec.error = describe(exc)
                if forward:
                    srec.uncertain = isinstance(exc, StepTimeout)
                final = getattr(exc, "final", False)  # e.g. a failure reply: never retried
                failures = srec.failures(forward)
                if policy.retryable(exc) and not final and failures < policy.attempts:
                    self.log.warning(
                        "saga.step.retrying",
                        step=step.name,
                        direction=direction,
                        attempt=attempt,
                        error=srec.error,
                    )
                    await asyncio.sleep(policy.backoff.delay(failures))
                    continue
                return self._fail(step, srec, forward, srec.error, attempt=attempt)
            self.pending.outbox.extend(self.staged)
            self.staged = []
            self._complete(step, srec, forward, value)
            return True

    def _interruption(
        self, step: Step[Any, Any], srec: StepRecord, forward: bool, policy: Policy
    ) -> bool:
        """Count the interruption of the last attempt; False when past the bound (failed)."""
        if forward:
            srec.interruptions += 1
            count, attempt = srec.interruptions, srec.attempts
        else:
            srec.compensation_interruptions += 1
            count, attempt = srec.compensation_interruptions, srec.compensation_attempts
        limit = policy.max_interruptions or self.env.max_interruptions
        direction: Direction = "forward" if forward else "compensate"
        self._interrupted(
            step,
            direction,
            attempt,
            reason="process stopped mid-step",
            interruptions=count,
            max_interruptions=limit,
        )
        if count <= limit:
            self._mark(step.name, srec)  # written with the next attempt's start
            return True
        if forward:
            srec.uncertain = True
        error = (
            f"the step kept killing its process: {count} attempts were interrupted by the "
            f"process stopping mid-step (max_interruptions={limit})"
        )
        return self._fail(step, srec, forward, error, attempt=attempt)

    def _interrupted(
        self, step: Step[Any, Any], direction: Direction, attempt: int, **details: Any
    ) -> None:
        """Log and count an interruption (``saga.step.interrupted``): not a failure."""
        self.log.warning(
            "saga.step.interrupted", step=step.name, direction=direction, attempt=attempt, **details
        )
        metrics = self.env.metrics
        if metrics is not None:
            metrics.interruptions.labels(
                metrics.service, self.saga.name, step.name, direction
            ).inc()

    def _fail(
        self,
        step: Step[Any, Any],
        srec: StepRecord,
        forward: bool,
        error: str,
        *,
        attempt: int | None = None,
    ) -> bool:
        """Mark one direction of ``step`` failed with ``error``; returns False."""
        srec.error = error
        now = self.env.clock()
        if forward:
            srec.status = StepStatus.FAILED
            srec.ended_at = now
        else:
            srec.status = StepStatus.COMPENSATION_FAILED
            srec.compensation_ended_at = now
        self.log.warning(
            "saga.step.failed",
            step=step.name,
            direction="forward" if forward else "compensate",
            attempt=attempt,
            error=error,
        )
        self._mark(step.name, srec)
        return False

    def _start_attempt(self, name: str, srec: StepRecord, forward: bool, attempt: int) -> None:
        now = self.env.clock()
        if forward:
            srec.status = StepStatus.RUNNING
            srec.attempts = attempt
            srec.started_at = srec.started_at or now
            srec.uncertain = True  # until the attempt's outcome is known
        else:
            srec.status = StepStatus.COMPENSATING
            srec.compensation_attempts = attempt
            srec.compensation_started_at = srec.compensation_started_at or now
        self._mark(name, srec)

    def _complete(self, step: Step[Any, Any], srec: StepRecord, forward: bool, value: Any) -> None:
        now = self.env.clock()
        if forward:
            srec.error = None
            srec.status = StepStatus.COMPLETED
            srec.ended_at = now
            srec.uncertain = False
            encoded = step.encode_result(value)
            self.record.results[step.name] = encoded
            self.pending.fields[f"result:{step.name}"] = encoded
            self.record.order.append(step.name)
            self.pending.fields["order"] = encode_order(self.record.order)
            if self._results is not None:
                self._results[step.name] = value
        else:
            srec.status = StepStatus.COMPENSATED
            srec.compensation_ended_at = now
        self._mark(step.name, srec)

    async def _attempt(self, step: Step[Any, Any], direction: Direction, attempt: int) -> Any:
        func = step.func if direction == "forward" else step.compensation
        if func is None:  # pragma: no cover - plans only hold steps with compensations
            raise LeaseLost("no function for this direction")
        ctx: SagaContext[Any] = SagaContext(
            saga_id=self.record.saga_id,
            saga=self.saga.name,
            step=step.name,
            direction=direction,
            data=self._input(),
            results=self._decoded_results(),
            idempotency_key=idempotency_key(self.record.saga_id, step.name, direction),
            attempt=attempt,
            log=_StepLogger(self.log, step.name, direction, attempt),
        )
        hooks = self.env.hooks
        if hooks is not None:
            await hooks.before(self.record, step.name, direction)
        commands = self.env.commands
        if commands is not None and commands.is_command(step, direction):
            await commands.send(self, step, direction, ctx)  # persists, then raises Suspended
        policy = step.policy if direction == "forward" else step.compensation_policy
        started = time.perf_counter()
        outcome = "error"
        try:
            value = await self._call(func, ctx, policy.timeout, step, direction, attempt)
            outcome = "ok"
        finally:
            metrics = self.env.metrics
            if metrics is not None:
                elapsed = time.perf_counter() - started
                metrics.observe_step(self.saga.name, step.name, direction, outcome, elapsed)
        if hooks is not None:
            await hooks.after(self.record, step.name, direction)
        return value

    async def _call(
        self,
        func: Callable[..., Awaitable[Any]],
        ctx: SagaContext[Any],
        limit: float | None,
        step: Step[Any, Any],
        direction: Direction,
        attempt: int,
    ) -> Any:
        tracer = self.env.tracer
        if tracer is None:
            return await _with_timeout(func(ctx), limit)
        with tracer.start_as_current_span(
            f"saga.step {step.name}",
            attributes={
                "saga.name": self.saga.name,
                "saga.id": self.record.saga_id,
                "saga.step": step.name,
                "saga.direction": direction,
                "saga.attempt": attempt,
            },
        ):
            return await _with_timeout(func(ctx), limit)

    def _input(self) -> Any:
        if self._data is None:
            self._data = self.saga.validate_input(self.record.input)
        return self._data

    def _decoded_results(self) -> dict[str, Any]:
        if self._results is None:
            self._results = {}
            for name, raw in self.record.results.items():
                step = self.saga.get_step(name)
                self._results[name] = step.decode_result(raw) if step else json.loads(raw)
        return dict(self._results)


class _StepLogger:
    """The step's logger, bound on first use (most steps never log)."""

    __slots__ = ("_args", "_bound", "_parent")

    def __init__(self, parent: Any, step: str, direction: str, attempt: int) -> None:
        self._parent = parent
        self._args = (step, direction, attempt)
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            step, direction, attempt = self._args
            self._bound = self._parent.bind(step=step, direction=direction, attempt=attempt)
        return getattr(self._bound, name)


async def _with_timeout(awaitable: Awaitable[Any], limit: float | None) -> Any:
    if limit is None:
        return await awaitable
    try:
        async with asyncio.timeout(limit) as scope:
            return await awaitable
    except TimeoutError as exc:
        if scope.expired():
            raise StepTimeout(f"attempt took longer than {limit:g}s") from exc
        raise


def _was_running(srec: StepRecord, forward: bool) -> bool:
    """True when the record shows an attempt of this direction still running: on entering
    the step, that attempt was cut short by its process stopping."""
    if forward:
        return srec.status is StepStatus.RUNNING and srec.attempts > 0
    return srec.status is StepStatus.COMPENSATING and srec.compensation_attempts > 0
