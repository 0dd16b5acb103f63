"""The PostgreSQL dedup store's lease column (migration 0003): finishes and renewals are
HOT updates, a lapsed lease is claimed again while DONE marks stay for their retention,
and a schema at version 2 with rows in it upgrades to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nativekit.backends.postgres import Database, PostgresDedupStore, upgrade
from nativekit.backends.postgres._migrations import migrations
from nativekit.messaging._dedup import ClaimStatus
from tests.postgres.conftest import schema_at_version, table_updates

pytestmark = pytest.mark.postgres

RETAIN = 60.0


@pytest.fixture
def store(pg_database: Database, unique: str) -> PostgresDedupStore:
    """A store told its consumer's retention, as the backend factory makes it."""
    return PostgresDedupStore(pg_database, namespace=f"n-{unique}", retention=RETAIN)


async def row(database: Database, namespace: str, key: str) -> dict[str, object]:
    """The stored row of ``key``, with the server clock's ``now``."""
    async with database.connection("test row") as connection:
        found = await connection.fetchrow(
            f"SELECT *, extract(epoch from clock_timestamp())::double precision AS now "
            f"FROM {database.table('dedup')} WHERE namespace = $1 AND key = $2",
            namespace,
            key,
        )
    assert found is not None
    return dict(found)


async def test_finishes_and_renewals_are_hot_updates(
    store: PostgresDedupStore, pg_database: Database
) -> None:
    """Renewing 50 leases and finishing them with the store's retention writes no index
    entry: every one of the 100 updates is HOT."""
    upd, hot = await table_updates(pg_database, "dedup")
    claims = await store.claim_many([f"k{i}" for i in range(50)], lease=5)
    assert await store.renew_many(claims, lease=5) == [True] * 50
    assert await store.finish_many(claims, retain=RETAIN) == [True] * 50
    upd_after, hot_after = await table_updates(pg_database, "dedup")
    assert (upd_after - upd, hot_after - hot) == (100, 100)


async def test_a_batch_shares_one_token(store: PostgresDedupStore) -> None:
    """One nextval per claim batch: its keys share the token, the next batch's is larger."""
    first = await store.claim_many(["a", "b", "c"], lease=5)
    second = await store.claim_many(["d"], lease=5)
    assert len({c.token for c in first}) == 1
    assert second[0].token > first[0].token


async def test_lapsed_lease_is_claimed_again_and_done_is_kept(
    store: PostgresDedupStore,
) -> None:
    """A claim past its lease (its row still far from expiring) is claimed again with a
    larger token and reads as no record; the first owner is fenced; the DONE mark the
    second owner writes outlives the lease and reads DONE."""
    [first] = await store.claim_many(["a"], lease=0.05)
    await asyncio.sleep(0.12)
    assert await store.states(["a"]) == [None]
    [second] = await store.claim_many(["a"], lease=0.05)
    assert second.status is ClaimStatus.CLAIMED and second.token > first.token
    assert await store.renew_many([first], lease=5) == [False]
    assert await store.finish_many([first], retain=RETAIN) == [False]
    assert await store.finish_many([second], retain=RETAIN) == [True]
    await asyncio.sleep(0.12)
    assert [c.status for c in await store.claim_many(["a"], lease=5)] == [ClaimStatus.DONE]
    assert await store.states(["a"]) == ["DONE"]
    assert await store.delete_expired(100) == 0


async def test_done_covers_the_retention_and_at_most_one_lease_more(
    store: PostgresDedupStore, pg_database: Database
) -> None:
    """The DONE mark's expiry, set at claim time, lies between finish + retention and
    claim + lease + retention; a finish with another retention sets it exactly."""
    claims = await store.claim_many(["a", "b"], lease=5)
    await store.finish_many(claims[:1], retain=RETAIN)
    await store.finish_many(claims[1:], retain=1.0)
    a, b = (
        await row(pg_database, store.namespace, "a"),
        await row(pg_database, store.namespace, "b"),
    )
    assert a["now"] + RETAIN <= a["expires"] <= a["now"] + RETAIN + 5  # type: ignore[operator]
    assert b["expires"] <= b["now"] + 1.0  # type: ignore[operator]


async def test_renewal_past_the_expiry_moves_it(pg_database: Database, unique: str) -> None:
    """With a retention shorter than a renewed lease, renewing moves expires along, so the
    held claim is neither claimed nor deleted."""
    store = PostgresDedupStore(pg_database, namespace=f"n-{unique}")
    [claim] = await store.claim_many(["a"], lease=0.3)
    assert await store.renew_many([claim], lease=5) == [True]
    await asyncio.sleep(0.4)
    assert await store.delete_expired(100) == 0
    assert [c.status for c in await store.claim_many(["a"], lease=5)] == [ClaimStatus.BUSY]
    assert await store.finish_many([claim], retain=RETAIN) == [True]


@pytest.fixture
async def version_2(postgres_url: str, unique: str) -> AsyncIterator[Database]:
    """A schema at version 2 (as an older nativekit left it); dropped afterwards."""
    async with schema_at_version(postgres_url, f"v2_{unique}", 2) as database:
        yield database


async def test_upgrade_from_version_2_keeps_existing_rows(version_2: Database) -> None:
    """Rows written before migration 0003 keep their meaning: a live claim stays busy
    (its lease backfilled from expires), a lapsed one is claimed, a DONE stays DONE; a
    claim an older replica writes afterwards (no lease) is busy until its expires; the
    table gets fillfactor 50."""
    now = "extract(epoch from clock_timestamp())::double precision"
    async with version_2.connection("old rows") as connection:
        await connection.execute(
            f"INSERT INTO {version_2.table('dedup')} (namespace, key, state, token, expires) "
            f"VALUES ('n', 'live', 'P', 1, {now} + 60), ('n', 'lapsed', 'P', 2, {now} - 1), "
            f"('n', 'done', 'D', 3, {now} + 60), ('n', 'dead', 'X', 4, {now} + 60)"
        )
    applied = [m.version for m in await upgrade(version_2)]
    assert applied == list(range(3, migrations()[-1].version + 1))
    async with version_2.connection("new rows") as connection:
        await connection.execute(
            f"INSERT INTO {version_2.table('dedup')} (namespace, key, state, token, expires) "
            f"VALUES ('n', 'old-replica', 'P', 5, {now} + 0.3)"
        )
        options = await connection.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", version_2.table("dedup")
        )
        leases = dict(
            await connection.fetch(
                f"SELECT key, lease = expires FROM {version_2.table('dedup')} WHERE state = 'P'"
            )
        )
    assert options == ["fillfactor=50"]
    assert leases == {"live": True, "lapsed": True, "old-replica": None}
    store = PostgresDedupStore(version_2, namespace="n", retention=RETAIN)
    keys = ["live", "lapsed", "done", "dead", "old-replica"]
    assert [c.status for c in await store.claim_many(keys, lease=5)] == [
        ClaimStatus.BUSY,
        ClaimStatus.CLAIMED,
        ClaimStatus.DONE,
        ClaimStatus.DEAD,
        ClaimStatus.BUSY,
    ]
    assert await store.states(["live", "old-replica"]) == ["IN_PROGRESS", "IN_PROGRESS"]
    await asyncio.sleep(0.4)
    [taken] = await store.claim_many(["old-replica"], lease=5)
    assert taken.status is ClaimStatus.CLAIMED
