"""Sagas across services: an orchestrator and two participants in three processes, on the
real broker and real Redis; SIGKILLs at the dangerous points; a Redis ledger of effects."""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib

import pytest

import nativekit
from nativekit.messaging import Message

from .conftest import World
from .shop import ReserveStock

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


async def test_happy_failure_and_timeout_paths(world: World) -> None:
    """Completed, rejected (compensated by commands) and timed-out sagas; each effect once."""
    # Keys share a lane's queues by hash: an 'ok' charge queued behind the slow one would
    # time out too (documented). Keep them apart so this test is about reply timeouts.
    slow = f"{world.unique}-slow"
    apart = (f"{world.unique}-{i}" for i in itertools.count())
    others = list(itertools.islice(
        (o for o in apart if _lane_queue(f"order-{o}") != _lane_queue(f"order-{slow}")), 12
    ))  # fmt: skip
    behaviours = ["ok"] * 10 + ["reject"] * 2
    data = [{"order_id": o, "behaviour": b} for o, b in zip(others, behaviours, strict=True)]
    data.append({"order_id": slow, "behaviour": "slow"})
    start, ids = json.dumps(data), [f"order-{d['order_id']}" for d in data]
    await participants(world, TEST_SLOW="4.5")
    world.spawn("orders", TEST_START=start, TEST_TIMEOUT="3")
    records = await world.converged(ids, within=40)
    ledger = await world.ledger()
    for saga_id in ids[:10]:
        oid = saga_id.removeprefix("order-")
        assert records[saga_id].status.value == "COMPLETED", (
            saga_id,
            records[saga_id].error,
            {k: (s.status, s.error, s.attempts) for k, s in records[saga_id].steps.items()},
            ledger,
        )
        assert records[saga_id].to_dict()["results"]["charge_card"] == {"charge_id": f"c-{oid}"}
        assert (ledger.get(f"{oid}:reserve"), ledger.get(f"{oid}:charge")) == (1, 1)
        assert f"{oid}:release" not in ledger
    for saga_id in ids[10:12]:
        oid = saga_id.removeprefix("order-")
        record = records[saga_id]
        assert record.status.value == "COMPENSATED", record.error
        assert "card declined" in (record.steps["charge_card"].error or "")
        assert record.steps["charge_card"].attempts == 1  # a failure reply is not retried
        assert {k: v for k, v in ledger.items() if k.startswith(oid)} == {
            f"{oid}:reserve": 1,
            f"{oid}:release": 1,
        }
    slow = records[ids[12]]
    oid = ids[12].removeprefix("order-")
    assert slow.status.value == "COMPENSATED", slow.error
    assert "no reply" in (slow.steps["charge_card"].error or "")
    await world.wait_for(
        lambda: _has(world, f"{oid}:refund"), within=15, what="refund of the late charge"
    )
    ledger = await world.ledger()
    assert {k: v for k, v in ledger.items() if k.startswith(oid)} == {
        f"{oid}:reserve": 1,
        f"{oid}:release": 1,
        f"{oid}:charge": 1,  # the slow charge happened after the timeout ...
        f"{oid}:refund": 1,  # ... and its compensation (outcome uncertain) undid it
    }


def _lane_queue(saga_id: str, width: int = 16) -> int:
    """The queue of the participant's lane a saga's commands go to (keyed by saga id;
    ``nativekit.messaging._consume.lanes.Lane``, command handlers' default concurrency 16)."""
    return zlib.crc32(saga_id.encode()) % width


async def participants(world: World, **extra: str) -> None:
    """Start inventory and payments; return once both consume their command topics."""
    world.spawn("inventory", **extra)
    world.spawn("payments", **extra)
    await world.wait_for(
        lambda: _has_all(world, "ready:inventory", "ready:payments"), within=30, what="ready"
    )


async def _has_all(world: World, *keys: str) -> bool:
    ledger = await world.ledger()
    return all(k in ledger for k in keys)


async def _has(world: World, key: str) -> bool:
    return key in await world.ledger()


async def test_duplicate_commands_get_identical_replies_and_one_effect(world: World) -> None:
    """One command delivered three times (two ids, one key): one effect, three equal replies."""
    await participants(world)
    probe = nativekit.Service(
        f"probe-{world.unique}",
        settings=nativekit.Settings(
            kafka={"url": world.kafka_url, "idempotent_producer": False},
            consumer={"session_timeout_seconds": 6.0},
            telemetry={"tracing_enabled": False, "log_level": "WARNING"},
        ),
    )
    replies: list[Message] = []
    got = asyncio.Event()

    @probe.consumer(world.names["replies"], idempotent=False)
    async def collect(payload: bytes, msg: Message) -> None:
        replies.append(msg)
        if len(replies) >= 3:
            got.set()

    await probe.startup(hook_sigterm=False)
    try:
        oid = f"{world.unique}-dup"
        command = ReserveStock(order_id=oid, sku="mug", qty=1)
        headers = {
            "reply-to": world.names["replies"],
            "idempotency-key": f"order-{oid}:reserve_stock:forward",
            "saga-id": f"order-{oid}",
            "saga-step": "reserve_stock",
            "saga-direction": "forward",
            "saga-attempt": "1",
            "saga-reply-token": "t1",
        }
        for message_id in ("m-1", "m-1", "m-2"):  # a relay duplicate, then a retried attempt
            await probe.publish(
                world.names["inventory"],
                command,
                key=f"order-{oid}",
                headers=headers,
                message_id=message_id,
            )
        async with asyncio.timeout(30):
            await got.wait()
    finally:
        await probe.shutdown()
    assert [m.value for m in replies] == [b'{"reservation_id":"r-%s"}' % oid.encode()] * 3
    assert {m.header("reply-status") for m in replies} == {"ok"}
    assert {m.header("saga-reply-token") for m in replies} == {"t1"}
    assert (await world.ledger()).get(f"{oid}:reserve") == 1
