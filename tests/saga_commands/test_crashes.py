"""SIGKILL at the dangerous points of command/reply sagas: every saga converges, each
participant effect is applied once (a Redis ledger counts them across processes)."""

from __future__ import annotations

import asyncio
import json

import pytest

from nativekit.saga._store.model import SagaRecord

from .conftest import World, kill
from .test_across_services import participants

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
N = 20


def _start(world: World) -> tuple[str, list[str]]:
    data = [{"order_id": f"{world.unique}-{i}"} for i in range(N)]
    return json.dumps(data), [f"order-{d['order_id']}" for d in data]


def _check(records: dict[str, SagaRecord], ledger: dict[str, int]) -> None:
    effects = {
        k: v for k, v in ledger.items() if not k.startswith("ready:") and ":entered" not in k
    }
    assert set(effects.values()) <= {1}, f"an effect was applied twice: {effects}"
    for saga_id, record in records.items():
        oid = saga_id.removeprefix("order-")
        mine = {k.rsplit(":", 1)[1] for k in effects if k.rsplit(":", 1)[0] == oid}
        if record.status.value == "COMPLETED":
            assert mine == {"reserve", "charge"}, (saga_id, mine)
        else:
            assert record.status.value == "COMPENSATED", (saga_id, record.error)
            assert "release" in mine or "reserve" not in mine, (saga_id, mine)
            assert "refund" in mine or "charge" not in mine, (saga_id, mine)


def _errors(records: dict[str, SagaRecord]) -> dict[str, str | None]:
    return {k: r.error for k, r in records.items() if r.status.value != "COMPLETED"}


async def test_orchestrator_killed_between_outbox_write_and_publish(world: World) -> None:
    """Commands written but never published by a killed relay are published by the next one."""
    await participants(world)
    start, ids = _start(world)
    # the reply deadline runs from the first process's step start; the restart (imports,
    # two group joins of ~3 s each on Tansu) must fit in it on a loaded two-core machine
    first = world.spawn("orders", TEST_START=start, TEST_CRASH="relay_read", TEST_TIMEOUT="20")
    first.wait(timeout=30)  # it kills itself once its relay read the first outbox entries
    assert first.returncode == -9
    assert not any(k.endswith(":reserve") for k in await world.ledger())
    world.spawn("orders", TEST_START=start, TEST_TIMEOUT="20")
    records = await world.converged(ids, within=45)
    assert {r.status.value for r in records.values()} == {"COMPLETED"}, _errors(records)
    _check(records, await world.ledger())


async def test_orchestrator_killed_while_waiting_for_replies(world: World) -> None:
    """Replies arriving while the orchestrator is dead resume the sagas after its restart."""
    await participants(world, TEST_DELAY="1.0")
    start, ids = _start(world)
    first = world.spawn("orders", TEST_START=start, TEST_TIMEOUT="10")
    await world.wait_for(
        lambda: _count(world, ":reserve:entered", 3), within=30, what="commands in flight"
    )
    kill(first)  # sagas are waiting: their commands are being handled by inventory
    world.spawn("orders", TEST_TIMEOUT="10")
    records = await world.converged(ids, within=60)
    assert {r.status.value for r in records.values()} == {"COMPLETED"}, _errors(records)
    _check(records, await world.ledger())


async def test_orchestrator_down_past_the_reply_deadline_fails_no_saga(world: World) -> None:
    """Reply deadlines that pass while the orchestrator is dead are re-sent, not failures."""
    await participants(world, TEST_DELAY="1.0")
    start, ids = _start(world)
    first = world.spawn("orders", TEST_START=start, TEST_TIMEOUT="3")
    await world.wait_for(
        lambda: _count(world, ":reserve:entered", 3), within=30, what="commands in flight"
    )
    kill(first)
    await asyncio.sleep(4)  # every reply deadline passes while nobody listens
    # the deadlines that passed are the first process's (3 s); the restarted one's commands
    # get 10 s: its reply consumer may pause in a second rebalance (the killed member's
    # session expiring, 6 s) and a loaded machine (PostgreSQL stores) must not fail them
    world.spawn("orders", TEST_TIMEOUT="10")
    records = await world.converged(ids, within=90)
    assert {r.status.value for r in records.values()} == {"COMPLETED"}, _errors(records)
    _check(records, await world.ledger())
    # a deadline nobody heard re-sends the same attempt: no retry was used up
    assert {s.attempts for r in records.values() for s in r.steps.values()} == {1}


async def test_participant_killed_mid_handler(world: World) -> None:
    """A participant killed inside its handler: the command is redelivered and answered once."""
    world.spawn("payments")
    inventory = world.spawn("inventory", TEST_DELAY="1.5")
    await world.wait_for(lambda: _count(world, "ready:", 2), within=30, what="participants ready")
    start, ids = _start(world)
    world.spawn("orders", TEST_START=start, TEST_TIMEOUT="20")
    await world.wait_for(
        lambda: _count(world, ":reserve:entered", 1), within=30, what="a handler running"
    )
    kill(inventory)  # mid-handler: before the reserve effect of the entered commands
    assert not any(k.endswith(":reserve") for k in await world.ledger())
    world.spawn("inventory")
    records = await world.converged(ids, within=60)
    assert {r.status.value for r in records.values()} == {"COMPLETED"}, _errors(records)
    _check(records, await world.ledger())


async def _count(world: World, part: str, at_least: int) -> bool:
    return sum(1 for k in await world.ledger() if part in k) >= at_least
