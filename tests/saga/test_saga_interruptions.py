"""An attempt cut short by a process stop is an interruption, not a failure: it is re-run
without using up a retry, up to ``max_interruptions``; past that the step fails."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from nativekit._telemetry.logging import configure_logging
from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.cli._sagas import describe
from nativekit.errors import ConfigError
from nativekit.saga import Saga, SagaContext, SagaRecord, SagaStatus
from nativekit.saga._define.policy import Policy
from nativekit.saga._operator.admin import compensate_change, retry_change
from nativekit.saga._run.commands import CommandDriver
from nativekit.saga._run.runner import Run
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._run.state import RunEnv
from nativekit.saga._run.telemetry import SagaMetrics
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.model import StepRecord, StepStatus, Waiting
from nativekit.saga._store.store import SagaStore
from nativekit.settings import Settings
from nativekit.testing import capture_logs

#: A step record exactly as nativekit wrote it before interruptions were counted.
OLD_RUNNING = '{"status":"running","attempts":1,"started_at":1700000000.5,"uncertain":true}'


class Job(BaseModel):
    """Input."""

    n: int = 0


def ordering(calls: list[str], *, refuse_once: bool = False) -> Saga[Job]:
    """reserve (compensated) then confirm (a pivot: no compensation), default options."""
    saga: Saga[Job] = Saga("ordering", input=Job)

    @saga.step()
    async def reserve(ctx: SagaContext[Job]) -> None:
        calls.append(f"reserve:{ctx.attempt}")

    @reserve.compensate
    async def release(ctx: SagaContext[Job]) -> None:
        calls.append(f"release:{ctx.attempt}")

    @saga.step(retries=1)
    async def confirm(ctx: SagaContext[Job]) -> None:
        calls.append(f"confirm:{ctx.attempt}")
        if refuse_once and calls.count(f"confirm:{ctx.attempt}") == 1 and ctx.attempt == 2:
            raise ConnectionError("participant briefly unreachable")

    return saga


def runtime_for(
    saga: Saga[Any], store: SagaStore | None = None, **options: Any
) -> tuple[SagaRuntime, CollectorRegistry]:
    """A runtime on ``store`` (memory by default) that registers ``saga``."""
    registry = CollectorRegistry()
    runtime = SagaRuntime(
        "orders",
        store or MemorySagaStore(),
        lease=5,
        metrics=SagaMetrics(registry, "orders"),
        tracing=False,
        **options,
    )
    runtime.declare(saga)
    return runtime, registry


async def crashed(
    runtime: SagaRuntime,
    saga: Saga[Any],
    steps: dict[str, StepRecord],
    *,
    status: SagaStatus = SagaStatus.RUNNING,
    saga_id: str = "s-1",
) -> SagaRecord:
    """Store an instance as a killed process left it (lease expired), recover and finish it."""
    now = time.time()
    record = SagaRecord(
        saga_id=saga_id,
        name=saga.name,
        definition=saga.definition_hash,
        status=status,
        input=Job().model_dump_json(),
        created_at=now,
        updated_at=now,
        steps=steps,
        order=[n for n, s in steps.items() if s.status is StepStatus.COMPLETED],
    )
    await runtime.store.create(record, token="dead", lease=0.001)
    await asyncio.sleep(0.01)
    assert await runtime.recover() == 1
    return await runtime.wait(saga_id, 10)


async def test_an_interrupted_step_without_retries_left_is_rerun_not_failed() -> None:
    """A pivot step killed mid-attempt with no retries is re-run on recovery and completes."""
    calls: list[str] = []
    saga = ordering(calls)
    runtime, registry = runtime_for(saga)
    steps = {
        "reserve": StepRecord(StepStatus.COMPLETED, attempts=1),
        "confirm": StepRecord(StepStatus.RUNNING, attempts=2, interruptions=0, uncertain=True),
    }
    configure_logging(Settings(_env_file=None), "orders", force=True)
    with capture_logs() as logs:
        record = await crashed(runtime, saga, steps)
    assert record.status is SagaStatus.COMPLETED, record.error
    confirm = record.steps["confirm"]
    assert (confirm.attempts, confirm.interruptions, confirm.uncertain) == (3, 1, False)
    assert calls == ["confirm:3"]
    events = [e for e in logs if e["event"] == "saga.step.interrupted"]
    assert [(e["step"], e["attempt"], e["interruptions"]) for e in events] == [("confirm", 2, 1)]
    labels = {"service": "orders", "saga": "ordering", "step": "confirm", "direction": "forward"}
    assert registry.get_sample_value("saga_step_interruptions_total", labels) == 1
    assert record.to_dict()["steps"]["confirm"]["interruptions"] == 1  # the operator API
    assert "3 (1 interrupted)" in describe(record)  # nativekit sagas show


async def test_an_interruption_leaves_the_retries_to_real_failures() -> None:
    """After an interruption, a failing re-run still gets the step's whole retry budget."""
    calls: list[str] = []
    saga = ordering(calls, refuse_once=True)
    runtime, _ = runtime_for(saga)
    steps = {
        "reserve": StepRecord(StepStatus.COMPLETED, attempts=1),
        "confirm": StepRecord(StepStatus.RUNNING, attempts=1, uncertain=True),
    }
    record = await crashed(runtime, saga, steps)
    assert record.status is SagaStatus.COMPLETED, record.error
    assert calls == ["confirm:2", "confirm:3"]  # the failed attempt 2 was retried (retries=1)
    assert (record.steps["confirm"].attempts, record.steps["confirm"].interruptions) == (3, 1)


async def test_past_the_bound_a_compensable_step_is_compensated_with_the_reason() -> None:
    """A step interrupted once more than max_interruptions fails and the saga compensates it."""
    calls: list[str] = []
    saga = ordering(calls)
    runtime, _ = runtime_for(saga, max_interruptions=2)
    steps = {"reserve": StepRecord(StepStatus.RUNNING, attempts=3, interruptions=2)}
    record = await crashed(runtime, saga, steps)
    assert record.status is SagaStatus.COMPENSATED
    assert "kept killing its process" in (record.error or "")
    reserve = record.steps["reserve"]
    assert (reserve.status, reserve.interruptions, reserve.uncertain) == (
        StepStatus.COMPENSATED,
        3,
        True,
    )
    assert "max_interruptions=2" in (reserve.error or "")
    assert calls == ["release:1"]  # never run again; its uncertain effect is undone


async def test_past_the_bound_a_pivot_step_parks_the_saga_failed() -> None:
    """A pivot step (no compensation) that keeps killing its process parks the saga FAILED."""
    calls: list[str] = []
    saga = ordering(calls)
    runtime, _ = runtime_for(saga)  # default: 3 interruptions are re-run
    steps = {
        "reserve": StepRecord(StepStatus.COMPLETED, attempts=1),
        "confirm": StepRecord(StepStatus.RUNNING, attempts=4, interruptions=3),
    }
    record = await crashed(runtime, saga, steps)
    assert record.status is SagaStatus.FAILED
    assert "confirm" in (record.error or "") and "kept killing its process" in (record.error or "")
    assert calls == []


async def test_a_step_override_of_max_interruptions_wins_over_the_setting() -> None:
    """@saga.step(max_interruptions=1) fails at the second interruption despite the setting."""
    calls: list[str] = []
    saga: Saga[Job] = Saga("strict", input=Job)

    @saga.step(max_interruptions=1)
    async def reserve(ctx: SagaContext[Job]) -> None:
        calls.append("reserve")

    @reserve.compensate
    async def release(ctx: SagaContext[Job]) -> None:
        calls.append("release")

    runtime, _ = runtime_for(saga, max_interruptions=10)
    steps = {"reserve": StepRecord(StepStatus.RUNNING, attempts=2, interruptions=1)}
    record = await crashed(runtime, saga, steps)
    assert record.status is SagaStatus.COMPENSATED
    assert calls == ["release"]
    assert "max_interruptions=1" in (record.steps["reserve"].error or "")


async def test_an_interrupted_compensation_is_rerun_and_bounded_too() -> None:
    """A compensation cut short is re-run without a retry; past the bound the saga is FAILED."""
    calls: list[str] = []
    saga = ordering(calls)
    runtime, _ = runtime_for(saga, max_interruptions=2)
    first = {
        "reserve": StepRecord(
            StepStatus.COMPENSATING, attempts=1, compensation_attempts=5, uncertain=True
        )
    }
    record = await crashed(runtime, saga, first, status=SagaStatus.COMPENSATING)
    assert record.status is SagaStatus.COMPENSATED  # counted as a failure, attempt 6 was the last
    assert record.steps["reserve"].compensation_interruptions == 1
    assert calls == ["release:6"]
    last = {
        "reserve": StepRecord(
            StepStatus.COMPENSATING,
            attempts=1,
            compensation_attempts=3,
            compensation_interruptions=2,
            uncertain=True,
        )
    }
    record = await crashed(runtime, saga, last, status=SagaStatus.COMPENSATING, saga_id="s-2")
    assert record.status is SagaStatus.FAILED
    assert "kept killing its process" in (record.error or "")
    assert record.steps["reserve"].status is StepStatus.COMPENSATION_FAILED


async def test_operator_actions_give_a_fresh_interruption_budget() -> None:
    """retry and compensate reset the interruptions of what they run again."""
    failed = SagaRecord(
        "s", "x", "d", SagaStatus.FAILED, "{}", 0.0, 0.0,
        steps={"a": StepRecord(StepStatus.FAILED, attempts=4, interruptions=4)},
    )  # fmt: skip
    retry_change(failed)
    assert (failed.steps["a"].attempts, failed.steps["a"].interruptions) == (0, 0)
    parked = SagaRecord(
        "s", "x", "d", SagaStatus.FAILED, "{}", 0.0, 0.0,
        steps={"a": StepRecord(StepStatus.COMPENSATION_FAILED, compensation_attempts=4,
                               compensation_interruptions=4)},
    )  # fmt: skip
    compensate_change(parked)
    assert parked.steps["a"].compensation_interruptions == 0


def test_max_interruptions_must_allow_one_rerun() -> None:
    """max_interruptions=0 is refused: an interrupted attempt is always re-run at least once."""
    with pytest.raises(ConfigError, match="max_interruptions"):
        Policy(max_interruptions=0)


def test_step_records_load_old_and_unknown_fields() -> None:
    """A step record without interruption counts loads as zero; unknown keys are ignored."""
    old = StepRecord.from_json(OLD_RUNNING)
    assert (old.status, old.attempts, old.interruptions) == (StepStatus.RUNNING, 1, 0)
    assert old.to_json() == OLD_RUNNING  # zero counts are not written: old readers load it
    newer = StepRecord.from_json('{"status":"failed","attempts":2,"added_later":7}')
    assert newer.attempts == 2


@pytest.mark.redis
async def test_a_record_written_by_the_old_code_recovers_on_redis(
    redis_url: str, unique: str
) -> None:
    """An instance stored before interruptions were counted loads and completes on real Redis."""
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"test:interrupt:{unique}"
    calls: list[str] = []
    saga = ordering(calls)
    try:
        store = RedisSagaStore(client, prefix=prefix, shards=2)
        runtime, _ = runtime_for(saga, store)
        steps = {
            "reserve": StepRecord(StepStatus.COMPLETED, attempts=1),
            "confirm": StepRecord.from_json(OLD_RUNNING),
        }
        record = await crashed(runtime, saga, steps)
        assert record.status is SagaStatus.COMPLETED, record.error
        assert calls == ["confirm:2"]
        stored = await client.hget(store._record_key("s-1"), "step:confirm")
        assert json.loads(stored)["interruptions"] == 1
    finally:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def test_a_reply_deadline_missed_while_the_replica_was_down_is_an_interruption() -> None:
    """A reply deadline of a wait written before this replica listened is unheard, not a timeout."""
    saga = ordering([])
    step = saga.steps[0]
    env = RunEnv(MemorySagaStore(), "orders", 5, 60, None, None)
    for written, listening, unheard in ((100.0, 200.0, True), (300.0, 200.0, False)):
        record = SagaRecord("s", saga.name, "d", SagaStatus.RUNNING, "{}", 0.0, 0.0)
        record.wait = Waiting("reserve", "forward", 1, "t", 5.0, written).encode()
        driver = CommandDriver("replies", lambda _: None)
        driver.listening_since = lambda at=listening: at
        outcome = driver.outcome(Run(env, saga, record, "tok"), step, "forward")
        assert outcome is not None and outcome.timed_out
        assert outcome.unheard is unheard
