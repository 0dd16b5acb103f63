"""Operating sagas on real Redis: HTTP operator API, retry/compensate/abort, definition changes."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel
from saga_support import FAST

import nativekit
from nativekit import ConfigError
from nativekit.saga import Saga, SagaContext, SagaStatus, StepStatus
from nativekit.saga._store.model import SagaRecord
from nativekit.testing import serve

pytestmark = pytest.mark.redis


class Order(BaseModel):
    """Input."""

    order_id: str


def flaky_saga(svc: nativekit.Service, broken: dict[str, bool], name: str = "ship") -> Saga[Order]:
    """reserve (compensated) then a pivot step that fails while ``broken['ship']``."""
    saga: Saga[Order] = svc.saga(name, input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    @reserve.compensate(retries=0)
    async def release(ctx: SagaContext[Order]) -> None:
        if broken.get("release"):
            raise ConnectionError("inventory down")

    @saga.step()
    async def notify(ctx: SagaContext[Order]) -> None:
        return None

    @saga.step(retries=0, backoff=FAST)
    async def ship(ctx: SagaContext[Order]) -> None:
        if broken.get("ship"):
            raise ConnectionError("carrier down")

    return saga


async def test_operator_api_is_off_unless_enabled(make_service) -> None:
    """Without NATIVEKIT_SAGA_OPERATOR_API the endpoints do not exist."""
    svc = make_service()
    flaky_saga(svc, {})
    async with serve(svc) as client:
        assert (await client.get("/_nativekit/sagas")).status_code == 404


async def test_operator_retry_resumes_a_failed_saga_forward(make_service) -> None:
    """POST …/retry gives the failed step a fresh policy and the saga completes."""
    svc = make_service(saga_operator_api=True, saga_operator_prefix="/ops/sagas")
    broken = {"ship": True}
    saga = flaky_saga(svc, broken)
    async with serve(svc) as client:
        record = await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id="p")).wait(5)
        assert record.status is SagaStatus.FAILED
        broken["ship"] = False
        answer = await client.post("/ops/sagas/p/retry")
        done = await svc.sagas.wait("p", 5)
        again = await client.post("/ops/sagas/p/retry")
        missing = await client.get("/ops/sagas/nope")
    assert answer.status_code == 200 and answer.json()["status"] == "RUNNING"
    assert done.status is SagaStatus.COMPLETED
    assert done.steps["ship"].attempts == 1
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert missing.status_code == 404


async def test_operator_compensate_rolls_back_after_fixing_a_compensation(make_service) -> None:
    """A FAILED saga whose compensation gave up is compensated again once the cause is fixed."""
    svc = make_service(saga_operator_api=True)
    broken = {"release": True}
    saga = svc.saga("undo", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    @reserve.compensate(retries=0)
    async def release(ctx: SagaContext[Order]) -> None:
        if broken["release"]:
            raise ConnectionError("inventory down")

    @saga.step()
    async def charge(ctx: SagaContext[Order]) -> None:
        raise PermissionError("card declined")

    @charge.compensate
    async def refund(ctx: SagaContext[Order]) -> None:
        return None

    async with serve(svc) as client:
        record = await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id="u")).wait(5)
        assert record.status is SagaStatus.FAILED
        refused = await client.post("/_nativekit/sagas/u/retry")
        broken["release"] = False
        answer = await client.post("/_nativekit/sagas/u/compensate")
        final = await svc.sagas.wait("u", 5)
    assert refused.status_code == 409 and "compensations" in refused.json()["detail"]
    assert answer.status_code == 200
    assert final.status is SagaStatus.COMPENSATED
    assert final.steps["reserve"].status is StepStatus.COMPENSATED


async def test_abort_fences_out_the_runner_and_stops_the_saga(make_service) -> None:
    """Aborting a RUNNING saga on another replica stops it there: its next write is refused."""
    entered, release = asyncio.Event(), asyncio.Event()
    runner, operator = make_service(), make_service(saga_operator_api=True)
    for svc in (runner, operator):
        saga = svc.saga("slow", input=Order)

        @saga.step()
        async def wait_here(ctx: SagaContext[Order]) -> None:
            entered.set()
            await release.wait()

        @saga.step()
        async def after(ctx: SagaContext[Order]) -> None:
            raise AssertionError("must not run after abort")

    async with serve(runner), serve(operator) as client:
        handle = await runner.sagas.start("slow", {"order_id": "o"}, saga_id="a")
        await entered.wait()
        answer = await client.post("/_nativekit/sagas/a/abort", json={"reason": "customer left"})
        run_task = runner.sagas.runs["a"][1]
        release.set()
        await asyncio.gather(run_task, return_exceptions=True)
        record = await handle.wait(5)
    assert answer.status_code == 200
    assert record.status is SagaStatus.ABORTED and record.error == "customer left"
    assert record.steps["wait_here"].status is StepStatus.RUNNING


async def test_list_endpoint_filters_and_pages(make_service) -> None:
    """GET the list with status, name, limit and cursor; bad parameters are a 422."""
    svc = make_service(saga_operator_api=True)
    saga = flaky_saga(svc, {})
    async with serve(svc) as client:
        for n in range(3):
            await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id=f"l{n}")).wait(5)
        first = (await client.get("/_nativekit/sagas", params={"limit": 2})).json()
        rest = (
            await client.get("/_nativekit/sagas", params={"limit": 2, "cursor": first["cursor"]})
        ).json()
        old = (await client.get("/_nativekit/sagas", params={"older_than": 3600})).json()
        bad = await client.get("/_nativekit/sagas", params={"status": "SLEEPING"})
    ids = [i["saga_id"] for i in first["items"] + rest["items"]]
    assert sorted(ids) == ["l0", "l1", "l2"] and rest["cursor"] is None
    assert old["items"] == []
    assert bad.status_code == 422


async def test_changed_definition_with_live_instances_is_refused(make_service) -> None:
    """A service whose saga changed while old instances still run refuses to start."""
    old = make_service()
    saga = old.saga("evolving", input=Order)
    gate = asyncio.Event()

    @saga.step()
    async def first(ctx: SagaContext[Order]) -> None:
        await gate.wait()

    new = make_service()
    changed = new.saga("evolving", input=Order)

    @changed.step()
    async def renamed(ctx: SagaContext[Order]) -> None:
        return None

    async with serve(old):
        await old.sagas.start(saga, {"order_id": "o"})
        await old.sagas.start(saga, {"order_id": "p"})
        with pytest.raises(ConfigError, match=r"Saga 'evolving' changed .* 2 instance\(s\)"):
            await new.startup(hook_sigterm=False)
        await new.shutdown()

        legacy = make_service()
        legacy.add_saga(changed)
        legacy.add_saga(saga, legacy=True)
        await legacy.startup(hook_sigterm=False)  # the old definition is still registered
        await legacy.shutdown()
        gate.set()


async def test_readiness_warns_when_the_recovery_backlog_grows(make_service) -> None:
    """/readyz reports the saga backlog and warns above NATIVEKIT_SAGA_BACKLOG_WARN."""
    svc = make_service(saga_backlog_warn=0, saga_recovery_interval=60)
    saga = flaky_saga(svc, {})
    async with serve(svc) as client:
        store = svc.sagas.store
        now = time.time()
        orphan = SagaRecord("orphan", saga.name, "unknown-def", SagaStatus.RUNNING, "{}", now, now)
        await store.create(orphan, token="dead", lease=0.001)
        async with asyncio.timeout(5):
            while await store.backlog() < 1:  # noqa: ASYNC110 - the lease expires on Redis' clock
                await asyncio.sleep(0.01)
        body = (await client.get("/readyz")).json()
    check = body["checks"]["sagas:recovery"][0]
    assert check["status"] == "warn" and check["observedValue"] >= 1
    assert body["status"] == "warn"


async def test_operator_compensate_cancels_a_running_saga_including_its_step_in_flight(
    make_service,
) -> None:
    """Compensating a RUNNING saga undoes the step in flight (outcome unknown) and earlier ones."""
    entered, release = asyncio.Event(), asyncio.Event()
    undone: list[str] = []
    runner, operator = make_service(), make_service(saga_operator_api=True)
    for svc in (runner, operator):
        saga = svc.saga("cancel", input=Order)

        @saga.step()
        async def reserve(ctx: SagaContext[Order]) -> None:
            return None

        @reserve.compensate
        async def release_stock(ctx: SagaContext[Order]) -> None:
            undone.append(ctx.idempotency_key)

        @saga.step()
        async def charge(ctx: SagaContext[Order]) -> None:
            entered.set()
            await release.wait()

        @charge.compensate
        async def refund(ctx: SagaContext[Order]) -> None:
            undone.append(ctx.idempotency_key)

    async with serve(runner), serve(operator) as client:
        await runner.sagas.start("cancel", {"order_id": "o"}, saga_id="k")
        await entered.wait()
        answer = await client.post("/_nativekit/sagas/k/compensate")
        record = await operator.sagas.wait("k", 5)
        release.set()
        await asyncio.gather(*(t for _, t in runner.sagas.runs.values()), return_exceptions=True)
        final = await runner.sagas.get("k")
    assert answer.status_code == 200
    assert record.status is SagaStatus.COMPENSATED
    assert undone == ["k:charge:compensate", "k:reserve:compensate"]
    assert final.status is SagaStatus.COMPENSATED  # the fenced runner changed nothing after
    assert final.steps["charge"].uncertain


async def test_aborted_saga_can_be_retried_forward(make_service) -> None:
    """POST …/abort without a body parks a FAILED saga as ABORTED; retry resumes it forward."""
    svc = make_service(saga_operator_api=True)
    broken = {"ship": True}
    saga = flaky_saga(svc, broken)
    async with serve(svc) as client:
        await (await svc.sagas.start(saga, {"order_id": "o"}, saga_id="ab")).wait(5)
        aborted = await client.post("/_nativekit/sagas/ab/abort")
        broken["ship"] = False
        await client.post("/_nativekit/sagas/ab/retry")
        final = await svc.sagas.wait("ab", 5)
    assert aborted.json()["status"] == "ABORTED"
    assert aborted.json()["error"] == "aborted by an operator"
    assert final.status is SagaStatus.COMPLETED
