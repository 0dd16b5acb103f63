"""``Saga``: a named sequence of steps with compensations, and its definition hash."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from pydantic import TypeAdapter, ValidationError

from nativekit.errors import ConfigError
from nativekit.saga._define.child_steps import ChildStep, child_step
from nativekit.saga._define.command_steps import CommandStep, command_step
from nativekit.saga._define.group import OnFailure, ParallelGroup
from nativekit.saga._define.policy import DEFAULT_RETRIES, Backoff, Policy
from nativekit.saga._define.step import _NAME, SagaContext, Step, _check_async
from nativekit.saga._errors import SagaInputError

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")
P = ParamSpec("P")


#: A duration: seconds, a ``timedelta``, or None for none.
Deadline = float | timedelta | None


def seconds_of(value: Deadline, what: str) -> float | None:
    """``value`` in seconds (None stays None); raises ConfigError unless positive and finite."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"The {what} must be a positive duration, got {value!r}.")
    return seconds


class Saga(Generic[T]):
    """A named sequence of steps with compensations, run durably by ``svc.sagas``.

    Args:
        name: saga name (letters, digits, ``.``, ``_``, ``-``), stored with each instance.
        input: type of the saga input (a pydantic model or anything pydantic validates).
        deadline: how long an instance may take (seconds or a ``timedelta``); past it,
            the saga stops moving forward and compensates (``sagas.start`` may override it).
        version: the definition's version. Register every version that still has
            instances in flight: new instances run the highest, each instance keeps
            the version it started with (see "Versions" in the docs).
    """

    @overload
    def __init__(
        self: Saga[Any], name: str, *, deadline: Deadline = None, version: int | None = None
    ) -> None: ...

    @overload
    def __init__(
        self, name: str, *, input: type[T], deadline: Deadline = None, version: int | None = None
    ) -> None: ...

    @overload
    def __init__(
        self: Saga[Any],
        name: str,
        *,
        input: Any,
        deadline: Deadline = None,
        version: int | None = None,
    ) -> None: ...

    def __init__(
        self, name: str, *, input: Any = Any, deadline: Deadline = None, version: int | None = None
    ) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"Saga name {name!r} is not valid; use 1-100 letters, digits, '.', '_' or '-'."
            )
        if version is not None and (isinstance(version, bool) or version < 1):
            raise ConfigError(f"version of saga {name!r} must be an integer >= 1, got {version!r}.")
        self.name = name
        #: The definition's version (None: unversioned); kept in its definition hash.
        self.version = version
        #: Seconds an instance may take before it stops moving forward and compensates.
        self.deadline = seconds_of(deadline, f"deadline of saga {name!r}")
        self.input_type: Any = input
        self._input = TypeAdapter(input)
        self.steps: list[Step[Any, Any]] = []
        self._by_name: dict[str, Step[Any, Any]] = {}

    def __repr__(self) -> str:
        version = "" if self.version is None else f" v{self.version}"
        return f"<Saga {self.name}{version} steps={[s.name for s in self.steps]}>"

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
            step = Step(self, func, name=step_name, policy=policy, readonly=readonly)
            self.add_step(step)
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

    def child(
        self,
        saga: Saga[C],
        *,
        name: str | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: Backoff | None = None,
        max_interruptions: int | None = None,
    ) -> Callable[[Callable[[SagaContext[T]], Awaitable[C]]], ChildStep]:
        """Decorator: append a step that runs the child ``saga`` with the input its function
        builds and completes with the child's results (see "Child sagas" in the docs).

        The child's id is ``"{saga_id}:{step}"``: a retried parent never starts two.
        If the child does not complete, the step fails (no retries); when the parent
        compensates, a completed child is compensated.
        """
        return child_step(
            self,
            saga,
            name=name,
            retries=retries,
            backoff=backoff,
            max_interruptions=max_interruptions,
        )

    def parallel(
        self, name: str | None = None, *, on_failure: OnFailure = "cancel"
    ) -> ParallelGroup[T]:
        """A group of steps that run concurrently, joined before the next step starts.

        Add members with ``@group.step(...)``, one after another. When a member fails,
        ``on_failure="cancel"`` cancels the others (their outcome is then uncertain,
        so they are compensated too); ``"finish"`` lets them finish their attempt.
        Every completed member is compensated, latest first.
        """
        return ParallelGroup(self, name or f"group-{len(self.steps) + 1}", on_failure)

    def add_step(self, step: Step[Any, Any]) -> None:
        """Append ``step`` (built by a decorator); its name must be valid and free."""
        if not _NAME.match(step.name):
            raise ConfigError(f"Step name {step.name!r} of saga {self.name!r} is not valid.")
        if step.name in self._by_name:
            raise ConfigError(f"Saga {self.name!r} already has a step named {step.name!r}.")
        self.steps.append(step)
        self._by_name[step.name] = step

    def get_step(self, name: str) -> Step[Any, Any] | None:
        """The step called ``name``, if this saga has one."""
        return self._by_name.get(name)

    @property
    def definition_hash(self) -> str:
        """Fingerprint of the step sequence; stored with each instance to detect changes."""
        shape = "|".join(
            f"{s.name}:{'c' if s.compensation else ('r' if s.readonly else 'p')}"
            + (f"@{s.group.name}" if s.group is not None else "")
            for s in self.steps
        )
        digest = hashlib.sha256(f"{self.name}|{shape}".encode()).hexdigest()[:16]
        return digest if self.version is None else f"v{self.version}-{digest}"

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
