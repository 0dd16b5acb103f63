"""Saga definitions: ``Saga``, its steps and their compensations, and the step context."""

from __future__ import annotations

import hashlib
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from pydantic import TypeAdapter, ValidationError

from nativekit.errors import ConfigError
from nativekit.saga._define.policy import COMPENSATION_DEFAULT, DEFAULT_RETRIES, Backoff, Policy
from nativekit.saga._errors import SagaInputError

if TYPE_CHECKING:
    from nativekit.saga._define.command_steps import CommandStep

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

    @property
    def forward_key(self) -> str:
        """The idempotency key of this step's forward action, in either direction:
        what a compensation passes to a participant to name the effect it undoes."""
        return idempotency_key(self.saga_id, self.step, "forward")


class Step(Generic[P, R]):
    """A saga step: the decorated function (still callable as before) and its compensation."""

    def __init__(
        self,
        saga: Saga[Any],
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


class Saga(Generic[T]):
    """A named sequence of steps with compensations, run durably by ``svc.sagas``.

    Args:
        name: saga name (letters, digits, ``.``, ``_``, ``-``), stored with each instance.
        input: type of the saga input (a pydantic model or anything pydantic validates).
    """

    @overload
    def __init__(self: Saga[Any], name: str) -> None: ...

    @overload
    def __init__(self, name: str, *, input: type[T]) -> None: ...

    @overload
    def __init__(self: Saga[Any], name: str, *, input: Any) -> None: ...

    def __init__(self, name: str, *, input: Any = Any) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"Saga name {name!r} is not valid; use 1-100 letters, digits, '.', '_' or '-'."
            )
        self.name = name
        self.input_type: Any = input
        self._input = TypeAdapter(input)
        self.steps: list[Step[Any, Any]] = []
        self._by_name: dict[str, Step[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"<Saga {self.name} steps={[s.name for s in self.steps]}>"

    def step(
        self,
        *,
        name: str | None = None,
        retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        no_retry: tuple[type[BaseException], ...] = (),
        readonly: bool = False,
        max_interruptions: int | None = None,
    ) -> Callable[[Callable[[SagaContext[T]], Awaitable[R]]], Step[[SagaContext[T]], R]]:
        """Decorator: append an ``async def f(ctx: SagaContext[Input]) -> Result`` step.

        mypy checks the step's context against the saga's input type.

        Args:
            name: step name (default: the function name); steps are identified by name.
            retries: attempts after a failed one before the step counts as failed
                (default 3, with backoff; ``retries=0`` fails at the first exception).
            timeout: seconds one attempt may take; a timeout is a failure.
            backoff: waits between attempts (default: 0.1 s doubling, capped at 30 s).
            no_retry: exception types that fail the step at once (business refusals).
            readonly: the step changes nothing, so it needs no compensation and
                does not make the saga forward-only (see "pivot" in the docs).
            max_interruptions: times an attempt may be cut short by its process
                stopping (crash, SIGKILL) and re-run, without using up a retry, before
                the step fails (default ``NATIVEKIT_SAGA_MAX_INTERRUPTIONS``, 3).
        """
        policy = Policy(
            retries=retries,
            timeout=timeout,
            backoff=backoff or Backoff(),
            no_retry=no_retry,
            max_interruptions=max_interruptions,
        )

        def decorator(func: Callable[[SagaContext[T]], Awaitable[R]]) -> Step[[SagaContext[T]], R]:
            step_name: str = name or str(getattr(func, "__name__", ""))
            _check_async(func, f"step {step_name!r} of saga {self.name!r}")
            if not _NAME.match(step_name):
                raise ConfigError(f"Step name {step_name!r} of saga {self.name!r} is not valid.")
            if step_name in self._by_name:
                raise ConfigError(f"Saga {self.name!r} already has a step named {step_name!r}.")
            step = Step(self, func, name=step_name, policy=policy, readonly=readonly)
            self.steps.append(step)
            self._by_name[step_name] = step
            return step

        return decorator

    def command_step(
        self,
        *,
        topic: str,
        reply: type[Any] | None = None,
        reply_timeout: float = 10.0,
        retries: int = DEFAULT_RETRIES,
        backoff: Backoff | None = None,
        name: str | None = None,
        max_interruptions: int | None = None,
    ) -> Callable[[Callable[[SagaContext[T]], Awaitable[Any]]], CommandStep[[SagaContext[T]], Any]]:
        """Decorator: append a step that sends the command its function builds to ``topic``
        and completes with the participant's reply (see "Sagas across services").

        Args:
            topic: the participant's command topic.
            reply: pydantic model of the success reply (the step's stored result).
            reply_timeout: seconds to wait for the reply; a timeout is a failed attempt.
            retries: attempts after the first (timeouts only; a failure reply is final).
            backoff: waits between attempts.
            name: step name (default: the function name).
            max_interruptions: times the step may be cut short by its process stopping
                and re-sent, without using up a retry (default
                ``NATIVEKIT_SAGA_MAX_INTERRUPTIONS``).
        """
        from nativekit.saga._define.command_steps import command_step

        return command_step(
            self,
            topic=topic,
            reply=reply,
            reply_timeout=reply_timeout,
            retries=retries,
            backoff=backoff,
            name=name,
            max_interruptions=max_interruptions,
        )

    def get_step(self, name: str) -> Step[Any, Any] | None:
        """The step called ``name``, if this saga has one."""
        return self._by_name.get(name)

    @property
    def definition_hash(self) -> str:
        """Fingerprint of the step sequence; stored with each instance to detect changes."""
        shape = "|".join(
            f"{s.name}:{'c' if s.compensation else ('r' if s.readonly else 'p')}"
            for s in self.steps
        )
        return hashlib.sha256(f"{self.name}|{shape}".encode()).hexdigest()[:16]

    def validate_input(self, data: Any) -> T:
        """Validate ``data`` against the input type; raises :class:`SagaInputError`."""
        try:
            if isinstance(data, str | bytes):
                value: T = self._input.validate_json(data)
            else:
                value = self._input.validate_python(data)
        except ValidationError as exc:
            raise SagaInputError(f"Input of saga {self.name!r} is invalid: {exc}") from exc
        return value

    def encode_input(self, data: T) -> str:
        """JSON form of validated input."""
        return self._input.dump_json(data).decode()


def _check_async(func: Any, where: str) -> None:
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"The {where} must be an 'async def' function, got {func!r}.")
