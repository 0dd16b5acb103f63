"""`nativekit dlq` against the real broker and Redis, with real consumers handling replays."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from nativekit import Service
from nativekit.backends.kafka._admin import KafkaAdmin
from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.testing import serve
from tests.cli.conftest import Cli
from tests.messaging.conftest import eventually, kafka_settings

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


class Paid(BaseModel):
    """The event."""

    order_id: str


@dataclass
class Shop:
    """A service with two groups on one topic: billing (fails for ``broken`` and for
    undecodable payloads) and audit (takes any bytes)."""

    svc: Service
    topic: str
    cli: Cli
    kafka_url: str
    broken: set[str] = field(default_factory=set)
    billed: Counter[str] = field(default_factory=Counter)
    audited: Counter[str] = field(default_factory=Counter)

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    async def dead_letters(self, count: int) -> None:
        """Wait until the dead-letter topic holds ``count`` records."""
        admin = KafkaAdmin(kafka_settings(self.kafka_url))
        found = 0

        async def enough() -> bool:
            nonlocal found
            try:
                found = (await admin.read(self.dlq, limit=1000, within=1))[1]
            except LookupError:
                found = 0
            return found >= count

        for _ in range(150):
            if await enough():
                return
        raise AssertionError(f"{self.dlq} holds {found} records, expected {count}")


@asynccontextmanager
async def open_shop(
    kafka_url: str, redis_url: str, unique: str, cli: Cli, **env: str
) -> AsyncIterator[Shop]:
    """The service (not started), a fresh topic, and the command pointed at both; ``env``:
    NATIVEKIT_* variables of the command that the service's settings mirror (a database)."""
    topic = f"pay-{unique}"
    broker = KafkaBroker(kafka_settings(kafka_url))
    await broker.create_topics({topic: 2})
    await broker.aclose()
    database = {
        "url": env["NATIVEKIT_DATABASE_URL"],
        "schema_name": env["NATIVEKIT_DATABASE_SCHEMA_NAME"],
    } if env else {}  # fmt: skip
    settings = kafka_settings(
        kafka_url, redis_url, consumer_retries=0, log_level="CRITICAL", database=database
    )
    svc = Service("billing", settings=settings)
    shop = Shop(svc, topic, cli, kafka_url)

    @svc.consumer(topic, group=f"billing-{unique}")
    async def bill(event: Paid) -> None:
        if event.order_id in shop.broken:
            raise ConnectionError(f"ledger down for {event.order_id}")
        shop.billed[event.order_id] += 1

    @svc.consumer(topic, group=f"audit-{unique}")
    async def audit(event: bytes) -> None:  # takes anything: never dead-letters
        try:
            shop.audited[Paid.model_validate_json(event).order_id] += 1
        except ValueError:
            shop.audited["raw"] += 1

    cli.env.update(
        NATIVEKIT_KAFKA_URL=kafka_url,
        NATIVEKIT_REDIS_URL=redis_url,
        NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER="false",
        **env,
    )
    yield shop
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"nk:dedup:{{*-{unique}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def shop(kafka_url: str, redis_url: str, unique: str, cli: Cli) -> AsyncIterator[Shop]:
    """The shop with its DONE/DEAD marks in Redis."""
    async with open_shop(kafka_url, redis_url, unique, cli) as running:
        yield running


def rows(table: str) -> dict[str, list[str]]:
    """Table lines by their first cell (the REF)."""
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


async def test_list_show_and_replay_through_the_idempotent_consumer(
    shop: Shop, unique: str
) -> None:
    """Dead letters are listed DEAD; a replay is handled once by the failing group only;
    replaying again is skipped; --all replays the rest (a message without id included)."""
    svc, cli = shop.svc, shop.cli
    shop.broken |= {"b", "d"}
    async with serve(svc):
        await svc.publish(shop.topic, Paid(order_id="a"), key="k", message_id=f"{unique}-a")
        await svc.publish(shop.topic, Paid(order_id="b"), key="k", message_id=f"{unique}-b")
        await svc.publish(shop.topic, b"not json", key="k", message_id=f"{unique}-c")
        await svc.messaging.broker.send(shop.topic, b'{"order_id": "d"}', key=b"k")  # no message id
        await shop.dead_letters(3)
        await eventually(lambda: shop.audited["d"] == 1, within=30, what="audit saw d")

        listed = await cli("dlq", "list", shop.dlq)
        as_json = (await cli("dlq", "list", shop.dlq, "--json")).json()
        shown = await cli("dlq", "show", shop.dlq, f"{unique}-b")

        shop.broken.clear()
        replayed = await cli("dlq", "replay", shop.dlq, "--id", f"{unique}-b")
        await eventually(lambda: shop.billed["b"] == 1, within=30, what="b billed")
        again = await cli("dlq", "replay", shop.dlq, "--id", f"{unique}-b")
        everything = await cli("dlq", "replay", shop.dlq, "--all", "--json")
        await eventually(lambda: shop.billed["d"] == 1, within=30, what="d billed")
        await shop.dead_letters(4)  # the undecodable one failed again
        after = (await cli("dlq", "list", shop.dlq, "--json")).json()

    assert listed.code == 0, listed.err
    table = rows(listed.out)
    assert len(table) == 3 and {r[5] for r in table.values()} == {"DEAD"}
    items = {i["message_id"] or i["dedup_key"]: i for i in as_json["items"]}
    b = items[f"{unique}-b"]
    assert b["original"]["topic"] == shop.topic and b["group"] == f"billing-{unique}"
    assert b["handler"] == "open_shop.<locals>.bill" and b["dedup_state"] == "DEAD"
    assert b["error_type"] == "ConnectionError" and b["error"] == "ledger down for b"
    assert items[f"{unique}-c"]["error_type"] == "DecodeError"
    assert any(k.startswith(f"{shop.topic}:") for k in items)  # d: keyed by its position
    assert shown.code == 0 and '"order_id": "b"' in shown.out
    assert f"Consumer:     group billing-{unique}, handler open_shop.<locals>.bill" in shown.out

    assert replayed.code == 0, replayed.err
    assert f"{unique}-b: replayed, published to {shop.topic}:" in replayed.out
    assert again.code == 0 and "skipped, already handled" in again.out
    outcomes = {r["message_id"] or r["ref"]: r["outcome"] for r in everything.json()}
    assert outcomes[f"{unique}-b"] == "skipped" and outcomes[f"{unique}-c"] == "replayed"
    assert everything.code == 0 and list(outcomes.values()).count("replayed") == 2

    assert shop.billed == Counter({"a": 1, "b": 1, "d": 1})
    assert shop.audited == Counter({"a": 1, "b": 1, "raw": 1, "d": 1})  # skipped every copy
    states = {i["message_id"] or i["dedup_key"]: i["dedup_state"] for i in after["items"]}
    assert states[f"{unique}-b"] == "DONE" and states[f"{unique}-c"] == "DEAD"
    replays = [i for i in after["items"] if i["replay_of"]]
    assert len(replays) == 1 and replays[0]["message_id"] == f"{unique}-c"


async def test_a_copy_with_the_same_id_is_skipped_unless_the_mark_is_cleared(
    shop: Shop, unique: str
) -> None:
    """Why replay clears the DEAD mark: republishing alone reaches no handler."""
    shop.broken.add("b")
    async with serve(shop.svc):
        await shop.svc.publish(shop.topic, Paid(order_id="b"), message_id=f"{unique}-b")
        await shop.dead_letters(1)
        shop.broken.clear()
        await shop.svc.publish(shop.topic, Paid(order_id="b"), message_id=f"{unique}-b")
        await eventually(lambda: shop.audited["b"] == 1, within=30, what="audit saw b")
        await shop.svc.publish(shop.topic, Paid(order_id="z"), message_id=f"{unique}-z")
        await eventually(lambda: shop.billed["z"] == 1, within=30, what="z billed")
        assert shop.billed["b"] == 0  # the plain copy met the DEAD mark
        done = await shop.cli("dlq", "replay", shop.dlq, "--id", "0:0")
        await eventually(lambda: shop.billed["b"] == 1, within=30, what="b billed")
    assert done.code == 0, done.err


async def test_errors_have_meaningful_exit_codes(shop: Shop, cli: Cli) -> None:
    """Not a dead-letter topic or bad usage 2, unknown letter or uncleared mark 1,
    unreachable broker 3, missing topic 1."""
    shop.broken.add("b")
    async with serve(shop.svc):
        await shop.svc.publish(shop.topic, Paid(order_id="b"), message_id="mb")
        await shop.dead_letters(1)
    not_dlq = await cli("dlq", "list", shop.topic)
    unknown = await cli("dlq", "show", shop.dlq, "7:7")
    both = await cli("dlq", "replay", shop.dlq, "--all", "--id", "0:0")
    memory = await cli("dlq", "replay", shop.dlq, "--all", NATIVEKIT_REDIS_URL="memory://")
    missing = await cli("dlq", "list", f"{shop.topic}-none.dlq")
    down = await cli("dlq", "list", shop.dlq, NATIVEKIT_KAFKA_URL="kafka://127.0.0.1:1")
    assert not_dlq.code == 2 and f"e.g. '{shop.topic}.dlq'" in not_dlq.err
    assert unknown.code == 1 and "no dead letter '7:7'" in unknown.err
    assert both.code == 2 and "not both" in both.err
    assert memory.code == 1 and "its DEAD mark lives in the consumer's process" in memory.out
    assert missing.code == 1 and "does not exist" in missing.err
    assert down.code == 3 and "Is NATIVEKIT_KAFKA_URL right" in down.err


async def test_replay_finds_the_mark_of_a_consumer_with_its_own_retention(
    kafka_url: str, redis_url: str, unique: str, cli: Cli
) -> None:
    """A consumer with retain= other than NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS keeps its
    marks in buckets of that width; the letter's dlq-dedup-retention header lets replay clear it."""
    topic = f"keep-{unique}"
    broker = KafkaBroker(kafka_settings(kafka_url))
    await broker.create_topics({topic: 1})
    await broker.aclose()
    settings = kafka_settings(kafka_url, redis_url, consumer_retries=0, log_level="CRITICAL")
    svc = Service("billing", settings=settings)
    broken = {"b"}
    billed: Counter[str] = Counter()

    @svc.consumer(topic, group=f"keep-{unique}", retain=4 * 86400.0)
    async def bill(event: Paid) -> None:
        if event.order_id in broken:
            raise ConnectionError("ledger down")
        billed[event.order_id] += 1

    cli.env.update(
        NATIVEKIT_KAFKA_URL=kafka_url,
        NATIVEKIT_REDIS_URL=redis_url,
        NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER="false",
    )
    shop = Shop(svc, topic, cli, kafka_url)
    async with serve(svc):
        await svc.publish(topic, Paid(order_id="b"), message_id=f"{unique}-b")
        await shop.dead_letters(1)
        listed = (await cli("dlq", "list", shop.dlq, "--json")).json()
        broken.clear()
        done = await cli("dlq", "replay", shop.dlq, "--id", f"{unique}-b")
        await eventually(lambda: billed["b"] == 1, within=30, what="b billed after replay")
    assert listed["items"][0]["dedup_state"] == "DEAD"
    assert done.code == 0, done.err
