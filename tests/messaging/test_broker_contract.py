"""Contract of the Broker protocol, run against the memory broker and the real Kafka broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.messaging._wire.broker import Broker, GroupConsumer, Record, TopicPartition
from nativekit.messaging._wire.memory import MemoryBroker, partition_for
from tests.messaging.conftest import eventually, kafka_settings


class _Member:
    """A group member that records its rebalance callbacks."""

    def __init__(self, broker: Broker, topic: str, group: str, log: list[str]) -> None:
        self.assigned: set[TopicPartition] = set()
        self.log = log
        self.name = f"m{len(log)}"
        self.gc: GroupConsumer = broker.group_consumer(
            [topic], group=group, on_assigned=self._assigned, on_revoked=self._revoked
        )

    async def _assigned(self, tps: set[TopicPartition]) -> None:
        self.assigned = set(tps)
        self.log.append("assigned")

    async def _revoked(self, tps: set[TopicPartition]) -> None:
        self.log.append("revoked")
        self.assigned = set()

    async def fetch_all(self, count: int) -> list[Record]:
        out: list[Record] = []
        for _ in range(100):
            out += await self.gc.fetch(wait=0.2, max_records=500)
            if len(out) >= count:
                break
        return out


class BrokerContract:
    """Behaviour every Broker must have."""

    partitions = 3

    async def test_key_picks_a_stable_partition(self, broker: Broker, unique: str) -> None:
        """Records with one key land in one partition, with increasing offsets."""
        topic = f"t-{unique}"
        await broker.create_topics({topic: self.partitions})
        sent = [await broker.send(topic, b"%d" % i, key=b"order-7") for i in range(3)]
        assert len({s.partition for s in sent}) == 1
        assert sent[0].partition == partition_for(b"order-7", self.partitions)
        assert [s.offset for s in sent] == sorted(s.offset for s in sent)

    async def test_member_reads_all_in_order_and_resumes_after_commit(
        self, broker: Broker, unique: str
    ) -> None:
        """A lone member gets every partition; a new member resumes at the committed offset."""
        topic, group = f"t-{unique}", f"g-{unique}"
        await broker.create_topics({topic: self.partitions})
        for i in range(6):
            await broker.send(topic, b"%d" % i, key=b"k%d" % i, headers=[("h", b"v")])
        first = _Member(broker, topic, group, [])
        await first.gc.start()
        await eventually(lambda: len(first.assigned) == self.partitions, what="assignment")
        records = await first.fetch_all(6)
        assert sorted(r.value for r in records if r.value) == [b"%d" % i for i in range(6)]
        assert all(("h", b"v") in r.headers for r in records)
        for tp in {r.tp for r in records}:
            offsets = [r.offset for r in records if r.tp == tp]
            assert offsets == sorted(offsets)
        done = records[0]
        await first.gc.commit({done.tp: done.offset + 1})
        assert await first.gc.committed(done.tp) == done.offset + 1
        await first.gc.stop()
        second = _Member(broker, topic, group, [])
        await second.gc.start()
        await eventually(lambda: len(second.assigned) == self.partitions, what="reassignment")
        again = await second.fetch_all(5)
        assert done.value not in {r.value for r in again}
        assert len(again) == 5
        await second.gc.stop()

    async def test_two_members_split_partitions_revoking_first(
        self, broker: Broker, unique: str
    ) -> None:
        """A joining member triggers revoke on the first, then both get disjoint partitions."""
        topic, group = f"t-{unique}", f"g-{unique}"
        await broker.create_topics({topic: self.partitions})
        log: list[str] = []
        a = _Member(broker, topic, group, log)
        await a.gc.start()
        await eventually(lambda: len(a.assigned) == self.partitions, what="first assignment")
        b = _Member(broker, topic, group, log)
        await b.gc.start()

        async def poll() -> bool:
            await a.gc.fetch(wait=0.05, max_records=1)
            return bool(a.assigned) and bool(b.assigned)

        for _ in range(300):
            if await poll():
                break
        assert a.assigned and b.assigned
        assert not a.assigned & b.assigned
        assert len(a.assigned | b.assigned) == self.partitions
        assert log.index("revoked") < len(log) - 1
        await b.gc.stop()
        await a.gc.stop()


class TestMemoryBroker(BrokerContract):
    """The contract on the in-process broker."""

    @pytest.fixture
    def broker(self) -> MemoryBroker:
        """A fresh memory broker."""
        return MemoryBroker()

    async def test_crashed_member_leaves_its_uncommitted_records(
        self, broker: MemoryBroker, unique: str
    ) -> None:
        """A member that crashes without committing: the next one reads the records again."""
        await broker.send("t", b"x")
        member = _Member(broker, "t", "g", [])
        await member.gc.start()
        assert [r.value for r in await member.gc.fetch(wait=0, max_records=10)] == [b"x"]
        await member.gc.crash()  # type: ignore[attr-defined]
        other = _Member(broker, "t", "g", [])
        await other.gc.start()
        assert [r.value for r in await other.gc.fetch(wait=0, max_records=10)] == [b"x"]


    async def test_member_cancelled_while_joining_leaves_the_group(
        self, broker: MemoryBroker
    ) -> None:
        """A join cancelled mid-rebalance (its consumer stopped while joining) leaves no
        member behind: the partition goes back to the member that was there."""
        await broker.create_topics({"t": 1})
        assigned: set[TopicPartition] = set()
        release, revoking = asyncio.Event(), asyncio.Event()

        async def on_assigned(tps: set[TopicPartition]) -> None:
            assigned.update(tps)

        async def on_revoked(tps: set[TopicPartition]) -> None:
            revoking.set()
            await release.wait()
            assigned.clear()

        first = broker.group_consumer(
            ["t"], group="g", on_assigned=on_assigned, on_revoked=on_revoked
        )
        await first.start()
        second = _Member(broker, "t", "g", [])
        joining = asyncio.create_task(second.gc.start())
        await asyncio.wait_for(revoking.wait(), 5)
        joining.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(joining, 5)
        assert broker.groups["g"].members == [first]
        assert assigned == {TopicPartition("t", 0)} and not second.assigned

@pytest.mark.kafka
class TestKafkaBroker(BrokerContract):
    """The contract on the real Kafka-protocol broker."""

    @pytest.fixture
    async def broker(self, kafka_url: str) -> AsyncIterator[KafkaBroker]:
        """A connected Kafka broker client."""
        broker = KafkaBroker(kafka_settings(kafka_url))
        await broker.start()
        yield broker
        await broker.aclose()
