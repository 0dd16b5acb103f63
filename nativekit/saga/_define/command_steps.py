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

import functools
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, TypeAdapter

from nativekit.errors import ConfigError
from nativekit.saga._define.policy import COMPENSATION_DEFAULT, DEFAULT_RETRIES, Backoff, Policy
from nativekit.saga._define.step import Direction, Step, StepOwner, _check_async
from nativekit.saga._errors import CommandFailed, CommandTimeout

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")
T = TypeVar("T")


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
    saga: StepOwner,
    *,
    topic: str,
    reply: type[BaseModel] | None = None,
    reply_timeout: float = 10.0,
    retries: int = DEFAULT_RETRIES,
    backoff: Backoff | None = None,
    name: str | None = None,
    max_interruptions: int | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], CommandStep[..., Any]]:
    """Append a command step to ``saga`` (see :meth:`nativekit.Saga.command_step`)."""
    spec = _spec(topic, reply, reply_timeout)
    policy = Policy(
        retries=retries, backoff=backoff or Backoff(), max_interruptions=max_interruptions
    )

    def decorator(func: Callable[..., Awaitable[Any]]) -> CommandStep[..., Any]:
        step_name: str = name or str(getattr(func, "__name__", ""))
        _check_async(func, f"command step {step_name!r} of saga {saga.name!r}")
        returns = typing.get_type_hints(func).get("return")
        if not (isinstance(returns, type) and issubclass(returns, BaseModel)):
            raise ConfigError(
                f"Command step {step_name!r} must be annotated to return the command's "
                "pydantic model, e.g. '-> ReserveStock'."
            )
        step: CommandStep[..., Any] = CommandStep(
            saga, func, name=step_name, policy=policy, readonly=False
        )
        step.command = spec
        step.result_type = spec.adapter
        saga.add_step(step)
        return step

    return decorator


def spec_of(step: Step[Any, Any], direction: Direction) -> CommandSpec | None:
    """The command spec of ``step`` in ``direction``, None for a local function."""
    if not isinstance(step, CommandStep):
        return None
    return step.command if direction == "forward" else step.compensation_command


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
