"""Leases on real Redis: renewal keeps long steps owned, shutdown hands sagas over at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel

from nativekit.saga import SagaContext, SagaStatus
from nativekit.testing import serve

pytestmark = pytest.mark.redis


class Job(BaseModel):
    """Input."""

    n: int


async def test_lease_renewal_keeps_a_long_step_on_its_replica(make_service) -> None:
    """A step outlasting several lease periods is not recovered by another replica."""
    calls: list[str] = []
    services = [make_service(saga_lease_seconds=0.3), make_service(saga_lease_seconds=0.3)]
    for index, svc in enumerate(services):
        saga = svc.saga("long", input=Job)

        @saga.step()
        async def slow(ctx: SagaContext[Job], index: int = index) -> None:
            calls.append(f"replica-{index}")
            await asyncio.sleep(1.2)

    first, second = services
    async with serve(first), serve(second):
        handle = await first.sagas.start("long", {"n": 1})
        record = await second.sagas.wait(handle.saga_id, 10)
    assert record.status is SagaStatus.COMPLETED
    assert calls == ["replica-0"]


async def test_shutdown_releases_running_sagas_to_other_replicas(make_service) -> None:
    """A replica stopping mid-saga releases its lease; another replica finishes the saga soon."""
    entered = asyncio.Event()
    runs: list[str] = []
    leaving = make_service(shutdown_grace=0.05, saga_lease_seconds=30)
    staying = make_service(saga_lease_seconds=30)
    for svc, name in ((leaving, "leaving"), (staying, "staying")):
        saga = svc.saga("handover", input=Job)

        @saga.step(retries=0)  # the handover is an interruption, not a failed attempt
        async def work(ctx: SagaContext[Job], name: str = name) -> None:
            runs.append(name)
            if name == "leaving":
                entered.set()
                await asyncio.sleep(60)

    async with serve(staying):
        async with serve(leaving):
            handle = await leaving.sagas.start("handover", {"n": 1})
            await entered.wait()
        stopped = time.monotonic()
        record = await staying.sagas.wait(handle.saga_id, 10)
    assert record.status is SagaStatus.COMPLETED
    assert runs == ["leaving", "staying"]
    assert time.monotonic() - stopped < 5  # far sooner than the 30 s lease
    assert (record.steps["work"].attempts, record.steps["work"].interruptions) == (2, 1)
