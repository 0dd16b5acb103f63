"""Steps: a function with its compensation and policies, the context it gets, its key."""

from __future__ import annotations

import contextvars
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from pydantic import TypeAdapter

from nativekit._transaction import NO_TRANSACTION, Transaction
from nativekit.errors import ConfigError
from nativekit.saga._define.policy import COMPENSATION_DEFAULT, Backoff, Policy

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
R = TypeVar("R")
C = TypeVar("C")
P = ParamSpec("P")

Direction = Literal["forward", "compensate"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def idempotency_key(saga_id: str, step: str, direction: Direction = "forward") -> str:
    """The idempotency key of one direction of a step: ``"{saga_id}:{step}:{direction}"``.

    A compensation passes ``idempotency_key(ctx.saga_id, ctx.step)`` to name the
    forward action it undoes (see also :attr:`SagaContext.forward_key`).
    """
    return f"{saga_id}:{step}:{direction}"


@dataclass(frozen=True, slots=True)
class SagaContext(Generic[T_co]):
    """What a step action or compensation receives.

    Attributes:
        saga_id: id of the saga instance.
        saga: name of the saga.
        step: name of the step.
        direction: ``"forward"`` for the action, ``"compensate"`` for the compensation.
        data: the validated input of the saga.
        results: results of the steps completed before this one, by step name.
        idempotency_key: ``"{saga_id}:{step}:{direction}"``; identical on every attempt,
            after a crash and on any replica. Pass it to participants so they apply
            the effect once.
        attempt: 1 for the first attempt of this direction, 2 for the first retry, ...
        log: a structlog logger bound with ``saga``, ``saga_id`` and ``step``.
        db: the step's database transaction (``NATIVEKIT_DATABASE_URL``): what the step
            writes there commits together with the step's completion, or not at all.
            Begun on the first statement; without a database every use raises ConfigError.
    """

    saga_id: str
    saga: str
    step: str
    direction: Direction
    data: T_co
    results: Mapping[str, Any]
    idempotency_key: str
    attempt: int
    log: Any
    db: Transaction = NO_TRANSACTION

    async def sleep(self, delay: float | timedelta | datetime) -> None:
        """Sleep durably: ``delay`` seconds (or a ``timedelta``), or until a ``datetime``.

        No task is held while the saga sleeps: its state is persisted and the run
        ends; any replica's recovery resumes it at the wake-up time, re-running this
        step from its start (code before the sleep must be idempotent, as for a
        crash) with this call returning at once. The wake-up time is stored the
        first time the call is reached, so a re-run does not sleep again.
        """
        await _durable(self).sleep(self, delay)

    async def wait_for(
        self,
        event: str,
        *,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109
        type: Any = Any,
    ) -> Any:
        """Wait durably for the external ``event``, delivered with
        ``svc.sagas.signal(saga_id, event, payload)``; return its payload.

        Like :meth:`sleep`, the saga is parked without a task and this step re-runs
        from its start once the event arrives (or was delivered before). An event
        is delivered once per saga and name. Raises :class:`EventTimeout` (the step
        fails without retries) when ``timeout`` passes first.

        Args:
            event: the event's name (letters, digits, ``.``, ``_``, ``-``).
            timeout: seconds (or a ``timedelta``) to wait; None waits until the
                saga's deadline, if any, else without limit.
            type: validate the payload into this type (a pydantic model, ...).
        """
        return await _durable(self).wait_for(self, event, timeout, type)

    @property
    def forward_key(self) -> str:
        """The idempotency key of this step's forward action, in either direction:
        what a compensation passes to a participant to name the effect it undoes."""
        return idempotency_key(self.saga_id, self.step, "forward")


class Durable(Protocol):
    """What the running saga does for :meth:`SagaContext.sleep` and ``wait_for``."""

    async def sleep(self, ctx: SagaContext[Any], delay: float | timedelta | datetime) -> None:
        """Park the saga until the wake-up time (persisted), unless it passed."""

    async def wait_for(
        self,
        ctx: SagaContext[Any],
        event: str,
        timeout: float | timedelta | None,  # noqa: ASYNC109
        type: Any,
    ) -> Any:
        """The event's payload; park the saga until it arrives or the timeout passes."""

    async def child(self, ctx: SagaContext[Any], saga: Any, data: Any) -> dict[str, Any]:
        """Start (once) and wait for the child saga; its results, by step name."""

    async def compensate_child(self, ctx: SagaContext[Any]) -> None:
        """Compensate the child this step started, if it completed; wait for its end."""


#: Set by the runner for the duration of a step attempt.
durable_run: contextvars.ContextVar[Durable | None] = contextvars.ContextVar(
    "nativekit_saga_durable", default=None
)


def _durable(ctx: SagaContext[Any]) -> Durable:
    run = durable_run.get()
    if run is None:
        raise ConfigError(
            f"ctx.sleep() and ctx.wait_for() work inside a running saga step; step {ctx.step!r} "
            "was called outside of one (in a unit test, run the saga with "
            "nativekit.testing.run_saga)."
        )
    return run


class Grouping(Protocol):
    """What a step knows of its parallel group (``ParallelGroup``)."""

    @property
    def name(self) -> str:
        """The group's name."""

    @property
    def on_failure(self) -> Literal["cancel", "finish"]:
        """What the other members do when one fails."""

    @property
    def members(self) -> list[Step[Any, Any]]:
        """The member steps, in declaration order."""


class StepOwner(Protocol):
    """What a step knows of its saga: the name (for messages) and how to join it."""

    @property
    def name(self) -> str:
        """The saga's name."""

    def add_step(self, step: Step[Any, Any]) -> None:
        """Append ``step``; raises ConfigError for an invalid or taken name."""


class Step(Generic[P, R]):
    """A saga step: the decorated function (still callable as before) and its compensation."""

    def __init__(
        self,
        saga: StepOwner,
        func: Callable[P, Awaitable[R]],
        *,
        name: str,
        policy: Policy,
        readonly: bool,
    ) -> None:
        self.saga = saga
        self.func = func
        self.name = name
        self.policy = policy
        self.readonly = readonly
        self.compensation: Callable[..., Awaitable[Any]] | None = None
        self.compensation_policy = COMPENSATION_DEFAULT
        #: The parallel group this step belongs to, if any.
        self.group: Grouping | None = None
        hints = typing.get_type_hints(func)
        returns = hints.get("return", Any)
        self.result_type: TypeAdapter[Any] = TypeAdapter(Any if returns is None else returns)
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)
        self.__qualname__ = getattr(func, "__qualname__", name)
        self.__wrapped__ = func

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        """Call the step function directly (for example in a unit test)."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Step {self.saga.name}.{self.name}>"

    @property
    def pivot(self) -> bool:
        """True when completing this step means the saga can only go forward."""
        return self.compensation is None and not self.readonly

    @overload
    def compensate(self, func: Callable[P, Awaitable[C]]) -> Callable[P, Awaitable[C]]: ...

    @overload
    def compensate(
        self,
        *,
        retries: int = ...,
        timeout: float | None = ...,
        backoff: Backoff | None = ...,
        no_retry: tuple[type[BaseException], ...] = ...,
        max_interruptions: int | None = ...,
    ) -> Callable[[Callable[P, Awaitable[C]]], Callable[P, Awaitable[C]]]: ...

    def compensate(
        self,
        func: Any = None,
        *,
        retries: int = COMPENSATION_DEFAULT.retries,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        no_retry: tuple[type[BaseException], ...] = (),
        max_interruptions: int | None = None,
    ) -> Any:
        """Decorator: the function that undoes this step; returns it unchanged.

        Used bare (``@reserve.compensate``) or with its own policy
        (``@reserve.compensate(retries=10, timeout=5)``). Compensations default
        to 5 retries with backoff: they must not give up easily. An attempt
        interrupted by its process stopping is re-run without using up a retry, at
        most ``max_interruptions`` times (default ``NATIVEKIT_SAGA_MAX_INTERRUPTIONS``).
        The compensation takes the same context as the step (type-checked).
        """

        def register(fn: Callable[P, Awaitable[C]]) -> Callable[P, Awaitable[C]]:
            _check_async(fn, f"compensation of step {self.name!r}")
            if self.readonly:
                raise ConfigError(
                    f"Step {self.saga.name}.{self.name} is readonly=True; a readonly step "
                    "changes nothing and cannot have a compensation."
                )
            if self.compensation is not None:
                raise ConfigError(f"Step {self.saga.name}.{self.name} already has a compensation.")
            self.compensation = fn
            self.compensation_policy = Policy(
                retries=retries,
                timeout=timeout,
                backoff=backoff or COMPENSATION_DEFAULT.backoff,
                no_retry=no_retry,
                max_interruptions=max_interruptions,
            )
            return fn

        return register(func) if func is not None else register

    def decode_result(self, raw: str) -> Any:
        """A stored result, validated back into the step's return type."""
        return self.result_type.validate_json(raw)

    def encode_result(self, value: Any) -> str:
        """The JSON form of a step's return value."""
        return self.result_type.dump_json(value).decode()


def _check_async(func: Any, where: str) -> None:
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"The {where} must be an 'async def' function, got {func!r}.")
