"""The shop cluster with inventory on PostgreSQL (SHOP_DATABASE_URL): the same flows and
invariants as on Redis, with each reservation committed with the command's stored reply."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from examples.shop.cluster import Cluster
from nativekit.testing import servers
from tests.shop.conftest import TRACED, Shop, cluster_env, delete_keys
from tests.shop.test_cluster import (  # the flows, run again on this module's cluster
    test_200_concurrent_orders_never_oversell,
    test_declined_card_releases_stock_and_cancels,
    test_happy_path_confirms_charges_and_sells,
    test_out_of_stock_cancels_without_charging,
)

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

__all__ = [
    "test_200_concurrent_orders_never_oversell",
    "test_declined_card_releases_stock_and_cancels",
    "test_happy_path_confirms_charges_and_sells",
    "test_out_of_stock_cancels_without_charging",
]


@pytest.fixture(scope="module")
def shop(
    redis_url: str, kafka_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """orders, payments and inventory as processes; inventory's stock and nativekit state in
    PostgreSQL (its migrations applied at startup)."""
    tag = uuid.uuid4().hex[:10]
    workdir = tmp_path_factory.mktemp(f"shop-pg-{tag}")
    ports = {name: servers.free_port() for name in ("orders", "payments", "inventory")}

    def command(service: str, port: int) -> list[str]:
        return [sys.executable, str(TRACED), service, str(port), str(workdir / f"{service}.jsonl")]

    env = cluster_env(
        redis_url, kafka_url, tag, NATIVEKIT_SAGA_LEASE_SECONDS="3",
        NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS="0.5", SHOP_DATABASE_URL=postgres_url,
    )  # fmt: skip
    cluster = Cluster(env, ports=ports, command=command, log_dir=workdir)
    running = Shop(cluster, tag, workdir)
    try:
        for service in ports:
            running.start(service)
        cluster.wait_ready(60)
        yield running
    finally:
        cluster.stop()
        delete_keys(redis_url, tag)
        servers.delete_topics_now(kafka_url, [f"shop-{tag}."])


async def test_inventory_keeps_stock_and_replies_in_postgresql(
    shop: Shop, postgres_url: str
) -> None:
    """Placed orders left their reservations in the shop's table and the stored replies of
    the reserve commands in nativekit's (runs after the flows above)."""
    import asyncpg

    await test_happy_path_confirms_charges_and_sells(shop)
    connection = await asyncpg.connect(postgres_url)
    try:
        sold = await connection.fetchval(
            "SELECT count(*) FROM shop_inventory.reservations WHERE state = 'SOLD'"
        )
        replies = await connection.fetchval(
            "SELECT count(*) FROM nativekit_inventory.reply WHERE reply IS NOT NULL"
        )
    finally:
        await connection.close()
    assert sold >= 1 and replies >= 1
