"""Parallel groups: steps of one saga that run concurrently and are joined.

::

    reserve = place_order.parallel("reserve", on_failure="cancel")

    @reserve.step(retries=3)
    async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> None: ...

    @reserve.step()
    async def authorize_payment(ctx: SagaContext[PlaceOrder]) -> None: ...

Members are ordinary steps (each with its own policy and compensation), kept
next to each other in the saga's step list; the runner starts every member
not yet completed at once and goes on once all completed. A member can be a
command step (``@group.command_step(...)``): its command is sent with the other
members' and the saga parks, holding no task, until every reply or deadline is in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

from nativekit.errors import ConfigError
from nativekit.saga._define.command_steps import CommandStep
from nativekit.saga._define.policy import DEFAULT_RETRIES, Backoff
from nativekit.saga._define.step import _NAME, SagaContext, Step

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound=Step[Any, Any])

#: What the other members of a group do when one fails: be cancelled (their outcome is then
#: uncertain, so they are compensated too) or finish their attempt first.
OnFailure = Literal["cancel", "finish"]


class GroupOwner(Protocol[T]):
    """What a group needs of its saga (``Saga``): its name, steps and step decorator."""

    @property
    def name(self) -> str:
        """The saga's name."""

    @property
    def steps(self) -> list[Step[Any, Any]]:
        """The saga's steps in order."""

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
        """Decorator appending a step."""

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
        """Decorator appending a command step."""


class ParallelGroup(Generic[T]):
    """Steps of one saga that run at the same time; made by :meth:`Saga.parallel`.

    Args:
        saga: the saga the members join.
        name: the group's name (shown in the step history of its members).
        on_failure: ``"cancel"`` the running members when one fails (default), or let them
            ``"finish"`` their attempt before the saga compensates.
    """

    def __init__(self, saga: GroupOwner[T], name: str, on_failure: OnFailure) -> None:
        if not _NAME.match(name):
            raise ConfigError(f"Parallel group name {name!r} of saga {saga.name!r} is not valid.")
        if on_failure not in ("cancel", "finish"):
            raise ConfigError(
                f"on_failure={on_failure!r} of parallel group {name!r} is not valid; "
                "expected 'cancel' or 'finish'."
            )
        self.saga = saga
        self.name = name
        self.on_failure: OnFailure = on_failure
        self.members: list[Step[Any, Any]] = []

    def __repr__(self) -> str:
        return f"<ParallelGroup {self.saga.name}.{self.name} {[s.name for s in self.members]}>"

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
        """Decorator: add a member step (same options as :meth:`Saga.step`).

        Declare the members of a group one after another: a step declared on the
        saga in between would split the group.
        """
        register = self.saga.step(
            name=name,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            no_retry=no_retry,
            readonly=readonly,
            max_interruptions=max_interruptions,
        )

        def decorator(func: Callable[[SagaContext[T]], Awaitable[R]]) -> Step[[SagaContext[T]], R]:
            self._check_next(str(name or getattr(func, "__name__", "?")))
            return self._join(register(func))

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
        """Decorator: add a member that sends the command its function builds to ``topic``
        (same options as :meth:`Saga.command_step`).

        The commands of the group's command members are written together when the
        group parks; each reply is fenced to its member's attempt and stored with the
        saga, which resumes once every member has its reply or its deadline passed.
        A failure reply or a timeout (after its retries) fails the member, and the
        group follows ``on_failure``; a compensation command
        (``@member.compensate_command``) undoes a completed member.
        """
        register = self.saga.command_step(
            topic=topic,
            reply=reply,
            reply_timeout=reply_timeout,
            retries=retries,
            backoff=backoff,
            name=name,
            max_interruptions=max_interruptions,
        )

        def decorator(
            func: Callable[[SagaContext[T]], Awaitable[Any]],
        ) -> CommandStep[[SagaContext[T]], Any]:
            self._check_next(str(name or getattr(func, "__name__", "?")))
            step = register(func)
            self._join(step)
            return step

        return decorator

    def _check_next(self, name: str) -> None:
        if self.members and self.saga.steps[-1] is not self.members[-1]:
            raise ConfigError(
                f"Step {name!r} of parallel group {self.name!r} comes after step "
                f"{self.saga.steps[-1].name!r}, which is not in the group; declare the "
                "members of a group one after another."
            )

    def _join(self, step: S) -> S:
        step.group = self
        self.members.append(step)
        return step
