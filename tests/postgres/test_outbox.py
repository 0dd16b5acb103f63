"""The PostgreSQL outbox across relays: no row twice, per-saga order, NOTIFY wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._store.model import Transition
from nativekit.saga._store.outbox import OutboxEntry
from nativekit.settings import Settings

pytestmark = pytest.mark.postgres


async def started(store: PostgresSagaStore, saga_id: str) -> SagaRecord:
    """A RUNNING saga leased to token 't'."""
    record = SagaRecord(saga_id, "s", "d", SagaStatus.RUNNING, "{}", 0.0, 0.0)
    await store.create(record, token="t", lease=30)
    return record


async def emit(store: PostgresSagaStore, saga_id: str, *ids: str) -> None:
    """Write entries ``ids`` of ``saga_id`` with one transition."""
    entries = [OutboxEntry(i, "topic", saga_id, "{}", "E").encode() for i in ids]
    await store.write(
        saga_id,
        "t",
        Transition(outbox=entries),
        current=SagaStatus.RUNNING,
        name="s",
        definition="d",
        lease=30,
        retention=60,
    )


async def test_two_relays_never_take_one_row_and_keep_a_sagas_order(
    pg_database: Database,
) -> None:
    """Concurrent reads split the rows; a later row of a saga waits while another relay
    holds an earlier one, and is read once that one is acknowledged."""
    store = PostgresSagaStore(pg_database)
    for n in range(20):
        await started(store, f"s{n}")
        await emit(store, f"s{n}", f"s{n}-a", f"s{n}-b")
    one = store.outbox(consumer="one", claim_after=30)
    two = store.outbox(consumer="two", claim_after=30)
    first, second = await asyncio.gather(one.read(15), two.read(15))
    ids = [e.id for e in first.entries] + [e.id for e in second.entries]
    assert len(ids) == len(set(ids)) == 30
    for batch, other in ((first, second), (second, first)):
        mine = {e.key for e in batch.entries}
        assert not mine & {e.key for e in other.entries}, "a saga's rows went to two relays"
    await one.ack(first.handles)
    rest = await two.read(100)
    assert sorted(e.id for e in rest.entries) == sorted(
        f"s{n}-{x}" for n in range(20) for x in "ab" if f"s{n}-{x}" not in ids
    )
    await two.ack(second.handles + rest.handles)
    assert await one.backlog() == (0, 0.0)


async def test_a_commit_with_outbox_rows_wakes_a_relay_on_another_connection(
    pg_database: Database, postgres_url: str
) -> None:
    """A relay listening through its own pool is woken by another replica's write."""
    other = Database(
        Settings(database={"url": postgres_url, "schema_name": pg_database.schema})
    )
    woken = asyncio.Event()
    outbox = PostgresSagaStore(other).outbox(consumer="r", claim_after=30)
    await outbox.listen(woken.set)
    try:
        store = PostgresSagaStore(pg_database)
        await started(store, "w")
        await asyncio.sleep(0.2)
        assert not woken.is_set()
        await emit(store, "w", "w-1")
        await asyncio.wait_for(woken.wait(), 10)
        assert [e.id for e in (await outbox.read(10)).entries] == ["w-1"]
    finally:
        await outbox.unlisten()
        await other.aclose()
