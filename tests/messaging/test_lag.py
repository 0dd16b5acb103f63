"""nativekit_consumer_lag tells the truth on the real broker: it rises behind a stuck
handler (nothing commits) and falls to 0 once the handler catches up."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from nativekit import Service
from nativekit.testing import serve
from tests.messaging.conftest import eventually, kafka_settings, new_topic

pytestmark = pytest.mark.kafka


class Job(BaseModel):
    """The event."""

    n: int


async def test_lag_rises_behind_a_stuck_handler(kafka_url: str, unique: str) -> None:
    """Messages piling up behind a handler that does not return raise the lag gauge
    although nothing commits; once released it drops to 0."""
    topic = await new_topic(kafka_url, f"lag-{unique}", 1)
    group = f"lag-{unique}"
    svc = Service("lagging", settings=kafka_settings(kafka_url, consumer_lag_interval=0.1))
    entered, release = asyncio.Event(), asyncio.Event()

    @svc.consumer(topic, group=group)
    async def stuck(event: Job) -> None:
        entered.set()
        await release.wait()

    def lag() -> float | None:
        return svc.metrics.registry.get_sample_value(
            "nativekit_consumer_lag",
            {"service": "lagging", "topic": topic, "group": group, "partition": "0"},
        )

    async with serve(svc):
        for n in range(5):
            await svc.publish(topic, Job(n=n))
        await asyncio.wait_for(entered.wait(), 30)
        await eventually(lambda: lag() == 5, what="lag of 5")
        for n in range(5, 12):
            await svc.publish(topic, Job(n=n))
        await eventually(lambda: lag() == 12, what="lag of 12")
        release.set()
        await eventually(lambda: lag() == 0, what="lag back to 0")
