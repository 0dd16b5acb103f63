"""Every metric the shipped Grafana dashboard and alert rules name is in the /metrics of the
shop running as processes on real Redis and Kafka, with the labels the queries use."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.files import expressions
from tests.deploy.promql import names
from tests.shop.conftest import Shop
from tests.shop.test_cluster import place, stock

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]

#: Labels Prometheus adds when it scrapes (a query may group by them).
SCRAPE_LABELS = {"instance", "job"}


async def exposed(shop: Shop) -> dict[str, list[dict[str, str]]]:
    """Label sets of every sample the three services expose, by sample name."""
    found: dict[str, list[dict[str, str]]] = defaultdict(list)
    for service in ("orders", "payments", "inventory"):
        async with shop.client(service) as client:
            await client.get("/readyz")  # what the kubelet does between scrapes
            reply = await client.get("/metrics")
        assert reply.status_code == 200, reply.text
        for family in text_string_to_metric_families(reply.text):
            for sample in family.samples:
                found[sample.name].append(dict(sample.labels))
    return found


def missing(found: dict[str, list[dict[str, str]]]) -> list[str]:
    """What the expressions name that ``found`` lacks: metrics, label names, label values."""
    problems = []
    for where, expr in expressions().items():
        read = names(expr)
        known = set(SCRAPE_LABELS)
        for selector in read.selectors:
            series = found.get(selector.metric)
            if not series:
                problems.append(f"{where}: no samples of {selector.metric}")
                continue
            labels = {label for s in series for label in s}
            known |= labels
            for label, op, value in selector.matchers:
                if label not in labels:
                    problems.append(f"{where}: {selector.metric} has no label {label!r}")
                elif op == "=" and not any(s.get(label) == value for s in series):
                    problems.append(f"{where}: no {selector.metric}{{{label}={value!r}}}")
        unknown = read.grouping - known - {"le"}
        if unknown:
            problems.append(f"{where}: grouping by labels no metric has: {sorted(unknown)}")
    return problems


async def test_every_metric_of_the_dashboard_and_alerts_is_exposed(shop: Shop) -> None:
    """An order confirmed, one cancelled (declined card), cached reads: then each metric
    name, matcher and grouping label of every panel and alert is in the exposition."""
    [sku] = await stock(shop, lamp=10)
    assert (await place(shop, [(sku, 1)]))["status"] == "CONFIRMED"
    assert (await place(shop, [(sku, 1)], token="tok_decline"))["status"] == "CANCELLED"
    async with shop.client("inventory") as inventory:
        for _ in range(2):  # a miss, then a hit
            assert (await inventory.get(f"/inventory/products/{sku}")).status_code == 200
    deadline = time.monotonic() + 60  # consumer lag is measured every 5 s
    while True:
        problems = missing(await exposed(shop))
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert problems == []
