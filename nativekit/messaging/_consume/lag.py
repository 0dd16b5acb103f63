"""``nativekit_consumer_lag``: records of a partition the group has not committed yet.

Measured on a timer from the broker's end offsets and the group's position (its
committed offset, or the first record fetched before anything was committed),
so a consumer stuck behind a slow handler shows a rising lag even though
nothing commits. Partitions that moved to another member stop being reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.lanes import Lane
from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._wire.broker import GroupConsumer, TopicPartition


class LagReporter:
    """Sets the lag gauge of one consumer's assigned partitions every ``interval`` seconds."""

    def __init__(
        self,
        metrics: MessagingMetrics,
        group: str,
        lanes: Callable[[], Mapping[TopicPartition, Lane]],
        *,
        interval: float,
        log: Any,
    ) -> None:
        self.metrics = metrics
        self.group = group
        self.lanes = lanes
        self.interval = interval
        self.log = log
        self._reported: set[TopicPartition] = set()
        #: The last reading of each reported partition: (position, end offset).
        self.readings: dict[TopicPartition, tuple[int, int]] = {}

    async def run(self, gc: GroupConsumer) -> None:
        """Report until cancelled (a broker that does not answer skips a round)."""
        try:
            while True:
                try:
                    await self.report(gc)
                except BackendUnavailable as exc:
                    self.log.warning("consumer.lag_unknown", error=str(exc))
                await asyncio.sleep(self.interval)
        finally:
            self.forget(set(self._reported))

    async def report(self, gc: GroupConsumer) -> None:
        """Measure and set the lag of every assigned partition once."""
        lanes = dict(self.lanes())
        self.forget(self._reported - set(lanes))
        if not lanes:
            return
        ends = await gc.end_offsets(list(lanes))
        for tp, lane in lanes.items():
            position = lane.offsets.floor()
            if position is None:
                position = await gc.committed(tp)
            end = ends.get(tp)
            if position is None or end is None:
                continue
            self._gauge(tp).set(max(0, end - position))
            self._reported.add(tp)
            self.readings[tp] = (position, end)

    def _gauge(self, tp: TopicPartition) -> Any:
        return self.metrics.lag.labels(
            self.metrics.service, tp.topic, self.group, str(tp.partition)
        )

    def forget(self, tps: set[TopicPartition]) -> None:
        """Stop reporting ``tps`` (revoked, or the consumer stopped)."""
        for tp in tps:
            self.metrics.lag.remove(self.metrics.service, tp.topic, self.group, str(tp.partition))
            self._reported.discard(tp)
            self.readings.pop(tp, None)
