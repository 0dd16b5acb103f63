"""The outbox relay sends a read of many entries as one batch (full record batches)."""

from __future__ import annotations

import asyncio
from typing import Any

from nativekit.backends.kafka._producer import Producers
from nativekit.messaging._wire.broker import SENDING_MANY
from nativekit.saga._store.outbox import (
    SEND_AS_BATCH_FROM,
    MemoryOutbox,
    OutboxEntry,
    OutboxRelay,
)
from nativekit.settings import Settings

from .shop import OrderConfirmed


class GatedPublisher:
    """Records each publish with whether it was sent as part of a batch; waits for
    ``gate`` while it is cleared."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, bool]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def publish(self, topic: str, value: bytes, **kwargs: Any) -> None:
        await self.gate.wait()
        self.sent.append((kwargs.get("key"), SENDING_MANY.get()))


class CountingOutbox(MemoryOutbox):
    """Remembers how many entries each read returned."""

    def __init__(self, entries: list[str]) -> None:
        super().__init__(entries)
        self.reads: list[int] = []

    async def read(self, limit: int, saga_ids: Any = None) -> Any:
        batch = await super().read(limit, saga_ids)
        if batch.entries:
            self.reads.append(len(batch.entries))
        return batch


def _entries(n: int, start: int = 0) -> list[str]:
    return [
        OutboxEntry.new("orders.events", OrderConfirmed(order_id=str(i)), key=f"k{i}").encode()
        for i in range(start, start + n)
    ]


async def test_a_read_of_many_entries_is_sent_as_one_batch() -> None:
    """From SEND_AS_BATCH_FROM entries a read goes out as a batch (the broker may hold
    its records for the linger); a lone entry is sent at once, as before."""
    publisher = GatedPublisher()
    lone = OutboxRelay(MemoryOutbox(_entries(1)), publisher, service="t")  # type: ignore[arg-type]
    assert await lone.relay_once() == 1
    assert publisher.sent == [("k0", False)]
    publisher.sent.clear()
    many = OutboxRelay(
        MemoryOutbox(_entries(SEND_AS_BATCH_FROM)),
        publisher,  # type: ignore[arg-type]
        service="t",
    )
    assert await many.relay_once() == SEND_AS_BATCH_FROM
    assert sorted(publisher.sent) == sorted((f"k{i}", True) for i in range(SEND_AS_BATCH_FROM))
    assert SENDING_MANY.get() is False  # set in the batch's own task only


async def test_entries_written_while_a_batch_goes_out_join_the_next_read() -> None:
    """Under load the relay reads again when its batch in flight landed, not at every
    write: the entries written meanwhile go out in one read, in the order written."""
    entries = _entries(1)
    outbox = CountingOutbox(entries)
    publisher = GatedPublisher()
    publisher.gate.clear()
    relay = OutboxRelay(outbox, publisher, service="t", poll_interval=0.01)  # type: ignore[arg-type]
    await relay.start()
    try:
        for _ in range(200):  # the first entry read, its publish held at the gate
            if outbox.reads:
                break
            await asyncio.sleep(0.01)
        for entry in _entries(30, start=1):
            entries.append(entry)
            relay.wake()
            await asyncio.sleep(0.002)
        publisher.gate.set()
        for _ in range(500):
            if len(publisher.sent) == 31:
                break
            await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    assert outbox.reads == [1, 30]
    assert [key for key, _ in publisher.sent] == [f"k{i}" for i in range(31)]
    assert entries == []  # all acknowledged, then deleted


class FakeProducer:
    def __init__(self, name: str, sent: list[str]) -> None:
        self.name = name
        self.sent = sent

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> str:
        self.sent.append(self.name)
        return self.name


async def test_records_sent_as_a_batch_go_through_the_lingering_producer() -> None:
    """A lone publish goes out at once; the records of a batch all go through the
    lingering producer, the first ones too (they would go out alone otherwise)."""
    producers = Producers(Settings(kafka={"url": "kafka://127.0.0.1:9"}))
    await producers.stop()  # never started: aiokafka's are closed, fakes stand in
    sent: list[str] = []
    producers.now = FakeProducer("now", sent)
    producers.lingering = FakeProducer("lingering", sent)
    await producers.send_and_wait("t", b"x", key=b"a", headers=None)

    async def batch() -> None:
        SENDING_MANY.set(True)
        await asyncio.gather(
            *(producers.send_and_wait("t", b"x", key=b"b", headers=None) for _ in range(3))
        )

    await asyncio.create_task(batch())
    assert sent == ["now", "lingering", "lingering", "lingering"]
