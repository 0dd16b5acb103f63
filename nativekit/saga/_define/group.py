"""Parallel groups: steps of one saga that run concurrently and are joined.

::

    reserve = place_order.parallel("reserve", on_failure="cancel")

    @reserve.step(retries=3)
    async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> None: ...

    @reserve.step()
    async def authorize_payment(ctx: SagaContext[PlaceOrder]) -> None: ...

Members are ordinary steps (each with its own policy and compensation), kept
next to each other in the saga's step list; the runner starts every member
not yet completed at once and goes on once all completed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

from nativekit.errors import ConfigError
from nativekit.saga._define.policy import DEFAULT_RETRIES, Backoff
from nativekit.saga._define.step import _NAME, SagaContext, Step

T = TypeVar("T")
R = TypeVar("R")

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
            if self.members and self.saga.steps[-1] is not self.members[-1]:
                raise ConfigError(
                    f"Step {name or getattr(func, '__name__', '?')!r} of parallel group "
                    f"{self.name!r} comes after step {self.saga.steps[-1].name!r}, which is not "
                    "in the group; declare the members of a group one after another."
                )
            step = register(func)
            step.group = self
            self.members.append(step)
            return step

        return decorator
