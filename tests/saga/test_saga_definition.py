"""Defining sagas: decorators, policies, definition hashes, and the memory-backed test seam."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import nativekit
from nativekit import ConfigError
from nativekit.saga import Backoff, Policy, Saga, SagaContext, SagaInputError, SagaStatus, Step
from nativekit.testing import run_saga


class Order(BaseModel):
    """Input."""

    order_id: str


def test_step_decorator_keeps_the_function_callable_and_compensate_returns_it() -> None:
    """@saga.step returns a Step callable like the function; @step.compensate returns its input."""
    saga: Saga[Order] = Saga("s", input=Order)

    @saga.step(retries=2, timeout=3)
    async def reserve(ctx: SagaContext[Order]) -> int:
        """Reserve."""
        return 7

    async def release(ctx: SagaContext[Order]) -> None:
        return None

    assert reserve.compensate(release) is release
    assert isinstance(reserve, Step)
    assert reserve.__name__ == "reserve" and reserve.__doc__ == "Reserve."
    assert reserve.compensation is release
    assert (reserve.policy.retries, reserve.policy.timeout, reserve.policy.attempts) == (2, 3, 3)
    assert saga.get_step("reserve") is reserve and not reserve.pivot


async def test_step_object_can_be_awaited_directly() -> None:
    """Calling the step object calls the function (unit tests of a step need no runtime)."""
    saga: Saga[Order] = Saga("s", input=Order)

    @saga.step()
    async def quote(ctx: SagaContext[Order]) -> int:
        return 41 + 1

    assert await quote(None) == 42  # type: ignore[arg-type]


def test_compensate_accepts_its_own_policy() -> None:
    """@step.compensate(retries=..., timeout=...) sets the compensation's policy."""
    saga: Saga[Order] = Saga("s", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    @reserve.compensate(retries=9, timeout=2, no_retry=(KeyError,))
    async def release(ctx: SagaContext[Order]) -> None:
        return None

    assert reserve.compensation_policy.retries == 9
    assert reserve.compensation_policy.timeout == 2
    assert not reserve.compensation_policy.retryable(KeyError("x"))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda s: s.step()(lambda ctx: None), "must be an 'async def'"),
        (lambda s: s.step(retries=-1), "retries must be >= 0"),
        (lambda s: s.step(timeout=0), "timeout must be > 0"),
        (lambda s: s.step(no_retry=("x",)), "no_retry must hold exception types"),
        (lambda s: Backoff(factor=0.5), "Backoff"),
        (lambda s: Saga("bad name!"), "not valid"),
    ],
)
def test_wrong_definitions_raise_config_errors(build, message: str) -> None:
    """Misused decorators and policies raise ConfigError saying what to fix."""
    with pytest.raises(ConfigError, match=message):
        build(Saga("s"))


def test_duplicate_steps_and_readonly_compensations_are_refused() -> None:
    """Step names are unique, and a readonly step cannot have a compensation."""
    saga: Saga[Order] = Saga("s", input=Order)

    @saga.step(readonly=True)
    async def check(ctx: SagaContext[Order]) -> None:
        return None

    with pytest.raises(ConfigError, match="already has a step named 'check'"):
        saga.step(name="check")(check.func)
    with pytest.raises(ConfigError, match="readonly"):
        check.compensate(check.func)


def test_definition_hash_follows_step_names_and_compensations_only() -> None:
    """The hash changes with step names/order/compensations, not with policies."""

    def build(retries: int, names: tuple[str, ...], compensate: bool = True) -> str:
        saga: Saga[Order] = Saga("s", input=Order)
        for name in names:

            async def run(ctx: SagaContext[Order]) -> None:
                return None

            step = saga.step(name=name, retries=retries)(run)
            if compensate:
                step.compensate(run)
        return saga.definition_hash

    assert build(0, ("a", "b")) == build(5, ("a", "b"))
    assert build(0, ("a", "b")) != build(0, ("b", "a"))
    assert build(0, ("a", "b")) != build(0, ("a", "b"), compensate=False)


def test_policy_backoff_grows_and_is_capped() -> None:
    """Backoff doubles per failure up to its cap; jitter stays within the upper half."""
    backoff = Backoff(initial=1, factor=2, maximum=5, jitter=False)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    jittered = Backoff(initial=4, maximum=4)
    assert all(2 <= jittered.delay(1) <= 4 for _ in range(50))
    assert Policy(retries=2).attempts == 3


async def test_run_saga_runs_on_memory_backends() -> None:
    """nativekit.testing._sagas.run_saga runs a saga to its end without Redis."""
    saga: Saga[Order] = Saga("memory-only", input=Order)

    @saga.step()
    async def one(ctx: SagaContext[Order]) -> str:
        return ctx.data.order_id

    record = await run_saga(saga, {"order_id": "o-9"})
    assert record.status is SagaStatus.COMPLETED
    assert record.results == {"one": '"o-9"'}
    with pytest.raises(SagaInputError):
        await run_saga(saga, {"nope": 1})


async def test_service_refuses_a_saga_without_steps() -> None:
    """A registered saga with no steps fails the service start with a ConfigError."""
    svc = nativekit.Service(
        "empty", settings=nativekit.Settings(telemetry={"log_level": "WARNING"})
    )
    svc.saga("nothing")
    with pytest.raises(ConfigError, match="has no steps"):
        await svc.startup(hook_sigterm=False)
    await svc.shutdown()


def test_registering_two_current_definitions_of_one_name_is_refused() -> None:
    """Two current definitions under one name are refused; legacy=True is the way."""
    svc = nativekit.Service("twice")
    svc.saga("dup")
    with pytest.raises(ConfigError, match="legacy=True"):
        svc.add_saga(Saga("dup"))
    svc.add_saga(Saga("dup"), legacy=True)
