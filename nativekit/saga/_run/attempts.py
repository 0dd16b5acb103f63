"""One direction of one step: attempts per its policy, timeouts, interruptions, failures.

An attempt is the unit a step policy counts. A timeout counts like a failure
whose outcome is unknown (``uncertain``), as does an exception whose ``uncertain``
attribute is true; once one attempt's outcome was unknown the step stays uncertain
when a later attempt fails plainly (the earlier one may have taken effect). An
attempt interrupted by its process stopping (found on recovery: the step is still
marked running) is not a failure: it is re-run with the same idempotency key
without using up a retry, at most ``max_interruptions`` times, so a step that
kills its process every time still ends. When the saga compensates, an uncertain
step is compensated too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from nativekit._transaction import NO_TRANSACTION, TransactionScope
from nativekit.saga._define.command_steps import Outcome
from nativekit.saga._define.policy import Policy
from nativekit.saga._define.step import (
    Direction,
    SagaContext,
    Step,
    durable_run,
    idempotency_key,
)
from nativekit.saga._errors import DeadlinePassed, LeaseLost, SagaStoreUnavailable, StepTimeout
from nativekit.saga._run.state import describe
from nativekit.saga._run.waits import DurableWaits
from nativekit.saga._store.model import StepRecord, StepStatus, encode_order


class StepAttempts(DurableWaits):
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
        elif outcome is None and self.unpark(step.name, direction):
            resend = True  # woken from a durable wait: the same attempt goes on
        elif (
            outcome is None
            and _was_running(srec, forward)
            and not self._interruption(step, srec, forward, policy)
        ):
            return False
        self.unknown[(step.name, direction)] = False
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
                    or self.open_scope is not None  # the last step's transaction commits first
                ):
                    plain = commands is None or not commands.is_command(step, direction)
                    self.chain_next = plain and self.wants_chain(step, direction)
                    await self.flush()  # else a command step writes its start with its command
            else:
                attempt = srec.attempts if forward else srec.compensation_attempts
            self.staged[step.name] = []
            transactions = self.env.transactions
            scope, self.chained = self.chained, None
            if scope is None and transactions is not None and outcome is None:
                scope = transactions()
            try:
                result = await self._attempt_in(scope, step, srec, direction, attempt, outcome)
            finally:
                if scope is not None:
                    self.learn(step, direction, scope)
                    if scope is not self.open_scope:
                        await scope.close()  # rolls back unless the completion committed
            if result is not None:
                return result
            outcome = None

    async def _attempt_in(
        self,
        scope: TransactionScope | None,
        step: Step[Any, Any],
        srec: StepRecord,
        direction: Direction,
        attempt: int,
        outcome: Outcome | None,
    ) -> bool | None:
        """One attempt; None when it failed and is retried. With ``scope`` (the step's
        transaction, begun if the step used ``ctx.db``) the completion is written in it."""
        forward = direction == "forward"
        policy = step.policy if forward else step.compensation_policy
        try:
            if outcome is not None:
                value = outcome.result()
            else:
                value = await self._attempt(step, direction, attempt, scope)
        except SagaStoreUnavailable:
            raise  # this run cannot write: not the step's failure (resumed later)
        except Exception as exc:
            if scope is not None:
                await scope.close()  # not held through the backoff
            srec.error = describe(exc)
            if forward:  # once an attempt of this run may have applied, the step may have
                key = (step.name, direction)
                self.unknown[key] = self.unknown.get(key, False) or outcome_unknown(exc)
                srec.uncertain = self.unknown[key]
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
                return None
            return self._fail(step, srec, forward, srec.error, attempt=attempt)
        outbox = self.staged.pop(step.name, [])
        complete = partial(self._complete, step, srec, forward, value, outbox)
        if scope is not None and scope.begun:
            if step.group is None:  # the next write carries the completion, then commits
                complete()
                self.open_scope = scope
                return True
            await self.commit_with(scope, complete)  # the step's writes commit with it
        else:
            complete()
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
            self.mark(step.name, srec)  # written with the next attempt's start
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
        self.mark(step.name, srec)
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
        self.mark(name, srec)

    def _complete(
        self, step: Step[Any, Any], srec: StepRecord, forward: bool, value: Any, outbox: list[str]
    ) -> None:
        self.pending.outbox.extend(outbox)
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
        self.mark(step.name, srec)

    async def _attempt(
        self,
        step: Step[Any, Any],
        direction: Direction,
        attempt: int,
        scope: TransactionScope | None = None,
    ) -> Any:
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
            db=scope if scope is not None else NO_TRANSACTION,
        )
        hooks = self.env.hooks
        if hooks is not None:
            await hooks.before(self.record, step.name, direction)
        commands = self.env.commands
        if commands is not None and commands.is_command(step, direction):
            await commands.send(self, step, direction, ctx)  # persists, then raises Suspended
        policy = step.policy if direction == "forward" else step.compensation_policy
        limit, by_deadline = (
            self.attempt_limit(policy.timeout)
            if direction == "forward"
            else (policy.timeout, False)
        )
        started = time.perf_counter()
        outcome = "error"
        self.ordinals.pop((step.name, direction), None)
        context = durable_run.set(self)
        try:
            value = await self._call(func, ctx, limit, step, direction, attempt)
            outcome = "ok"
        except StepTimeout as exc:
            if by_deadline:
                raise DeadlinePassed("the saga's deadline passed during the attempt") from exc
            raise
        finally:
            durable_run.reset(context)
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


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a step attempt that raised ``exc`` may still have taken effect: it timed
    out, or the exception says so with a true ``uncertain`` attribute (a peer that did
    not answer, or answered 5xx, may have applied the request)."""
    return isinstance(exc, StepTimeout) or bool(getattr(exc, "uncertain", False))
