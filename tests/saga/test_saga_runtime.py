"""Running sagas on real Redis: success, compensation, retries, timeouts, policies, states."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel
from saga_support import FAST, Participant

import nativekit
from nativekit.saga import (
    Backoff,
    Saga,
    SagaContext,
    SagaInputError,
    SagaStatus,
    StepStatus,
)
from nativekit.testing import serve

pytestmark = pytest.mark.redis

STEPS = ("reserve", "charge", "ship")


class Order(BaseModel):
    """Saga input of the tests."""

    order_id: str
    fail_at: str | None = None


class Receipt(BaseModel):
    """A step result that is a pydantic model."""

    step: str
    key: str


def three_steps(
    svc: nativekit.Service,
    participant: Participant,
    *,
    failures: dict[str, int] | None = None,
    compensation_failures: dict[str, int] | None = None,
    retries: int = 0,
    comp_retries: int = 3,
    timeout: float | None = None,
    slow: str | None = None,
    no_retry: tuple[type[BaseException], ...] = (),
) -> Saga[Order]:
    """A saga of three compensated steps; ``failures[step]`` makes its first n attempts raise."""
    saga: Saga[Order] = svc.saga("place-order", input=Order)
    failures = dict(failures or {})
    compensation_failures = dict(compensation_failures or {})

    def action(name: str) -> Callable[[SagaContext[Order]], Any]:
        async def run(ctx: SagaContext[Order]) -> Receipt:
            if slow == name:
                await asyncio.sleep(5)
            if ctx.data.fail_at == name:
                raise PermissionError(f"{name} refused")
            if failures.get(name, 0) > 0:
                failures[name] -= 1
                raise ConnectionError(f"{name} unavailable")
            participant.apply(ctx.idempotency_key)
            return Receipt(step=name, key=ctx.idempotency_key)

        run.__name__ = name
        return run

    def undo(name: str) -> Callable[[SagaContext[Order]], Any]:
        async def run(ctx: SagaContext[Order]) -> None:
            if compensation_failures.get(name, 0) > 0:
                compensation_failures[name] -= 1
                raise ConnectionError(f"undo {name} unavailable")
            participant.apply(ctx.idempotency_key)

        return run

    for name in STEPS:
        step = saga.step(retries=retries, timeout=timeout, backoff=FAST, no_retry=no_retry)(
            action(name)
        )
        step.compensate(retries=comp_retries, backoff=FAST)(undo(name))
    return saga


def keys(saga_id: str, *parts: str) -> list[str]:
    """Idempotency keys ``saga_id:step:direction`` for ``step:direction`` parts."""
    return [f"{saga_id}:{part}" for part in parts]


async def test_happy_path_completes_every_step_once(make_service, participant) -> None:
    """A saga whose steps succeed ends COMPLETED with each step run once, in order."""
    svc = make_service()
    saga = three_steps(svc, participant)
    async with serve(svc):
        handle = await svc.sagas.start(saga, {"order_id": "o-1"}, saga_id="happy")
        record = await handle.wait(5)
    assert handle.created
    assert record.status is SagaStatus.COMPLETED
    assert participant.calls == keys("happy", "reserve:forward", "charge:forward", "ship:forward")
    assert [record.steps[s].status for s in STEPS] == [StepStatus.COMPLETED] * 3
    assert all(record.steps[s].attempts == 1 for s in STEPS)
    assert record.order == list(STEPS)


@pytest.mark.parametrize("failing", STEPS)
async def test_failure_compensates_completed_steps_in_reverse(
    make_service, participant, failing: str
) -> None:
    """A step that fails compensates exactly the steps completed before it, latest first."""
    svc = make_service()
    saga = three_steps(svc, participant)
    async with serve(svc):
        handle = await svc.sagas.start(saga, {"order_id": "o", "fail_at": failing}, saga_id="f")
        record = await handle.wait(5)
    done = list(STEPS[: STEPS.index(failing)])
    expected = [f"{s}:forward" for s in done] + [f"{s}:compensate" for s in reversed(done)]
    assert record.status is SagaStatus.COMPENSATED
    assert participant.calls == keys("f", *expected)
    assert record.steps[failing].status is StepStatus.FAILED
    assert "PermissionError: " + failing + " refused" in (record.error or "")


async def test_retry_then_success_does_not_compensate(make_service, participant) -> None:
    """A step failing twice and then succeeding within its retries completes the saga."""
    svc = make_service()
    saga = three_steps(svc, participant, failures={"charge": 2}, retries=2)
    async with serve(svc):
        record = await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id="r")).wait(5)
    assert record.status is SagaStatus.COMPLETED
    assert record.steps["charge"].attempts == 3
    assert not [k for k in participant.calls if k.endswith(":compensate")]


async def test_timeout_counts_as_failure(make_service, participant) -> None:
    """An attempt exceeding its timeout fails the step and the saga compensates."""
    svc = make_service()
    saga = three_steps(svc, participant, timeout=0.1, slow="charge")
    async with serve(svc):
        record = await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id="t")).wait(5)
    assert record.status is SagaStatus.COMPENSATED
    assert record.steps["charge"].uncertain
    assert record.steps["charge"].status is StepStatus.COMPENSATED
    assert "StepTimeout" in (record.steps["charge"].error or "")
    # a timed-out attempt may have acted: it is compensated too, before the earlier step
    assert participant.calls == keys(
        "t", "reserve:forward", "charge:compensate", "reserve:compensate"
    )


async def test_non_retryable_exception_compensates_at_once(make_service, participant) -> None:
    """An exception listed in no_retry skips the remaining retries."""
    svc = make_service()
    saga = three_steps(svc, participant, retries=5, no_retry=(PermissionError,))
    async with serve(svc):
        handle = await svc.sagas.start(saga, {"order_id": "o", "fail_at": "charge"})
        record = await handle.wait(5)
    assert record.status is SagaStatus.COMPENSATED
    assert record.steps["charge"].attempts == 1


async def test_compensation_failing_then_succeeding_compensates(make_service, participant) -> None:
    """A compensation that fails twice is retried and the saga still ends COMPENSATED."""
    svc = make_service()
    saga = three_steps(svc, participant, compensation_failures={"reserve": 2}, comp_retries=3)
    async with serve(svc):
        handle = await svc.sagas.start(saga, {"order_id": "o", "fail_at": "ship"}, saga_id="c")
        record = await handle.wait(5)
    assert record.status is SagaStatus.COMPENSATED
    assert record.steps["reserve"].compensation_attempts == 3
    assert participant.calls[-2:] == keys("c", "charge:compensate", "reserve:compensate")


async def test_compensation_exhausted_parks_failed_for_operators(make_service, participant) -> None:
    """A compensation exhausting its policy parks the saga FAILED, visible via the operator API."""
    svc = make_service(saga_operator_api=True)
    saga = three_steps(svc, participant, compensation_failures={"reserve": 99}, comp_retries=1)
    async with serve(svc) as client:
        handle = await svc.sagas.start(saga, {"order_id": "o", "fail_at": "charge"}, saga_id="x")
        record = await handle.wait(5)
        listed = await client.get("/_nativekit/sagas", params={"status": "FAILED"})
        one = await client.get("/_nativekit/sagas/x")
        metrics = (await client.get("/metrics")).text
    assert record.status is SagaStatus.FAILED
    assert "compensation of step 'reserve' exhausted" in (record.error or "")
    assert listed.status_code == 200
    assert [item["saga_id"] for item in listed.json()["items"]] == ["x"]
    body = one.json()
    assert body["status"] == "FAILED"
    assert body["steps"]["reserve"]["status"] == "compensation_failed"
    assert body["steps"]["reserve"]["error"] == "ConnectionError: undo reserve unavailable"
    assert 'sagas_failed_total{saga="place-order",service="orders"} 1.0' in metrics



async def test_parked_sagas_are_counted_by_status_for_alerts(make_service, participant) -> None:
    """``nativekit_sagas_stored`` counts unfinished instances per status from the store:
    0 FAILED before, 1 FAILED once a saga is parked, whichever replica parked it."""
    from tests.unit.test_metrics import samples

    svc = make_service()
    saga = three_steps(svc, participant, compensation_failures={"reserve": 99}, comp_retries=1)

    def stored(text: str) -> dict[str, float]:
        found = samples(text, "nativekit_sagas_stored")
        return {dict(labels)["status"]: value for labels, value in found.items()}

    async with serve(svc) as client:
        await svc.sagas.census()
        before = stored((await client.get("/metrics")).text)
        handle = await svc.sagas.start(saga, {"order_id": "o", "fail_at": "charge"}, saga_id="x")
        assert (await handle.wait(5)).status is SagaStatus.FAILED
        await svc.sagas.census()
        after = stored((await client.get("/metrics")).text)
        durations = samples((await client.get("/metrics")).text, "saga_duration_seconds_count")
    assert before == {"RUNNING": 0.0, "COMPENSATING": 0.0, "FAILED": 0.0}
    assert after == {"RUNNING": 0.0, "COMPENSATING": 0.0, "FAILED": 1.0}
    assert {dict(labels)["outcome"]: n for labels, n in durations.items()} == {"failed": 1.0}

async def test_starting_an_existing_id_returns_it_without_running_again(
    make_service, participant
) -> None:
    """Starting a saga id twice runs it once; the second call reports created=False."""
    svc = make_service()
    saga = three_steps(svc, participant)
    async with serve(svc):
        first = await svc.sagas.start(saga, {"order_id": "o"}, saga_id="dup")
        await first.wait(5)
        second = await svc.sagas.start(saga, {"order_id": "other"}, saga_id="dup")
        record = await second.wait(5)
    assert (first.created, second.created) == (True, False)
    assert len(participant.calls) == 3
    assert record.status is SagaStatus.COMPLETED


async def test_concurrent_starts_of_one_id_return_after_it_is_stored(
    make_service, participant
) -> None:
    """Concurrent starts of one id run it once, and each caller can read the instance at once."""
    svc = make_service()
    saga = three_steps(svc, participant)

    async def start_then_read() -> tuple[Any, Any]:
        handle = await svc.sagas.start(saga, {"order_id": "o"}, saga_id="race")
        return handle, await svc.sagas.get("race")

    async with serve(svc):
        pairs = await asyncio.gather(*(start_then_read() for _ in range(10)))
        handles = [h for h, _ in pairs]
        records = [r for _, r in pairs]
        await handles[0].wait(5)
    assert sorted(h.created for h in handles) == [False] * 9 + [True]
    assert all(r is not None and r.saga_id == "race" for r in records)
    assert len(participant.calls) == 3


async def test_invalid_input_is_rejected_before_anything_is_stored(
    make_service, participant
) -> None:
    """Input failing validation raises SagaInputError and stores no instance."""
    svc = make_service()
    saga = three_steps(svc, participant)
    async with serve(svc):
        with pytest.raises(SagaInputError, match="order_id"):
            await svc.sagas.start(saga, {"fail_at": "x"}, saga_id="bad")
        page = await svc.sagas.list()
    assert page.items == []
    assert participant.calls == []


async def test_steps_see_typed_results_of_earlier_steps(make_service) -> None:
    """ctx.results holds earlier results validated back into their return types."""
    svc = make_service()
    saga = svc.saga("typed", input=Order)
    seen: list[Any] = []

    @saga.step()
    async def quote(ctx: SagaContext[Order]) -> Receipt:
        return Receipt(step="quote", key=ctx.idempotency_key)

    @saga.step(readonly=True)
    async def check(ctx: SagaContext[Order]) -> None:
        seen.append(ctx.results["quote"])

    async with serve(svc):
        record = await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id="ty")).wait(5)
    assert record.status is SagaStatus.COMPLETED
    assert seen == [Receipt(step="quote", key="ty:quote:forward")]


async def test_failure_after_pivot_parks_failed_instead_of_compensating(make_service) -> None:
    """Once a step without compensation completed, a later failure cannot roll back: FAILED."""
    svc = make_service()
    saga = svc.saga("pivot", input=Order)
    undone: list[str] = []

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    @reserve.compensate
    async def release(ctx: SagaContext[Order]) -> None:
        undone.append(ctx.step)

    @saga.step()
    async def send_email(ctx: SagaContext[Order]) -> None:
        return None

    @saga.step(retries=1, backoff=FAST)
    async def archive(ctx: SagaContext[Order]) -> None:
        raise OSError("disk full")

    async with serve(svc):
        record = await (await svc.sagas.start(saga, {"order_id": "o"})).wait(5)
    assert record.status is SagaStatus.FAILED
    assert "after pivot step 'send_email'" in (record.error or "")
    assert record.steps["archive"].attempts == 2
    assert undone == []


async def test_wait_times_out_for_a_saga_still_running(make_service, participant) -> None:
    """wait() raises TimeoutError when the saga does not end in time."""
    svc = make_service()
    saga = three_steps(svc, participant, slow="reserve")
    async with serve(svc):
        handle = await svc.sagas.start(saga, {"order_id": "o"})
        with pytest.raises(TimeoutError, match="still RUNNING"):
            await handle.wait(0.1)
        await svc.sagas.abort(handle.saga_id)


async def test_saga_and_step_spans_are_children_of_the_caller(
    make_service, participant, spans
) -> None:
    """One span per saga run and one per step attempt, under the span that started it."""
    from opentelemetry import trace

    svc = make_service()
    saga = three_steps(svc, participant, failures={"reserve": 1}, retries=1)
    async with serve(svc):
        with trace.get_tracer("test").start_as_current_span("request") as parent:
            handle = await svc.sagas.start(saga, {"order_id": "o"})
        await handle.wait(5)
    finished = {s.name: s for s in spans.get_finished_spans()}
    run = finished["saga place-order"]
    assert run.parent is not None
    assert run.parent.span_id == parent.get_span_context().span_id
    steps = [s for s in spans.get_finished_spans() if s.name.startswith("saga.step")]
    assert [s.name for s in steps] == [
        "saga.step reserve",
        "saga.step reserve",
        "saga.step charge",
        "saga.step ship",
    ]
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in steps)
    assert steps[0].status.status_code.name == "ERROR"


async def test_metrics_count_sagas_and_time_steps(make_service, participant) -> None:
    """Started/completed/compensated counters and the step histogram are on /metrics."""
    svc = make_service()
    saga = three_steps(svc, participant)
    async with serve(svc) as client:
        await (await svc.sagas.start(saga, {"order_id": "o"})).wait(5)
        await (await svc.sagas.start(saga, {"order_id": "o", "fail_at": "ship"})).wait(5)
        text = (await client.get("/metrics")).text
    labels = 'saga="place-order",service="orders"'
    assert f"sagas_started_total{{{labels}}} 2.0" in text
    assert f"sagas_completed_total{{{labels}}} 1.0" in text
    assert f"sagas_compensated_total{{{labels}}} 1.0" in text
    assert 'sagas_in_flight{service="orders"} 0.0' in text
    assert (
        'saga_step_duration_seconds_count{direction="forward",outcome="ok",'
        'saga="place-order",service="orders",step="reserve"} 2.0'
    ) in text


class PeerDown(Exception):
    """A participant that did not answer: it may have applied the request."""

    uncertain = True


@pytest.mark.parametrize(("first", "compensated"), [(PeerDown, True), (ValueError, False)])
async def test_an_unknown_outcome_stays_uncertain_after_a_plain_failure(
    make_service: Callable[..., nativekit.Service], first: type[Exception], compensated: bool
) -> None:
    """A step whose first attempt raised an exception marked ``uncertain`` and whose last
    raised a plain error is compensated (the first may have taken effect); two plain
    failures are not."""
    svc = make_service()
    saga = svc.saga("sticky")
    calls: list[str] = []

    @saga.step(retries=1, backoff=Backoff(0.01, 1.0, 0.01, jitter=False))
    async def charge(ctx: SagaContext[Any]) -> None:
        calls.append(f"forward:{ctx.attempt}")
        raise (first if len(calls) == 1 else RuntimeError)("no")

    @charge.compensate
    async def refund(ctx: SagaContext[Any]) -> None:
        calls.append("compensate")

    async with serve(svc):
        record = await (await svc.sagas.start(saga, {}, saga_id="u")).wait(5)
    assert record.status is SagaStatus.COMPENSATED
    assert record.steps["charge"].uncertain is compensated
    assert calls == ["forward:1", "forward:2", *(["compensate"] if compensated else [])]
