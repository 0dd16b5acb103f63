"""CommandBatcher on a real Redis: the calls of one loop turn share one round trip, and each
caller gets its own reply or error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from nativekit.backends.redis._batching import CommandBatcher

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str, unique: str) -> AsyncIterator[aioredis.Redis]:
    """A client; the test's keys (under ``unique``) are removed afterwards."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"test:batch:{unique}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_calls_of_one_turn_share_a_round_trip(client: aioredis.Redis, unique: str) -> None:
    """Fifty concurrent calls go out as one pipeline; each gets its own reply."""
    batcher = CommandBatcher(client)
    keys = [f"test:batch:{unique}:{i}" for i in range(50)]
    assert await asyncio.gather(*(batcher.execute("SET", k, str(i)) for i, k in enumerate(keys)))
    values = await asyncio.gather(*(batcher.execute("GET", k) for k in keys))
    assert values == [str(i).encode() for i in range(50)]
    assert (batcher.round_trips, batcher.commands) == (2, 100)


async def test_a_lone_call_is_sent_by_itself(client: aioredis.Redis, unique: str) -> None:
    """Calls one after the other are a round trip each, in order."""
    batcher = CommandBatcher(client)
    key = f"test:batch:{unique}:lone"
    for i in range(3):
        assert await batcher.execute("INCR", key) == i + 1
    assert batcher.round_trips == 3


async def test_a_command_error_reaches_only_its_caller(client: aioredis.Redis, unique: str) -> None:
    """A failing command raises for its caller; the others of its pipeline succeed."""
    batcher = CommandBatcher(client)
    key = f"test:batch:{unique}:text"
    await client.set(key, "not a number")
    good = f"test:batch:{unique}:n"
    results = await asyncio.gather(
        batcher.execute("INCR", good), batcher.execute("INCR", key), return_exceptions=True
    )
    assert results[0] == 1
    assert isinstance(results[1], redis.exceptions.ResponseError)
    assert batcher.round_trips == 1


async def test_an_unknown_script_is_loaded_and_run(client: aioredis.Redis, unique: str) -> None:
    """EVALSHA of a script the server does not know (flushed, or a new server) loads it."""
    script = client.register_script(f"return '{unique}' .. ARGV[1]")
    batcher = CommandBatcher(client)
    results = await asyncio.gather(*(batcher.evalsha(script, [], [str(i)]) for i in range(3)))
    assert results == [f"{unique}{i}".encode() for i in range(3)]


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    client: aioredis.Redis, unique: str
) -> None:
    """Cancelling one waiting caller neither cancels nor disturbs the pipeline's others."""
    batcher = CommandBatcher(client)
    key = f"test:batch:{unique}:c"
    gone = asyncio.ensure_future(batcher.execute("INCR", key))
    kept = asyncio.ensure_future(batcher.execute("INCR", key))
    await asyncio.sleep(0)  # both queued
    gone.cancel()
    assert await kept in (1, 2)
    await batcher.aclose()
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_an_unreachable_server_fails_every_caller(unique: str) -> None:
    """A connection error reaches each caller of the pipeline as that error."""
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    batcher = CommandBatcher(dead)
    results = await asyncio.gather(
        *(batcher.execute("GET", f"test:batch:{unique}:{i}") for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results)
    await dead.aclose()


async def test_without_batching_every_call_is_its_own_round_trip(
    client: aioredis.Redis, unique: str
) -> None:
    """``batching=False`` (what the stores use on Redis Cluster) sends each call alone."""
    batcher = CommandBatcher(client, batching=False)
    keys = [f"test:batch:{unique}:u{i}" for i in range(5)]
    assert await asyncio.gather(*(batcher.execute("SET", k, "1") for k in keys)) == [True] * 5
    assert batcher.round_trips == 0  # nothing went through a pipeline
