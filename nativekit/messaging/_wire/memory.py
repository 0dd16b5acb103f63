"""An in-process broker with Kafka's semantics: partitions, keys, offsets, groups, commits.

It is the reference implementation of :class:`~nativekit.messaging._wire.broker.Broker`:
records are hashed to partitions by key (murmur2, as Kafka's default
partitioner), each consumer group keeps committed offsets, members joining or
leaving trigger an eager rebalance (every member's ``on_revoked`` runs before
any ``on_assigned``), and a member that :meth:`MemoryGroupConsumer.crash`\\ es
leaves without committing, so its uncommitted records are redelivered.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nativekit.messaging._wire.broker import (
    Headers,
    RebalanceCallback,
    Record,
    Sent,
    TopicPartition,
)


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash Kafka's default partitioner applies to keys."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """Partition of ``key`` among ``partitions``, as Kafka's default partitioner picks it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Group:
    members: list[MemoryGroupConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    generation: int = 0


class MemoryBroker:
    """Topics, partitions and consumer groups in this process.

    Args:
        default_partitions: partitions of a topic created implicitly (by a send
            or a subscription to an unknown topic).
    """

    def __init__(self, *, default_partitions: int = 1) -> None:
        self.default_partitions = default_partitions
        self.topics: dict[str, list[list[Record]]] = {}
        self.groups: dict[str, _Group] = {}
        self._round_robin = itertools.count()
        self._waiters: list[asyncio.Future[None]] = []

    # -- topics and producing ------------------------------------------------------

    async def start(self) -> None:
        """Nothing to connect."""

    async def aclose(self) -> None:
        """Nothing to close; the data stays for inspection."""

    async def ping(self) -> None:
        """Always answers."""

    async def create_topics(self, topics: Mapping[str, int]) -> None:
        """Create topics that do not exist yet with the given partition counts."""
        for name, partitions in topics.items():
            self._topic(name, partitions)

    def _topic(self, name: str, partitions: int | None = None) -> list[list[Record]]:
        log = self.topics.get(name)
        if log is None:
            log = self.topics[name] = [[] for _ in range(partitions or self.default_partitions)]
        return log

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers | None = None
    ) -> Sent:
        """Append a record to the key's partition (round robin without a key)."""
        log = self._topic(topic)
        if key is None:
            partition = next(self._round_robin) % len(log)
        else:
            partition = partition_for(key, len(log))
        offset = len(log[partition])
        log[partition].append(
            Record(
                topic,
                partition,
                offset,
                key,
                value,
                tuple(headers or ()),
                int(time.time() * 1000),
            )
        )
        self._notify()
        return Sent(topic, partition, offset)

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic``, partition by partition (for assertions)."""
        return [r for part in self.topics.get(topic, []) for r in part]

    # -- groups ------------------------------------------------------------------

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        instance_id: str | None = None,
    ) -> MemoryGroupConsumer:
        """A new member of ``group`` (joins on ``start()``; ``instance_id`` is ignored)."""
        return MemoryGroupConsumer(self, list(topics), group, on_assigned, on_revoked)

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """Committed offsets of ``group`` (for assertions)."""
        return dict(self.groups.get(group, _Group()).committed)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)

    async def _wait(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _rebalance(self, group: _Group) -> None:
        """Eager rebalance: revoke everything, then spread partitions over the members."""
        members = [m for m in group.members if m.assigned]
        await asyncio.gather(*(m.revoke_all() for m in members))
        group.generation += 1
        partitions: list[TopicPartition] = []
        wanted = sorted({t for m in group.members for t in m.topics})
        for topic in wanted:
            partitions += [TopicPartition(topic, p) for p in range(len(self._topic(topic)))]
        plan: dict[int, set[TopicPartition]] = {i: set() for i in range(len(group.members))}
        for i, tp in enumerate(partitions):
            subscribers = [j for j, m in enumerate(group.members) if tp.topic in m.topics]
            if subscribers:
                plan[subscribers[i % len(subscribers)]].add(tp)
        await asyncio.gather(*(m.assign(plan[i], group) for i, m in enumerate(list(group.members))))
        self._notify()


class MemoryGroupConsumer:
    """A member of a consumer group on a :class:`MemoryBroker`."""

    def __init__(
        self,
        broker: MemoryBroker,
        topics: list[str],
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.group_id = group
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.joined = False

    @property
    def _group(self) -> _Group:
        return self.broker.groups.setdefault(self.group_id, _Group())

    async def start(self) -> None:
        """Join the group and wait for the rebalance to finish."""
        group = self._group
        async with group.lock:
            for topic in self.topics:
                self.broker._topic(topic)
            group.members.append(self)
            self.joined = True
            try:
                await self.broker._rebalance(group)
            except BaseException:  # cancelled while joining: leave, as aiokafka closes
                group.members.remove(self)
                self.joined, self.assigned, self.positions = False, set(), {}
                await self.broker._rebalance(group)
                raise

    async def stop(self) -> None:
        """Leave the group; the remaining members rebalance."""
        await self._leave(graceful=True)

    async def crash(self) -> None:
        """Vanish without revoking or committing, as a killed process does."""
        await self._leave(graceful=False)

    async def _leave(self, *, graceful: bool) -> None:
        if not self.joined:
            return
        group = self._group
        async with group.lock:
            self.joined = False
            group.members.remove(self)
            self.assigned = set()
            self.positions = {}
            await self.broker._rebalance(group)
        self.broker._notify()

    async def revoke_all(self) -> None:
        """Run the revoke callback for every assigned partition, then drop them."""
        revoked = set(self.assigned)
        if revoked:
            await self._on_revoked(revoked)
        self.assigned = set()
        for tp in revoked:
            self.positions.pop(tp, None)

    async def assign(self, partitions: set[TopicPartition], group: _Group) -> None:
        """Take ``partitions``, reading from the committed offsets."""
        self.assigned = set(partitions)
        self.positions = {tp: group.committed.get(tp, 0) for tp in partitions}
        await self._on_assigned(set(partitions))

    async def fetch(self, *, wait: float, max_records: int) -> list[Record]:
        """Records after the positions of assigned partitions; waits up to ``wait`` seconds."""
        records = self._take(max_records)
        if not records and self.joined:
            await self.broker._wait(wait)
            records = self._take(max_records)
        return records

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for tp in sorted(self.assigned):
            if len(out) >= max_records:
                break
            log = self.broker._topic(tp.topic)[tp.partition]
            position = self.positions.get(tp, 0)
            chunk = log[position : position + max_records - len(out)]
            if chunk:
                self.positions[tp] = position + len(chunk)
                out += chunk
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store committed offsets of partitions this member owns."""
        from nativekit.messaging._errors import CommitFailed

        stale = [tp for tp in offsets if tp not in self.assigned]
        if stale:
            raise CommitFailed(f"partitions {sorted(stale)} are not assigned to this member")
        self._group.committed.update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp``."""
        return self._group.committed.get(tp)

    def assignment(self) -> set[TopicPartition]:
        """Partitions assigned now."""
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        """Length of the partition's log."""
        return len(self.broker._topic(tp.topic)[tp.partition])

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Lengths of the partitions' logs."""
        return {tp: len(self.broker._topic(tp.topic)[tp.partition]) for tp in tps}
