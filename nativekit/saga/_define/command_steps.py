"""Command steps: a saga step that sends a command to a participant and waits for its reply.

::

    @place_order.command_step(topic="inventory.commands", reply=StockReserved, reply_timeout=5)
    async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> ReserveStock:
        return ReserveStock(order_id=ctx.data.order_id, items=ctx.data.items)

The function only *builds* the command. The runner writes the step's start,
the command (as an outbox entry) and the reply it waits for in one atomic
write, then the run ends: no task and no memory are held while the saga
waits. Its lease runs until the reply deadline. A matching reply resumes the
saga on whichever replica consumes it (:mod:`nativekit.saga._commands.replies`); when
the deadline passes first, recovery claims the saga and counts the attempt as
timed out (retried per the step's policy, then compensation).
"""

from __future__ import annotations

import contextlib
import functools
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from pydantic import BaseModel, TypeAdapter

from nativekit.errors import ConfigError
from nativekit.messaging._commands import handlers as h
from nativekit.saga._define.definition import (
    _NAME,
    Direction,
    Saga,
    SagaContext,
    Step,
    _check_async,
)
from nativekit.saga._define.policy import COMPENSATION_DEFAULT, Backoff, Policy
from nativekit.saga._errors import SagaStateError
from nativekit.saga._run.runner import Run, StepTimeout, Suspended, current_run
from nativekit.saga._store.model import Waiting
from nativekit.saga._store.outbox import OutboxEntry

if TYPE_CHECKING:
    from nativekit.saga._commands.replies import CommandMetrics
from nativekit.saga._define.policy import DEFAULT_RETRIES

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")
T = TypeVar("T")


class CommandTimeout(StepTimeout):
    """No reply to a command arrived before the step's ``reply_timeout``."""


class CommandFailed(Exception):
    """The participant answered with a failure reply; the step fails without retries."""

    final = True  # the runner does not retry a business refusal


@dataclass(frozen=True)
class CommandSpec:
    """Where one direction of a command step sends its command and what reply it expects."""

    topic: str
    reply: type[BaseModel] | None
    timeout: float

    @functools.cached_property
    def adapter(self) -> TypeAdapter[Any]:
        """Validator of the reply payload (built once: building one costs ~50 us)."""
        return TypeAdapter(Any if self.reply is None else self.reply)


def _spec(topic: str, reply: type[BaseModel] | None, timeout: float) -> CommandSpec:
    if not topic or not all(c.isalnum() or c in "._-" for c in topic):
        raise ConfigError(f"{topic!r} is not a valid topic name.")
    if timeout <= 0:
        raise ConfigError(f"reply_timeout must be > 0 seconds, got {timeout}.")
    return CommandSpec(topic, reply, timeout)


class CommandStep(Step[P, R]):
    """A step whose function builds a command; its result is the participant's reply."""

    command: CommandSpec
    compensation_command: CommandSpec | None = None

    def compensate_command(
        self,
        *,
        topic: str,
        reply: type[BaseModel] | None = None,
        reply_timeout: float = 10.0,
        retries: int = COMPENSATION_DEFAULT.retries,
        backoff: Backoff | None = None,
        max_interruptions: int | None = None,
    ) -> Callable[[Callable[P, Awaitable[C]]], Callable[P, Awaitable[C]]]:
        """Decorator: a compensation that sends the command its function builds to ``topic``.

        A timeout is retried per ``retries``; a failure reply parks the saga as FAILED.
        """

        def register(fn: Callable[P, Awaitable[C]]) -> Callable[P, Awaitable[C]]:
            self.compensate(retries=retries, backoff=backoff, max_interruptions=max_interruptions)(
                fn
            )
            self.compensation_command = _spec(topic, reply, reply_timeout)
            return fn

        return register


def command_step(
    saga: Saga[T],
    *,
    topic: str,
    reply: type[BaseModel] | None = None,
    reply_timeout: float = 10.0,
    retries: int = DEFAULT_RETRIES,
    backoff: Backoff | None = None,
    name: str | None = None,
    max_interruptions: int | None = None,
) -> Callable[[Callable[[SagaContext[T]], Awaitable[Any]]], CommandStep[[SagaContext[T]], Any]]:
    """Append a command step to ``saga`` (see :meth:`nativekit.Saga.command_step`)."""
    spec = _spec(topic, reply, reply_timeout)
    policy = Policy(
        retries=retries, backoff=backoff or Backoff(), max_interruptions=max_interruptions
    )

    def decorator(
        func: Callable[[SagaContext[T]], Awaitable[Any]],
    ) -> CommandStep[[SagaContext[T]], Any]:
        step_name: str = name or str(getattr(func, "__name__", ""))
        _check_async(func, f"command step {step_name!r} of saga {saga.name!r}")
        if not _NAME.match(step_name):
            raise ConfigError(f"Step name {step_name!r} of saga {saga.name!r} is not valid.")
        if saga.get_step(step_name) is not None:
            raise ConfigError(f"Saga {saga.name!r} already has a step named {step_name!r}.")
        returns = typing.get_type_hints(func).get("return")
        if not (isinstance(returns, type) and issubclass(returns, BaseModel)):
            raise ConfigError(
                f"Command step {step_name!r} must be annotated to return the command's "
                "pydantic model, e.g. '-> ReserveStock'."
            )
        step: CommandStep[[SagaContext[T]], Any] = CommandStep(
            saga, func, name=step_name, policy=policy, readonly=False
        )
        step.command = spec
        step.result_type = spec.adapter
        saga.steps.append(step)
        saga._by_name[step_name] = step
        return step

    return decorator


def spec_of(step: Step[Any, Any], direction: Direction) -> CommandSpec | None:
    """The command spec of ``step`` in ``direction``, None for a local function."""
    if not isinstance(step, CommandStep):
        return None
    return step.command if direction == "forward" else step.compensation_command


def outbox_publish(
    ctx: SagaContext[Any],
    topic: str,
    event: BaseModel,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Publish ``event`` atomically with the completion of the running step.

    The event is written to the outbox in the same write that records the step
    as completed, and published by the relay after that; if the attempt fails,
    the event is dropped with it. Call it from inside a step or compensation.
    Returns the message id the event will carry.
    """
    run = current_run.get()
    if run is None or run.record.saga_id != ctx.saga_id:
        raise SagaStateError("outbox_publish() must be called from inside a running saga step")
    entry = OutboxEntry.new(topic, event, key=key if key is not None else ctx.saga_id)
    entry.headers.update(headers or {})
    run.staged.append(entry.encode())
    return entry.id


@dataclass
class Outcome:
    """How a waiting command attempt ended: a reply (ok or failed), or its deadline.

    ``unheard``: the deadline passed but this replica was not listening for
    replies during the whole wait (it started, or its reply consumer joined, after
    the command was sent, e.g. after a SIGKILL): the deadline says nothing about
    the participant, so the same attempt is sent again instead of failing.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    timed_out: bool = False
    unheard: bool = False

    def result(self) -> Any:
        """The reply value, or raise the failure."""
        if self.timed_out:
            raise CommandTimeout(self.error or "no reply before the deadline")
        if not self.ok:
            raise CommandFailed(self.error or "the participant refused the command")
        return self.value


class CommandDriver:
    """What the runner calls for command steps (``RunEnv.commands``).

    Args:
        reply_topic: where participants send replies for this service.
        wake: called with the saga id after its outbox entries were written (wakes the
            local relay, which then reads that saga's shard first).
        metrics: counters, or None.
    """

    def __init__(
        self, reply_topic: str, wake: Callable[[str], None], metrics: CommandMetrics | None = None
    ) -> None:
        self.reply_topic = reply_topic
        self._wake = wake
        self.metrics = metrics
        #: Since when (epoch s) this replica hears replies: a wait written before that
        #: was not heard in full. The reply consumer sets it once it has partitions.
        self.listening_since = 0.0

    def wake(self, saga_id: str) -> None:
        """Outbox entries of ``saga_id`` were just written."""
        self._wake(saga_id)

    def is_command(self, step: Step[Any, Any], direction: Direction) -> bool:
        """True when this direction of ``step`` sends a command."""
        return spec_of(step, direction) is not None

    def outcome(self, run: Run, step: Step[Any, Any], direction: Direction) -> Outcome | None:
        """The ended wait of ``step`` in ``direction`` (its reply or its timeout), if any."""
        wait = Waiting.decode(run.record.wait)
        if wait is None or wait.step != step.name or wait.direction != direction:
            return None
        run.record.wait = None
        run.pending.fields["wait"] = ""
        reply, run.reply = run.reply, None
        if reply is not None and reply[0] == wait.token:
            return reply[1]
        return Outcome(
            False,
            timed_out=True,
            unheard=wait.at is not None and wait.at < self.listening_since,
            error=f"no reply from the participant within {wait.timeout:g}s "
            f"(attempt {wait.attempt})",
        )

    async def send(
        self, run: Run, step: Step[Any, Any], direction: Direction, ctx: SagaContext[Any]
    ) -> None:
        """Build the command, write it with the step's start and the wait, then suspend."""
        spec = spec_of(step, direction)
        func = step.func if direction == "forward" else step.compensation
        if spec is None or func is None:  # pragma: no cover - guarded by is_command
            raise ConfigError("not a command step")
        tracer = run.env.tracer
        span_cm: Any = (
            tracer.start_as_current_span(
                f"saga.step {step.name}",
                attributes={
                    "saga.name": run.saga.name,
                    "saga.id": ctx.saga_id,
                    "saga.step": step.name,
                    "saga.direction": direction,
                    "saga.attempt": ctx.attempt,
                    "messaging.destination.name": spec.topic,
                },
            )
            if tracer is not None
            else contextlib.nullcontext()
        )
        with span_cm:
            command = await func(ctx)
            if not isinstance(command, BaseModel):
                raise TypeError(
                    f"command step {step.name!r} must return a pydantic model, got {command!r}"
                )
            entry = OutboxEntry.new(spec.topic, command, key=ctx.saga_id)  # carries the span
        token = uuid.uuid4().hex[:16]
        wait = Waiting(step.name, direction, ctx.attempt, token, spec.timeout, run.env.clock())
        entry.headers.update(
            {
                h.REPLY_TO: self.reply_topic,
                h.IDEMPOTENCY_KEY: ctx.idempotency_key,
                h.SAGA_ID: ctx.saga_id,
                h.SAGA_STEP: step.name,
                h.SAGA_DIRECTION: direction,
                h.SAGA_ATTEMPT: str(ctx.attempt),
                h.SAGA_REPLY_TOKEN: token,
            }
        )
        pending = run.pending
        run._mark(step.name, run.record.step(step.name))  # the attempt's start, if not written
        pending.outbox.extend(run.staged)
        run.staged = []
        pending.outbox.append(entry.encode())
        pending.fields["wait"] = wait.encode()
        pending.lease = spec.timeout
        await run.flush()
        run.record.wait = wait.encode()
        hooks = run.env.hooks
        if hooks is not None:  # the command is persisted (not yet published)
            await hooks.after(run.record, step.name, direction)
        if self.metrics is not None:
            labels = (self.metrics.service, run.saga.name, step.name, direction)
            self.metrics.sent.labels(*labels).inc()
        raise Suspended
