"""Items and the per-partition queues they wait in: sequential by default, or concurrent
with order kept per key."""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nativekit.messaging._consume.offsets import PartitionOffsets
from nativekit.messaging._wire.broker import Record, TopicPartition

if TYPE_CHECKING:
    from nativekit.messaging._consume.metrics import ConsumeOutcome
    from nativekit.messaging._dedup import Claim, FinalState

#: Handles a run of items from the head of a queue (popping each before it starts).
Worker = Callable[["deque[Item]"], Awaitable[None]]


class _Queue:
    """One sequential worker: a deque drained by a task that sleeps when it is empty.

    The worker takes the deque itself and handles a run of items from its head, so a
    message costs no task or coroutine of the queue's own.
    """

    def __init__(self, worker: Worker) -> None:
        self.items: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self._worker = worker

    def extend(self, batch: list[Item]) -> None:
        items = self.items
        was_empty = not items
        items.extend(batch)
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        elif was_empty:  # the worker waits only when the deque is empty
            self.wake.set()

    async def _run(self) -> None:
        items = self.items
        while not self.closed:
            if not items:
                self.wake.clear()
                await self.wake.wait()
                continue
            await self._worker(items)
            if items:  # let I/O (dedup replies, fetches) in between long runs
                await asyncio.sleep(0)


class Lane:
    """The work of one assigned partition.

    ``width`` queues each run one message at a time; a record goes to the queue
    of its key's hash, so records with one key keep their order while different
    keys proceed concurrently. ``width=1`` is strictly sequential.
    """

    def __init__(
        self,
        tp: TopicPartition,
        offsets: PartitionOffsets,
        width: int,
        worker: Worker,
    ) -> None:
        self.tp = tp
        self.offsets = offsets
        self.closed = False
        self._width = width
        self._queues = [_Queue(worker) for _ in range(width)]

    def _index(self, item: Item) -> int:
        if self._width == 1:
            return 0
        key = item.record.key
        return (zlib.crc32(key) if key is not None else item.record.offset) % self._width

    def put_many(self, items: list[Item]) -> None:
        """Queue ``items`` (in fetch order) behind earlier records of the same keys."""
        if self._width == 1:
            self._queues[0].extend(items)
            return
        runs: dict[int, list[Item]] = {}
        for item in items:
            runs.setdefault(self._index(item), []).append(item)
        for index, run in runs.items():
            self._queues[index].extend(run)

    def queued_behind(self, running: Item, other: Item) -> bool:
        """True if ``other`` waits in the queue of ``running`` (a handler running in
        this lane), so it cannot start before ``running`` finished."""
        if other.lane is not self or running.lane is not self:
            return False
        index = self._index(other)
        return index == self._index(running) and other in self._queues[index].items

    async def drain(self, grace: float) -> list[Item]:
        """Stop taking work: return queued items not started, let running ones finish.

        Running handlers get ``grace`` seconds; then they are cancelled.
        """
        self.closed = True
        dropped: list[Item] = []
        for queue in self._queues:
            dropped += queue.items
            queue.items.clear()
            queue.closed = True
            queue.wake.set()
        tasks = [q.task for q in self._queues if q.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return dropped


class Item:
    """A fetched record on its way through the consumer."""

    __slots__ = (
        "attempts",
        "claim",
        "elapsed",
        "error",
        "finished",
        "key",
        "lane",
        "outcome",
        "record",
        "state",
        "waiter",
    )

    def __init__(self, record: Record, key: str, lane: Lane) -> None:
        self.record = record
        self.key = key
        self.lane = lane
        self.claim: Claim | None = None
        self.outcome: ConsumeOutcome | None = None  # set when the item finished
        self.attempts = 0
        self.elapsed: float | None = None  # the successful attempt's duration, observed in bulk
        self.error: str | None = None
        self.state: FinalState | None = None  # what to write when it finished (None: nothing)
        self.finished = False
        #: set when the item settles; created only when another copy waits for it
        self.waiter: asyncio.Event | None = None

    def finish(self) -> None:
        """Mark the item settled (finished or abandoned) and wake waiting copies."""
        self.finished = True
        if self.waiter is not None:
            self.waiter.set()

    async def wait(self) -> None:
        """Wait until the item is settled."""
        if self.finished:
            return
        if self.waiter is None:
            self.waiter = asyncio.Event()
        await self.waiter.wait()
