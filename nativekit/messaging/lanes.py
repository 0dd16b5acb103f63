"""Per-partition work queues: sequential by default, or concurrent with order kept per key."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nativekit.messaging.broker import TopicPartition
from nativekit.messaging.offsets import PartitionOffsets

if TYPE_CHECKING:
    from nativekit.messaging.pipeline import Item


class Lane:
    """The work of one assigned partition.

    ``width`` sub-queues each run one message at a time; a record goes to the
    sub-queue of its key's hash, so records with one key keep their order while
    different keys proceed concurrently. ``width=1`` is strictly sequential.
    """

    def __init__(
        self,
        tp: TopicPartition,
        offsets: PartitionOffsets,
        width: int,
        worker: Callable[[Item], Awaitable[None]],
    ) -> None:
        self.tp = tp
        self.offsets = offsets
        self.closed = False
        self._width = width
        self._worker = worker
        self._queues: list[asyncio.Queue[Item | None]] = [asyncio.Queue() for _ in range(width)]
        self._tasks: list[asyncio.Task[None] | None] = [None] * width

    def put(self, item: Item) -> None:
        """Queue ``item`` behind earlier records of the same key."""
        index = 0
        if self._width > 1:
            key = item.record.key
            index = (zlib.crc32(key) if key is not None else item.record.offset) % self._width
        self._queues[index].put_nowait(item)
        if self._tasks[index] is None:
            self._tasks[index] = asyncio.create_task(self._run(self._queues[index]))

    async def _run(self, queue: asyncio.Queue[Item | None]) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            await self._worker(item)

    async def drain(self, grace: float) -> list[Item]:
        """Stop taking work: return queued items not started, let running ones finish.

        Running handlers get ``grace`` seconds; then they are cancelled.
        """
        self.closed = True
        dropped: list[Item] = []
        for queue in self._queues:
            while not queue.empty():
                item = queue.get_nowait()
                if item is not None:
                    dropped.append(item)
            queue.put_nowait(None)
        tasks = [t for t in self._tasks if t is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return dropped
