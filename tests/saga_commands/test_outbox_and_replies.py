"""Outbox relay (memory and real Redis), reply fencing, metrics, readiness and trace continuity."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import nativekit
from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga._commands.replies import apply_reply
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.model import SagaRecord, SagaStatus, Transition
from nativekit.saga._store.outbox import MemoryOutbox, OutboxEntry, OutboxRelay

from .shop import OrderConfirmed, inventory_service, memory_ledger, orders_service, payments_service
from .test_commands_memory import _settings, running


class FakePublisher:
    """Records publishes; fails while ``down``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str | None]] = []
        self.down = False

    async def publish(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if self.down:
            raise nativekit.BackendUnavailable("broker down (test)")
        self.sent.append((topic, value, kwargs.get("message_id")))


def _record(saga_id: str) -> SagaRecord:
    now = time.time()
    return SagaRecord(saga_id, "s", "d", SagaStatus.RUNNING, "{}", now, now)


async def _write_with_outbox(store: Any, saga_id: str, *events: OrderConfirmed) -> list[str]:
    await store.create(_record(saga_id), token="t", lease=30)
    entries = [OutboxEntry.new("orders.events", e, key=saga_id) for e in events]
    change = Transition(fields={"x": "1"}, outbox=[e.encode() for e in entries])
    await store.write(
        saga_id,
        "t",
        change,
        current=SagaStatus.RUNNING,
        name="s",
        definition="d",
        lease=30,
        retention=60,
    )
    return [e.id for e in entries]


async def test_memory_outbox_is_written_with_the_transition_and_deleted_after_publish() -> None:
    """A transition's outbox entries are relayed with their ids as message ids, then deleted."""
    store = MemorySagaStore()
    ids = await _write_with_outbox(store, "m1", OrderConfirmed(order_id="1"))
    publisher = FakePublisher()
    relay = OutboxRelay(MemoryOutbox(store.outbox_entries), publisher, service="t")
    publisher.down = True
    with pytest.raises(nativekit.BackendUnavailable):
        await relay.relay_once()
    assert len(store.outbox_entries) == 1  # kept until the broker acknowledged it
    publisher.down = False
    relay.outbox = MemoryOutbox(store.outbox_entries)  # a restarted relay
    assert await relay.relay_once() == 1
    assert publisher.sent == [("orders.events", b'{"order_id":"1"}', ids[0])]
    assert store.outbox_entries == []


async def test_stale_token_writes_no_outbox_entry() -> None:
    """A fenced (stale) transition writes neither state nor outbox entries."""
    store = MemorySagaStore()
    await store.create(_record("m2"), token="t", lease=30)
    entry = OutboxEntry.new("orders.events", OrderConfirmed(order_id="2"), key="m2")
    with pytest.raises(nativekit.saga.LeaseLost):
        await store.write(
            "m2",
            "other",
            Transition(outbox=[entry.encode()]),
            current=SagaStatus.RUNNING,
            name="s",
            definition="d",
            lease=30,
            retention=60,
        )
    assert store.outbox_entries == []


@pytest.mark.redis
async def test_redis_outbox_atomic_write_takeover_and_backlog(redis_url: str, unique: str) -> None:
    """Redis: entries land in the shard stream with the transition; a dead relay's entries are
    taken over after claim_after; acknowledged entries are deleted; backlog counts the rest."""
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"test:outbox:{unique}"
    try:
        store = RedisSagaStore(client, prefix=prefix, shards=2)
        ids = await _write_with_outbox(
            store, "r1", OrderConfirmed(order_id="a"), OrderConfirmed(order_id="b")
        )
        with pytest.raises(nativekit.saga.LeaseLost):  # stale token: nothing appended
            await store.write(
                "r1",
                "stale",
                Transition(outbox=["x"]),
                current=SagaStatus.RUNNING,
                name="s",
                definition="d",
                lease=30,
                retention=60,
            )
        dead = store.outbox(consumer="dead", claim_after=0.3)
        await dead.start()
        taken = await dead.read(10)  # read, then "dies" without publishing
        assert [e.id for e in taken.entries] == ids
        assert (await dead.backlog())[0] == 2
        alive = store.outbox(consumer="alive", claim_after=0.3)
        await alive.start()
        assert (await alive.read(10)).entries == []  # pending elsewhere, not yet abandoned
        await asyncio.sleep(0.35)
        alive._next_claim = 0.0
        batch = await alive.read(10)
        assert [e.id for e in batch.entries] == ids
        await alive.ack(batch.handles)
        assert (await alive.backlog())[0] == 0
    finally:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_late_and_unknown_replies_are_counted_and_ignored(unique: str) -> None:
    """A reply for an old attempt or an unknown saga changes nothing and is counted."""
    names = {k: f"f{unique}.{k}" for k in ("inventory", "payments", "events", "replies")}
    ledger, count = memory_ledger()
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    async with running(
        orders,
        inventory_service(_settings(), names, count),
        payments_service(_settings(), names, count),
    ):
        record = await (await orders.sagas.start("place-order", {"order_id": "f1"})).wait(10)
        runtime = orders.sagas
        reply = {
            "saga-id": record.saga_id,
            "saga-step": "reserve_stock",
            "saga-direction": "forward",
            "saga-attempt": "1",
            "saga-reply-token": "old",
            "reply-status": "ok",
        }
        late = await apply_reply(runtime, b'{"reservation_id":"x"}', reply.get)
        unknown = await apply_reply(runtime, b"{}", {**reply, "saga-id": "no-such-saga"}.get)
        await orders._saga_commands.on_reply(
            b"{}", _Msg({**reply, "saga-id": "no-such-saga"})
        )
        text = _metrics(orders)
    assert (late, unknown) == ("late", "ignored")
    assert (await orders.sagas.get(record.saga_id)).status is SagaStatus.COMPLETED
    assert 'nativekit_saga_replies_total{outcome="received",service="orders"} 2.0' in text
    assert 'nativekit_saga_replies_total{outcome="ignored",service="orders"} 1.0' in text
    assert (
        'nativekit_saga_commands_sent_total{direction="forward",saga="place-order",'
        'service="orders",step="reserve_stock"} 1.0'
    ) in text
    assert "nativekit_outbox_relay_lag_seconds_count" in text
    assert ledger == {"f1:reserve": 1, "f1:charge": 1}


async def test_readiness_warns_when_the_outbox_backlog_grows(unique: str) -> None:
    """The outbox check warns above NATIVEKIT_SAGA_OUTBOX_BACKLOG_WARN and reports the count."""
    names = {k: f"g{unique}.{k}" for k in ("inventory", "payments", "events", "replies")}
    orders = orders_service(
        _settings(saga_reply_topic=names["replies"], outbox_backlog_warn=1), names
    )
    async with running(orders):
        commands = orders._saga_commands
        await commands.relay.stop()  # a relay that cannot keep up
        for n in range(3):
            await orders.sagas.start("place-order", {"order_id": f"g{n}"})
        store: Any = orders.sagas.store
        for _ in range(100):
            if len(store.outbox_entries) >= 3:
                break
            await asyncio.sleep(0.01)
        result = await commands.readiness()
    assert result is not None and result.status == "warn"
    assert result.observed_value == 3


async def test_trace_continues_from_saga_through_participant_to_resumed_saga(
    spans: InMemorySpanExporter, unique: str
) -> None:
    """Saga step, command publish, participant handler, reply and resumed saga share a trace."""
    names = {k: f"h{unique}.{k}" for k in ("inventory", "payments", "events", "replies")}
    _, count = memory_ledger()
    orders = orders_service(
        _settings(saga_reply_topic=names["replies"], tracing_enabled=True), names
    )
    async with running(
        orders,
        inventory_service(_settings(tracing_enabled=True), names, count),
        payments_service(_settings(tracing_enabled=True), names, count),
    ):
        record = await (await orders.sagas.start("place-order", {"order_id": "h1"})).wait(10)
    assert record.status is SagaStatus.COMPLETED
    finished = spans.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    step = by_name["saga.step reserve_stock"][0]
    trace_id = step.context.trace_id
    chain = [
        f"{names['inventory']} publish",
        f"{names['inventory']} process",
        f"{names['replies']} publish",
        f"{names['replies']} process",
        f"{names['payments']} process",
        "saga.step confirm",
    ]
    for name in chain:
        assert any(s.context.trace_id == trace_id for s in by_name.get(name, [])), name


class _Msg:
    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def header(self, name: str) -> str | None:
        return self._headers.get(name)


def _metrics(svc: nativekit.Service) -> str:
    from prometheus_client import generate_latest

    return generate_latest(svc.metrics.registry).decode()


class CancellationLosingOutbox(MemoryOutbox):
    """Loses the first cancellation that arrives during a read, as redis-py does on Python
    3.11 when it lands as a command's send finishes (``asyncio.wait_for``, gh-86296)."""

    def __init__(self) -> None:
        super().__init__([])
        self.reading = asyncio.Event()
        self.lost = 0

    async def read(self, limit: int, saga_ids: Any = None) -> Any:
        self.reading.set()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost += 1
        return await super().read(limit, saga_ids)


async def test_relay_stops_when_its_cancellation_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() returns although the relay loop lost the cancellation: the loop ends on the
    stop, not only on the cancellation (a service's shutdown hung on it, issue 21)."""
    monkeypatch.setattr("nativekit._lifecycle.CANCEL_AGAIN_AFTER", 3600.0)  # no second cancel
    outbox = CancellationLosingOutbox()
    relay = OutboxRelay(outbox, FakePublisher(), service="t", poll_interval=0.01)  # type: ignore[arg-type]
    await relay.start()
    await asyncio.wait_for(outbox.reading.wait(), 5)
    await asyncio.wait_for(relay.stop(), 5)
    assert outbox.lost == 1
