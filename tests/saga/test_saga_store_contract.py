"""The SagaStore contract, run against MemorySagaStore, RedisSagaStore (real Redis) and
PostgresSagaStore (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.backends.postgres._transaction import PostgresTransaction
from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import (
    LeaseLost,
    MemorySagaStore,
    SagaNotFound,
    SagaRecord,
    SagaStateError,
    SagaStatus,
)
from nativekit.saga._errors import UnknownSaga
from nativekit.saga._store.model import Transition, Waiting
from nativekit.saga._store.outbox import OutboxEntry
from nativekit.saga._store.store import UNFINISHED, SagaStore
from nativekit.testing import ManualClock

SHORT = 0.05  # seconds: a lease that expires during the test
#: seconds: a retention that outlasts a few round trips even on a loaded machine
OUTLASTS = 1.0


def record(saga_id: str, name: str = "place-order", definition: str = "d1") -> SagaRecord:
    """A fresh RUNNING record."""
    now = time.time()
    return SagaRecord(
        saga_id=saga_id,
        name=name,
        definition=definition,
        status=SagaStatus.RUNNING,
        input='{"order_id":"o"}',
        created_at=now,
        updated_at=now,
    )


async def write(
    store: SagaStore,
    saga: SagaRecord,
    token: str,
    change: Transition,
    *,
    lease: float = 30,
    retention: float = 60,
) -> None:
    """Write ``change`` as the holder of ``token`` and track the status locally."""
    await store.write(
        saga.saga_id,
        token,
        change,
        current=saga.status,
        name=saga.name,
        definition=saga.definition,
        lease=lease,
        retention=retention,
    )
    if change.status is not None:
        saga.status = change.status


async def eventually(check: Callable[[], Awaitable[Any]], deadline: float = 3.0) -> Any:
    """Poll ``check`` until it returns a truthy value (or fail after ``deadline`` seconds)."""
    end = time.monotonic() + deadline
    while True:
        value = await check()
        if value or time.monotonic() > end:
            return value
        await asyncio.sleep(0.02)


class SagaStoreContract:
    """Behaviour every SagaStore must have."""

    async def expire(self, store: SagaStore, seconds: float = SHORT) -> None:
        """Let leases and retentions of ``seconds`` (SHORT ones by default) run out."""
        raise NotImplementedError

    async def test_create_then_get_round_trips_the_record(self, store: SagaStore) -> None:
        """A created instance reads back with its fields and a live lease."""
        saga = record("a")
        saga.step("reserve").attempts = 1
        stored, created = await store.create(saga, token="t1", lease=30)
        assert created and stored.saga_id == "a"
        got = await store.get("a")
        assert got is not None
        assert (got.name, got.definition, got.status, got.input) == (
            "place-order",
            "d1",
            SagaStatus.RUNNING,
            '{"order_id":"o"}',
        )
        assert got.steps["reserve"].attempts == 1
        assert got.token == "t1" and got.lease_until is not None
        assert await store.get("missing") is None

    async def test_creating_an_existing_id_returns_the_existing_one(self, store: SagaStore) -> None:
        """A second create of an id stores nothing and returns the first instance."""
        await store.create(record("a", definition="d1"), token="t1", lease=30)
        existing, created = await store.create(record("a", definition="d2"), token="t2", lease=30)
        assert not created
        assert existing.definition == "d1" and existing.token == "t1"

    async def test_a_retried_create_with_its_own_token_reports_created(
        self, store: SagaStore
    ) -> None:
        """A create run again with the same token (a driver retry after the first run went
        through) reports created; another token still finds the id taken."""
        _, created = await store.create(record("r"), token="mine", lease=30)
        again, created_again = await store.create(record("r"), token="mine", lease=30)
        assert created and created_again
        assert again.saga_id == "r" and again.token == "mine"
        other, created_other = await store.create(record("r"), token="theirs", lease=30)
        assert not created_other and other.token == "mine"
        with pytest.raises(LeaseLost):  # still leased to "mine"
            await store.claim("r", "theirs", lease=30)

    async def test_write_with_the_current_token_applies_fields_and_status(
        self, store: SagaStore
    ) -> None:
        """A fenced write updates fields and moves the status."""
        saga = record("a")
        await store.create(saga, token="t1", lease=30)
        await write(store, saga, "t1", Transition(fields={"result:reserve": '{"r":1}'}))
        await write(store, saga, "t1", Transition(status=SagaStatus.COMPENSATING))
        got = await store.get("a")
        assert got is not None
        assert got.status is SagaStatus.COMPENSATING
        assert got.results == {"reserve": '{"r":1}'}

    async def test_status_reads_only_the_current_status(self, store: SagaStore) -> None:
        """``status`` follows the record's status, and is None for an unknown id."""
        saga = record("a")
        await store.create(saga, token="t1", lease=30)
        assert await store.status("a") is SagaStatus.RUNNING
        await write(store, saga, "t1", Transition(status=SagaStatus.COMPLETED))
        assert await store.status("a") is SagaStatus.COMPLETED
        assert await store.status("missing") is None

    async def test_write_with_a_stale_token_is_refused(self, store: SagaStore) -> None:
        """After a forced claim by another runner, the old token cannot write."""
        saga = record("a")
        await store.create(saga, token="old", lease=30)
        await store.claim("a", "new", lease=30, force=True)
        with pytest.raises(LeaseLost):
            await write(store, saga, "old", Transition(fields={"error": "x"}))
        got = await store.get("a")
        assert got is not None and got.error is None

    async def test_claim_is_refused_while_the_lease_is_live(self, store: SagaStore) -> None:
        """A live lease cannot be claimed without force; a missing saga raises SagaNotFound."""
        await store.create(record("a"), token="t1", lease=30)
        with pytest.raises(LeaseLost):
            await store.claim("a", "t2", lease=30)
        with pytest.raises(SagaNotFound):
            await store.claim("nope", "t2", lease=30)

    async def test_expired_leases_are_claimed_once_for_known_definitions(
        self, store: SagaStore
    ) -> None:
        """claim_expired takes expired active sagas of known definitions, each only once."""
        await store.create(record("a"), token="t1", lease=SHORT)
        await store.create(record("b", definition="other"), token="t1", lease=SHORT)
        await store.create(record("c"), token="t1", lease=30)
        await self.expire(store)
        assert await store.backlog() == 2
        # one token for every attempt: which shard is read first is the store's business
        claimed = await store.claim_expired(["place-order:d1"], lambda: "n1", lease=30, limit=10)
        assert [(r.saga_id, r.token) for r in claimed] == [("a", "n1")]
        again = await store.claim_expired(["place-order:d1"], lambda: "n9", lease=30, limit=10)
        assert again == []

    async def test_renew_extends_only_current_leases(self, store: SagaStore) -> None:
        """renew keeps a lease alive and reports False for a stale token."""
        await store.create(record("a"), token="t1", lease=SHORT)
        await store.create(record("b"), token="t1", lease=30)
        assert await store.renew([("a", "t1"), ("b", "stale")], lease=30) == [True, False]
        await self.expire(store)
        assert await store.claim_expired(["place-order:d1"], lambda: "x", lease=30, limit=10) == []

    async def test_finishing_releases_the_lease_and_expires_after_retention(
        self, store: SagaStore
    ) -> None:
        """A COMPLETED saga holds no lease, is never claimed, and is gone after retention."""
        # Two sagas: the one read back keeps a retention no test run outlasts, so what is
        # checked before the expiry never races the store's clock (a SHORT retention
        # can run out between two round trips on a loaded machine); the other expires.
        kept, gone = record("a"), record("b")
        for saga in (kept, gone):
            await store.create(saga, token="t1", lease=SHORT)
        await write(store, kept, "t1", Transition(status=SagaStatus.COMPLETED), retention=3600)
        await write(store, gone, "t1", Transition(status=SagaStatus.COMPLETED), retention=SHORT)
        got = await store.get("a")
        assert got is not None and got.status is SagaStatus.COMPLETED and got.token is None
        with pytest.raises(LeaseLost):
            await write(store, kept, "t1", Transition(fields={"error": "late"}))
        await self.expire(store)  # past every lease and the SHORT retention
        assert await store.claim_expired(["place-order:d1"], lambda: "t2", lease=30, limit=10) == []
        assert await store.get("b") is None
        completed = await store.list(status=SagaStatus.COMPLETED)
        assert [r.saga_id for r in completed.items] == ["a"]

    async def test_release_hands_an_active_saga_to_recovery_at_once(self, store: SagaStore) -> None:
        """A released lease of a RUNNING saga is claimable immediately."""
        saga = record("a")
        await store.create(saga, token="t1", lease=30)
        await write(store, saga, "t1", Transition(release=True))

        async def claim() -> list[SagaRecord]:
            return await store.claim_expired(["place-order:d1"], lambda: "t2", lease=30, limit=5)

        claimed = await eventually(claim)
        assert [r.saga_id for r in claimed] == ["a"]

    async def test_release_if_any_releases_only_when_a_named_field_is_held(
        self, store: SagaStore
    ) -> None:
        """``release_if_any`` keeps the lease (long) unless the record holds a named field."""

        async def claim(token: str) -> list[str]:
            got = await store.claim_expired(["place-order:d1"], lambda: token, lease=30, limit=5)
            return [r.saga_id for r in got]

        saga = record("a")
        await store.create(saga, token="t1", lease=30)
        parked = Transition(fields={"awaiting": '["review"]'}, release_if_any=["event:review"])
        await write(store, saga, "t1", parked, lease=600)
        assert await claim("t2") == []
        assert (await store.get("a")).token == "t1"  # type: ignore[union-attr]
        other = record("b")
        await store.create(other, token="u1", lease=30)
        await store.signal("b", "review", '{"ok":true}')  # delivered before it parks
        await write(store, other, "u1", parked, lease=600)
        assert await eventually(lambda: claim("u2")) == ["b"]

    async def test_signal_stores_an_event_once_and_wakes_a_saga_awaiting_it(
        self, store: SagaStore
    ) -> None:
        """The first delivery is stored (and releases an awaiting saga); a second is not."""
        saga = record("a")
        await store.create(saga, token="t1", lease=30)
        await write(store, saga, "t1", Transition(fields={"awaiting": '["review"]'}), lease=600)
        assert await store.signal("a", "other", "1") == (True, False)  # not awaited: no wake
        assert (await store.get("a")).token == "t1"  # type: ignore[union-attr]
        assert await store.signal("a", "review", '{"ok":true}') == (True, True)
        assert await store.signal("a", "review", '{"ok":false}') == (False, False)
        stored = await store.get("a")
        assert stored is not None and stored.token is None
        assert stored.events == {"other": "1", "review": '{"ok":true}'}
        claimed = await store.claim("a", "t2", lease=30)  # released: claimable at once
        assert claimed.token == "t2"

    async def test_signal_is_refused_for_a_finished_or_unknown_saga(self, store: SagaStore) -> None:
        """A COMPLETED saga refuses events with SagaStateError naming it; no saga: SagaNotFound."""
        saga = record("a")
        await store.create(saga, token="t1", lease=30)
        await write(store, saga, "t1", Transition(status=SagaStatus.COMPLETED))
        with pytest.raises(SagaStateError, match=r"saga 'a' is COMPLETED and takes no more events"):
            await store.signal("a", "review", "1")
        with pytest.raises(SagaNotFound):
            await store.signal("nope", "review", "1")

    async def test_deadline_awaiting_timers_and_events_round_trip(self, store: SagaStore) -> None:
        """The fields of deadlines and durable waits read back into the record."""
        saga = record("a")
        saga.deadline = 1_800_000_000.5
        await store.create(saga, token="t1", lease=30)
        fields = {"awaiting": '["x"]', "timer:s:forward:1": "1800000001.25"}
        await write(store, saga, "t1", Transition(fields=fields))
        stored = await store.get("a")
        assert stored is not None
        assert stored.deadline == 1_800_000_000.5
        assert stored.awaiting == ["x"] and stored.timers == {"timer:s:forward:1": 1800000001.25}

    async def test_an_aborted_saga_made_active_again_no_longer_expires(
        self, store: SagaStore
    ) -> None:
        """The retention an ABORTED write sets is dropped when the saga runs again (retry)."""
        # The retention must outlast the claim and the write that make the saga active
        # again: a SHORT one can run out between two round trips on a loaded machine, and
        # the claim then finds no saga. A second saga aborted with the same retention and
        # left so is gone after it: the wait did reach past the retention.
        again, left = record("a"), record("b")
        for saga in (again, left):
            await store.create(saga, token="t1", lease=30)
            aborted = Transition(status=SagaStatus.ABORTED)
            await write(store, saga, "t1", aborted, retention=OUTLASTS)
        await store.claim("a", "t2", lease=30, force=True)
        await write(store, again, "t2", Transition(status=SagaStatus.RUNNING, release=True))
        await self.expire(store, OUTLASTS)
        got = await store.get("a")
        assert got is not None and got.status is SagaStatus.RUNNING
        assert await store.get("b") is None

    async def test_list_filters_by_status_and_name_and_pages(self, store: SagaStore) -> None:
        """Listing filters by status and name, oldest first, and pages with a cursor."""
        for i in range(5):
            await store.create(record(f"s{i}"), token="t", lease=30)
        await store.create(record("other", name="refund"), token="t", lease=30)
        done = record("done")
        await store.create(done, token="t", lease=30)
        await write(store, done, "t", Transition(status=SagaStatus.COMPLETED))
        first = await store.list(status=SagaStatus.RUNNING, name="place-order", limit=3)
        assert len(first.items) == 3 and first.cursor is not None
        second = await store.list(
            status=SagaStatus.RUNNING, name="place-order", limit=3, cursor=first.cursor
        )
        ids = [r.saga_id for r in first.items + second.items]
        assert sorted(ids) == [f"s{i}" for i in range(5)] and second.cursor is None
        assert [r.saga_id for r in (await store.list(name="refund")).items] == ["other"]
        completed = await store.list(status=SagaStatus.COMPLETED)
        assert [r.saga_id for r in completed.items] == ["done"]
        assert len((await store.list()).items) == 7

    async def test_list_older_than_uses_time_in_status(self, store: SagaStore) -> None:
        """older_than returns only sagas in their status for at least that long."""
        await store.create(record("a"), token="t", lease=30)
        assert (await store.list(older_than=3600)).items == []
        await self.expire(store)
        assert [r.saga_id for r in (await store.list(older_than=SHORT / 2)).items] == ["a"]

    async def test_live_definitions_counts_active_instances_per_hash(
        self, store: SagaStore
    ) -> None:
        """live_definitions counts RUNNING/COMPENSATING instances by definition hash."""
        await store.create(record("a", definition="d1"), token="t", lease=30)
        await store.create(record("b", definition="d1"), token="t", lease=30)
        c = record("c", definition="d2")
        await store.create(c, token="t", lease=30)
        await store.create(record("z", name="refund"), token="t", lease=30)
        assert await store.live_definitions("place-order") == {"d1": 2, "d2": 1}
        await write(store, c, "t", Transition(status=SagaStatus.COMPENSATED))
        assert await store.live_definitions("place-order") == {"d1": 2}

    async def test_claim_reply_leases_only_the_saga_waiting_for_that_reply(
        self, store: SagaStore
    ) -> None:
        """claim_reply leases a saga waiting for exactly that attempt's reply, and refuses
        a reply for another attempt (late), an unknown saga or an unknown definition."""
        saga = record("w")
        await store.create(saga, token="t1", lease=30)
        wait = Waiting("reserve", "forward", 1, "reply-token", 5.0)
        await write(store, saga, "t1", Transition(fields={"wait": wait.encode()}))
        known = ["place-order:d1"]
        other_attempt = Waiting("reserve", "forward", 2, "reply-token", 5.0)
        with pytest.raises(LeaseLost):
            await store.claim_reply("w", other_attempt, "t2", lease=30, known=known)
        with pytest.raises(UnknownSaga):
            await store.claim_reply("missing", wait, "t2", lease=30, known=known)
        with pytest.raises(UnknownSaga):
            await store.claim_reply("w", wait, "t2", lease=30, known=["place-order:d0"])
        claimed = await store.claim_reply("w", wait, "t2", lease=30, known=known)
        assert claimed.token == "t2" and claimed.wait == wait.encode()
        with pytest.raises(LeaseLost):  # the old runner is fenced out
            await write(store, saga, "t1", Transition(fields={"x": "1"}))

    async def test_concurrent_transitions_of_many_sagas_each_apply_or_fail_alone(
        self, store: SagaStore
    ) -> None:
        """Creates, writes, reply claims and status reads of many sagas made at once (a
        batch of replies resuming sagas) each apply to their own saga; a stale token
        fails only its own write."""
        sagas = [record(f"c{i}") for i in range(12)]
        created = await asyncio.gather(*(store.create(s, token="t1", lease=30) for s in sagas))
        assert all(ok for _, ok in created)
        wait = Waiting("reserve", "forward", 1, "reply-token", 5.0)
        waiting = Transition(fields={"wait": wait.encode()})
        await asyncio.gather(*(write(store, s, "t1", waiting) for s in sagas))
        known = ["place-order:d1"]
        claimed = await asyncio.gather(
            *(
                store.claim_reply(s.saga_id, wait, f"t2-{s.saga_id}", lease=30, known=known)
                for s in sagas
            )
        )
        assert [c.token for c in claimed] == [f"t2-{s.saga_id}" for s in sagas]
        tokens = [f"t2-{s.saga_id}" if i % 3 else "t1" for i, s in enumerate(sagas)]
        done = Transition(status=SagaStatus.COMPLETED)
        results = await asyncio.gather(
            *(write(store, s, t, done) for s, t in zip(sagas, tokens, strict=True)),
            return_exceptions=True,
        )
        stale = [i for i, r in enumerate(results) if isinstance(r, LeaseLost)]
        assert stale == [i for i in range(len(sagas)) if i % 3 == 0]
        assert not [r for r in results if r is not None and not isinstance(r, LeaseLost)]
        statuses = await asyncio.gather(*(store.status(s.saga_id) for s in sagas))
        assert statuses == [
            SagaStatus.RUNNING if i % 3 == 0 else SagaStatus.COMPLETED for i in range(len(sagas))
        ]

    async def test_claim_reply_of_a_group_member_stores_it_until_every_member_replied(
        self, store: SagaStore
    ) -> None:
        """A reply to a ``wait:<step>`` (a command member of a parallel group) is stored as
        ``reply:<step>``; the saga is leased only when no other member's wait is left, and
        a second copy of a stored reply is late."""
        saga = record("g")
        await store.create(saga, token="t1", lease=30)
        a = Waiting("stock", "forward", 1, "tok-a", 5.0)
        b = Waiting("pay", "forward", 1, "tok-b", 5.0)
        fields = {"wait:stock": a.encode(), "wait:pay": b.encode()}
        await write(store, saga, "t1", Transition(fields=fields, lease=30))
        known = ["place-order:d1"]
        with pytest.raises(LeaseLost):  # another attempt of the member: late
            await store.claim_reply(
                "g", Waiting("stock", "forward", 2, "tok-a", 5.0), "t2", lease=30, known=known
            )
        with pytest.raises(UnknownSaga):  # nothing stored for an unknown definition
            await store.claim_reply("g", a, "t2", lease=30, known=["place-order:d0"], reply="x")
        assert await store.claim_reply("g", a, "t2", lease=30, known=known, reply="ra") is None
        stored = await store.get("g")
        assert stored is not None and stored.token == "t1"  # the lease is left alone
        assert stored.replies == {"stock": "ra"} and stored.waits == {"pay": b.encode()}
        with pytest.raises(LeaseLost):  # the same reply again: the wait is gone
            await store.claim_reply("g", a, "t2", lease=30, known=known, reply="again")
        claimed = await store.claim_reply("g", b, "t3", lease=30, known=known, reply="rb")
        assert claimed is not None and claimed.token == "t3"
        assert claimed.replies == {"stock": "ra", "pay": "rb"} and claimed.waits == {}
        with pytest.raises(LeaseLost):  # the runner that parked the group is fenced out
            await write(store, saga, "t1", Transition(fields={"x": "1"}))

    async def test_a_member_reply_stored_while_its_runner_parks_releases_the_lease(
        self, store: SagaStore
    ) -> None:
        """A runner that re-parks a group names ``reply:<step>`` of the members it still
        waits for in ``release_if_any``: a reply stored meanwhile releases the lease."""
        saga = record("r")
        await store.create(saga, token="t1", lease=30)
        a = Waiting("stock", "forward", 1, "tok-a", 5.0)
        b = Waiting("pay", "forward", 1, "tok-b", 5.0)
        fields = {"wait:stock": a.encode(), "wait:pay": b.encode()}
        await write(store, saga, "t1", Transition(fields=fields, lease=30))
        known = ["place-order:d1"]
        assert await store.claim_reply("r", b, "t2", lease=30, known=known, reply="rb") is None
        park = Transition(fields={"x": "1"}, lease=30, release_if_any=["reply:stock"])
        await write(store, saga, "t1", park)  # no reply for stock: the lease is kept
        with pytest.raises(LeaseLost):
            await store.claim("r", "t3", lease=30)
        park = Transition(fields={"reply:old": ""}, lease=30, release_if_any=["reply:old"])
        await write(store, saga, "t1", park)  # a field emptied ("") counts as absent
        with pytest.raises(LeaseLost):
            await store.claim("r", "t3", lease=30)
        park = Transition(fields={"x": "2"}, lease=30, release_if_any=["reply:pay"])
        await write(store, saga, "t1", park)
        assert (await store.claim("r", "t3", lease=30)).replies == {"pay": "rb"}

    async def test_outbox_entries_are_written_with_the_transition_and_read_once(
        self, store: SagaStore
    ) -> None:
        """Entries of a write appear in the store's outbox; acknowledged, they are gone."""
        saga = record("o")
        await store.create(saga, token="t1", lease=30)
        entry = OutboxEntry("e1", "orders.events", "o", "{}", "OrderPlaced")
        await write(store, saga, "t1", Transition(fields={"x": "1"}, outbox=[entry.encode()]))
        outbox = store.outbox(consumer="relay-1", claim_after=30)
        await outbox.start()
        batch = await outbox.read(10)
        assert [e.id for e in batch.entries] == ["e1"]
        await outbox.ack(batch.handles)
        assert (await outbox.backlog())[0] == 0
        assert (await outbox.read(10)).entries == []

    async def test_counts_follow_instances_through_their_statuses(self, store: SagaStore) -> None:
        """``counts`` gives every unfinished status of every asked-for saga, moves an
        instance from one status to the next, and leaves finished ones and other sagas out."""
        names = ["place-order", "refund"]
        assert await store.counts(names) == {
            (name, status): 0 for name in names for status in UNFINISHED
        }
        sagas = [record(f"s{i}") for i in range(4)] + [record("r1", name="refund")]
        for saga in [*sagas, record("x1", name="other")]:
            await store.create(saga, token="t", lease=30)
        await write(store, sagas[1], "t", Transition(status=SagaStatus.COMPENSATING))
        await write(store, sagas[2], "t", Transition(status=SagaStatus.FAILED))
        await write(store, sagas[3], "t", Transition(status=SagaStatus.COMPLETED))
        await write(store, sagas[4], "t", Transition(status=SagaStatus.FAILED))
        counts = await store.counts(names)
        assert counts == {
            ("place-order", SagaStatus.RUNNING): 1,
            ("place-order", SagaStatus.COMPENSATING): 1,
            ("place-order", SagaStatus.FAILED): 1,
            ("refund", SagaStatus.RUNNING): 0,
            ("refund", SagaStatus.COMPENSATING): 0,
            ("refund", SagaStatus.FAILED): 1,
        }
        await write(store, sagas[0], "t", Transition(status=SagaStatus.FAILED))
        counts = await store.counts(["place-order"])
        assert counts[("place-order", SagaStatus.RUNNING)] == 0
        assert counts[("place-order", SagaStatus.FAILED)] == 2

    async def test_ping_succeeds(self, store: SagaStore) -> None:
        """A reachable store answers ping."""
        await store.ping()


class TestMemorySagaStore(SagaStoreContract):
    """The reference implementation."""

    @pytest.fixture
    def store(self) -> SagaStore:
        """A memory store on a manual clock."""
        self.clock = ManualClock()
        return MemorySagaStore(clock=self.clock)

    async def expire(self, store: SagaStore, seconds: float = SHORT) -> None:
        """Move the manual clock past ``seconds``."""
        self.clock.advance(seconds + SHORT * 3)


@pytest.mark.postgres
class TestPostgresSagaStore(SagaStoreContract):
    """The PostgreSQL implementation on a real server."""

    @pytest.fixture
    def store(self, pg_database: Database) -> SagaStore:
        """A store in a schema of this test's own."""
        return PostgresSagaStore(pg_database)

    async def expire(self, store: SagaStore, seconds: float = SHORT) -> None:
        """Wait (real time) until leases of ``seconds`` have run out on the server clock."""
        await asyncio.sleep(seconds + SHORT * 3)


class EndingStore(PostgresSagaStore):
    """Writes each transition without outbox entries as a step that used ``ctx.db`` ends
    its transaction: one ``saga_write`` call sent with the COMMIT."""

    async def write(self, saga_id: str, token: str, change: Transition, **kwargs: Any) -> None:
        """The write in a begun transaction, which it must end (committed or rolled back)."""
        if change.outbox:
            await super().write(saga_id, token, change, **kwargs)
            return
        transaction = PostgresTransaction(self.db)
        try:
            await transaction.execute("SELECT 1")
            with transaction.joined():
                await super().write(saga_id, token, change, **kwargs)
            assert transaction.ended, "the write did not end the transaction (no saga_write)"
            await transaction.commit()
        finally:
            await transaction.close()


@pytest.mark.postgres
class TestPostgresSagaStoreEndingTransactions(TestPostgresSagaStore):
    """The PostgreSQL implementation, every plain transition written by ``saga_write``."""

    @pytest.fixture
    def store(self, pg_database: Database) -> SagaStore:
        """A store whose writes end a step's transaction."""
        return EndingStore(pg_database)


@pytest.mark.redis
class TestRedisSagaStore(SagaStoreContract):
    """The Redis implementation on a real server."""

    @pytest.fixture
    async def store(self, redis_url: str, unique: str) -> AsyncIterator[SagaStore]:
        """A Redis store under a unique prefix, removed afterwards."""
        client = aioredis.Redis.from_url(redis_url)
        prefix = f"test:store:{unique}"
        yield RedisSagaStore(client, prefix=prefix, shards=3)
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    async def expire(self, store: SagaStore, seconds: float = SHORT) -> None:
        """Wait (real time) until leases of ``seconds`` have run out on the server clock."""
        await asyncio.sleep(seconds + SHORT * 3)


@pytest.mark.redis
class TestClusterSagaStore(SagaStoreContract):
    """The Redis implementation on a real 3-master Redis Cluster (shards spread over nodes)."""

    @pytest.fixture
    async def store(self, cluster_client: Any, unique: str) -> AsyncIterator[SagaStore]:
        """A store with 8 shards under a unique prefix, removed afterwards."""
        prefix = f"test:store:{unique}"
        yield RedisSagaStore(cluster_client, prefix=prefix, shards=8)
        async for key in cluster_client.scan_iter(match=f"*{prefix}*", count=500):
            await cluster_client.delete(key)

    async def expire(self, store: SagaStore, seconds: float = SHORT) -> None:
        """Wait (real time) until leases of ``seconds`` have run out on the server clocks."""
        await asyncio.sleep(seconds + SHORT * 3)
