"""A consumer's first half: fetch records, make them items, claim them in bulk and hand
each partition's run to its lane, in fetch order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.lanes import Item, Lane
from nativekit.messaging._consume.marks import Marks
from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._dedup import Claim, ClaimStatus
from nativekit.messaging._errors import MessagingError
from nativekit.messaging._wire.broker import GroupConsumer, Record, TopicPartition
from nativekit.messaging._wire.envelope import MESSAGE_ID, Message, other_type

#: Fetched items and the future of their claims (None when not idempotent).
Batch = tuple[list[Item], asyncio.Future[list[Claim] | None] | None]


class Feeding:
    """Fetching, claiming and dispatching of a :class:`Consumer` (which sets the state)."""

    options: ConsumerOptions
    metrics: MessagingMetrics
    marks: Marks | None
    observers: list[Callable[[Item], None]]
    log: Any
    _gc: GroupConsumer | None
    _lanes: dict[TopicPartition, Lane]
    _owned: dict[str, Item]
    _wanted: frozenset[bytes] | None
    _in_flight: int
    _stopping: bool
    _error: str | None
    _capacity: asyncio.Event
    _commit_event: asyncio.Event
    _dispatching: Batch | None
    _batches: asyncio.Queue[Batch]
    _abandon: Callable[[Item], None]  # Finishing._abandon

    async def _fetch_loop(self) -> None:
        """Fetch and start each batch's claim; the dispatcher hands batches on in order,
        so the next fetch and the handlers overlap the dedup round trip."""
        while not self._stopping:
            try:
                room = self.options.max_in_flight - self._in_flight
                # Wait for room for a whole batch (a quarter of the window at most) rather
                # than fetch the few slots a flush freed: fewer, fuller dedup round trips.
                if room < min(self.options.fetch_max, self.options.max_in_flight // 4) or (
                    room <= 0
                ):
                    self._capacity.clear()
                    await self._capacity.wait()
                    continue
                gc = self._gc
                if gc is None:
                    return
                records = await gc.fetch(
                    wait=self.options.poll_timeout,
                    max_records=min(self.options.fetch_max, room),
                )
                self._error = None
                if records:
                    self._admit(records)
            except (BackendUnavailable, MessagingError) as exc:
                self._error = f"{type(exc).__name__}: {exc}"
                self.log.error("consumer.fetch_failed", error=self._error)
                await asyncio.sleep(1.0)

    def _admit(self, records: list[Record]) -> None:
        """Track fetched records of owned partitions and start claiming them.

        The idempotency key of a record is the user's ``dedup_key`` of its message, else
        its (first) ``message-id`` header, else its position. Per record this runs no
        Python call but the item's own (it is the consumer's hottest loop).
        """
        items: list[Item] = []
        skipped: list[Item] = []
        lanes, wanted, keyed = self._lanes, self._wanted, self.options.dedup_key
        topic, partition = "", -1
        lane: Lane | None = None
        offsets: list[int] = []  # fetched offsets of ``lane``, tracked in one call
        for record in records:
            if record.partition != partition or record.topic != topic:  # grouped by partition
                if lane is not None:
                    lane.offsets.add_many(offsets)
                topic, partition, offsets = record.topic, record.partition, []
                lane = lanes.get(TopicPartition(topic, partition))
                if lane is not None and lane.closed:
                    lane = None
            if lane is None:
                continue
            offsets.append(record.offset)
            if wanted is not None and other_type(record, wanted):
                skipped.append(Item(record, "", lane))  # neither claimed nor handled
                continue
            if keyed is not None:
                key = keyed(Message.from_record(record))
            else:
                for name, value in record.headers:
                    if name == MESSAGE_ID:
                        key = value.decode("utf-8", "replace")
                        break
                else:
                    key = f"{topic}:{partition}:{record.offset}"
            items.append(Item(record, key, lane))
        if lane is not None:
            lane.offsets.add_many(offsets)
        if skipped:
            self._skipped(skipped)
        if not items:
            return
        self._in_flight += len(items)
        self._batches.put_nowait((items, self._claim(items)))

    def _claim(self, items: list[Item]) -> asyncio.Future[list[Claim] | None] | None:
        """Start claiming ``items`` (None when the consumer is not idempotent)."""
        marks = self.marks
        if marks is None:
            return None
        return asyncio.ensure_future(marks.claim([i.key for i in items], lambda: self._stopping))

    def _skipped(self, items: list[Item]) -> None:
        """Count and report records of event types the handler does not take."""
        per_topic: dict[str, int] = {}
        for item in items:
            item.lane.offsets.finish(item.record.offset)
            item.outcome = "skipped"
            item.finish()
            per_topic[item.record.topic] = per_topic.get(item.record.topic, 0) + 1
        for topic, n in per_topic.items():
            self.metrics.count(topic, self.options.group, "skipped", n)
        self._commit_event.set()
        for observer in self.observers:
            for item in items:
                observer(item)

    async def _dispatch_loop(self) -> None:
        """Hand claimed batches to the partition lanes, in fetch order."""
        while True:
            if self._dispatching is None:  # else: the batch a failed claim left, again
                self._dispatching = await self._batches.get()
            items, claim = self._dispatching
            try:
                claims = await claim if claim is not None else None
            except Exception:
                self._dispatching = (items, self._claim(items))
                raise
            self._dispatching = None
            if claim is not None and claims is None:  # stopping while the store was down
                for item in items:
                    self._abandon(item)
                continue
            owned = self._owned
            if claims is not None:
                claimed = ClaimStatus.CLAIMED
                for item, answer in zip(items, claims, strict=True):
                    item.claim = answer
                    if answer.status is claimed:
                        owned[item.key] = item
            # Items come grouped by partition: hand each lane its run in one call.
            start = 0
            while start < len(items):
                lane = items[start].lane
                end = start + 1
                while end < len(items) and items[end].lane is lane:
                    end += 1
                run = items[start:end]
                start = end
                if lane.closed or self._lanes.get(lane.tp) is not lane:
                    for item in run:
                        self._abandon(item)
                else:
                    lane.put_many(run)
