"""Command members of a parallel group across processes: the orchestrator sends both
commands of the group at once to participants in their own processes, on the real broker
and real Redis, and is SIGKILLed while the commands are in flight."""

from __future__ import annotations

import json

import pytest

from .conftest import World, kill
from .test_across_services import _has, participants

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


async def test_group_of_commands_completes_and_compensates_across_processes(
    world: World,
) -> None:
    """Both commands of a group go out together; sagas complete with both replies, a
    refused charge compensates the reserve with its command; each effect once."""
    data = [{"order_id": f"{world.unique}-{i}"} for i in range(6)]
    data += [{"order_id": f"{world.unique}-r{i}", "behaviour": "reject"} for i in range(2)]
    ids = [f"order-{d['order_id']}" for d in data]
    await participants(world)
    world.spawn("orders", TEST_START=json.dumps(data), TEST_PARALLEL="1")
    records = await world.converged(ids, within=40)
    ledger = await world.ledger()
    for saga_id in ids[:6]:
        oid, record = saga_id.removeprefix("order-"), records[saga_id]
        assert record.status.value == "COMPLETED", (saga_id, record.error, ledger)
        results = record.to_dict()["results"]
        assert results["reserve_stock"] == {"reservation_id": f"r-{oid}"}
        assert results["charge_card"] == {"charge_id": f"c-{oid}"}
        assert results["note"] == f"noted {oid}"
        assert record.waits == {} and record.replies == {}
        assert {k: v for k, v in ledger.items() if k.startswith(f"{oid}:")} == {
            f"{oid}:reserve": 1,
            f"{oid}:charge": 1,
        }
    for saga_id in ids[6:]:
        oid, record = saga_id.removeprefix("order-"), records[saga_id]
        assert record.status.value == "COMPENSATED", record.error
        assert "card declined" in (record.steps["charge_card"].error or "")
        assert record.steps["reserve_stock"].status.value == "compensated"
        assert {k: v for k, v in ledger.items() if k.startswith(f"{oid}:")} == {
            f"{oid}:reserve": 1,
            f"{oid}:release": 1,
        }


async def test_orchestrator_killed_with_a_group_in_flight_converges(world: World) -> None:
    """SIGKILL the orchestrator once the first commands were applied; a new orchestrator
    process finishes every saga: replies that came meanwhile resume them, each effect once."""
    data = [{"order_id": f"{world.unique}-{i}"} for i in range(8)]
    ids = [f"order-{d['order_id']}" for d in data]
    await participants(world, TEST_DELAY="0.3")  # reserve effects land while orders runs
    first = world.spawn("orders", TEST_START=json.dumps(data), TEST_PARALLEL="1")
    await world.wait_for(
        lambda: _has(world, f"{data[0]['order_id']}:reserve:entered"),
        within=30,
        what="a reserve command reached inventory",
    )
    kill(first)
    world.spawn("orders", TEST_PARALLEL="1")
    records = await world.converged(ids, within=60)
    ledger = await world.ledger()
    for saga_id in ids:
        oid, record = saga_id.removeprefix("order-"), records[saga_id]
        assert record.status.value == "COMPLETED", (saga_id, record.error, record.steps)
        assert (ledger.get(f"{oid}:reserve"), ledger.get(f"{oid}:charge")) == (1, 1), ledger
        assert f"{oid}:release" not in ledger and f"{oid}:refund" not in ledger
