"""Child steps: a step that runs another saga and completes with its outcome.

::

    @place_order.child(take_payment)
    async def payment(ctx: SagaContext[PlaceOrder]) -> Charge:
        return Charge(order_id=ctx.data.order_id, amount=ctx.data.amount)

The function builds the child's input. The child's id is derived from the
parent (``"{parent_id}:{step}"``), so a retried or recovered parent finds the
child it started instead of starting a second one. The parent waits while the
child runs in the same process; when the child parks (a timer, an event, a
command reply) or runs elsewhere, the parent parks too and is woken by the
child's end. The step's result is the child's results (by step name); a child
that does not complete fails the step (:class:`ChildSagaFailed`, not retried).
The step's compensation compensates a completed child and waits until it is
COMPENSATED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic import TypeAdapter

from nativekit.saga._define.policy import DEFAULT_RETRIES, Backoff, Policy
from nativekit.saga._define.step import SagaContext, Step, StepOwner, _check_async, _durable

T = TypeVar("T")
C = TypeVar("C")


class ChildDefinition(Protocol):
    """What a child step needs of the child saga (a ``Saga``)."""

    @property
    def name(self) -> str:
        """The child saga's name."""


class ChildStep(Step[[SagaContext[Any]], dict[str, Any]]):
    """A step that starts the ``child`` saga with the input its function builds."""

    child: Any
    build: Callable[..., Awaitable[Any]]


def child_step(
    saga: StepOwner,
    child: ChildDefinition,
    *,
    name: str | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: Backoff | None = None,
    max_interruptions: int | None = None,
) -> Callable[[Callable[[SagaContext[T]], Awaitable[C]]], ChildStep]:
    """Append a child step to ``saga`` (see :meth:`nativekit.Saga.child`)."""
    policy = Policy(
        retries=retries, backoff=backoff or Backoff(), max_interruptions=max_interruptions
    )

    def decorator(func: Callable[[SagaContext[T]], Awaitable[C]]) -> ChildStep:
        step_name: str = name or str(getattr(func, "__name__", ""))
        _check_async(func, f"child step {step_name!r} of saga {saga.name!r}")

        async def forward(ctx: SagaContext[Any]) -> dict[str, Any]:
            data = await func(ctx)
            return await _durable(ctx).child(ctx, child, data)

        async def compensate(ctx: SagaContext[Any]) -> None:
            await _durable(ctx).compensate_child(ctx)

        step = ChildStep(saga, forward, name=step_name, policy=policy, readonly=False)
        step.child = child
        step.build = func
        step.compensation = compensate
        step.result_type = TypeAdapter(dict[str, Any])
        saga.add_step(step)
        return step

    return decorator


def child_id(parent: str, step: str) -> str:
    """The id of the child saga that step ``step`` of saga ``parent`` starts."""
    return f"{parent}:{step}"
