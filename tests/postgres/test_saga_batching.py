"""Creations and transitions outside a transaction, issued in one event-loop turn by
concurrent sagas, share one statement on PostgreSQL; fencing and errors stay per saga."""

from __future__ import annotations

import asyncio

import pytest

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.saga import SagaStatus
from nativekit.saga._errors import LeaseLost, SagaStateError
from nativekit.saga._store.model import SagaRecord, Transition
from tests.postgres.conftest import running_record
from tests.postgres.test_saga_statements import Statements, counted

pytestmark = pytest.mark.postgres
__all__ = ["counted"]  # the fixture, shared with the statements test


def record(saga_id: str) -> SagaRecord:
    """A fresh RUNNING record."""
    return running_record(saga_id, "batch", '{"order_id":"o"}')


async def write(
    store: PostgresSagaStore, saga_id: str, token: str, change: Transition, current: SagaStatus
) -> None:
    await store.write(
        saga_id, token, change, current=current, name="batch", definition="d1",
        lease=30, retention=60,
    )  # fmt: skip


async def test_one_turn_of_creations_and_writes_is_one_statement_each_fenced_per_saga(
    counted: tuple[Database, Statements],
) -> None:
    """Three creations in one turn: one INSERT. Then three writes in one turn, one with a
    stale token and one naming a status the saga has left: one UPDATE (plus the look-up
    of the two refused), the good one written, the refused ones unchanged."""
    database, statements = counted
    store = PostgresSagaStore(database)
    await store.create(record("warm"), token="t", lease=30)  # array types looked up once
    statements.seen.clear()
    created = await asyncio.gather(*(store.create(record(s), token="t", lease=30)
                                     for s in ("a", "b", "c")))  # fmt: skip
    assert [(r.saga_id, fresh) for r, fresh in created] == [("a", True), ("b", True), ("c", True)]
    assert statements.seen == [("INSERT", "saga")]
    await write(store, "c", "t", Transition(status=SagaStatus.COMPENSATING), SagaStatus.RUNNING)
    statements.seen.clear()
    outcomes = await asyncio.gather(
        write(store, "a", "t", Transition(fields={"error": "x"}), SagaStatus.RUNNING),
        write(store, "b", "stale", Transition(fields={"error": "y"}), SagaStatus.RUNNING),
        write(store, "c", "t", Transition(fields={"error": "z"}), SagaStatus.RUNNING),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], LeaseLost) and isinstance(outcomes[2], SagaStateError)
    assert statements.seen == [("UPDATE", "saga"), ("SELECT", "saga")]
    a, b, c = [await store.get(s) for s in ("a", "b", "c")]
    assert a is not None and a.error == "x" and a.token == "t"
    assert b is not None and b.error is None and c is not None and c.error is None


async def test_a_creation_the_server_refuses_fails_alone(
    counted: tuple[Database, Statements],
) -> None:
    """A saga id PostgreSQL cannot store (a NUL character) fails its own creation; the
    others created in the same turn are stored."""
    database, _ = counted
    store = PostgresSagaStore(database)
    outcomes = await asyncio.gather(
        *(store.create(record(s), token="t", lease=30) for s in ("a", "bad\x00id", "c")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], Exception)
    assert [o[1] for o in (outcomes[0], outcomes[2]) if isinstance(o, tuple)] == [True, True]
    assert await store.status("a") is SagaStatus.RUNNING
    assert await store.status("c") is SagaStatus.RUNNING
