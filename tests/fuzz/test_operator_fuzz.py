"""Fuzzed saga operator API: random ids, bodies and list parameters never make a 500."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel

from nativekit import Service, Settings
from nativekit.saga import SagaContext
from tests.fuzz.support import BOUNDED, Host, assert_problem, served, slash_redirect

PREFIX = "/_nativekit/sagas"
STATUSES = ["RUNNING", "COMPLETED", "FAILED", "COMPENSATING", "COMPENSATED", "ABORTED"]


class Order(BaseModel):
    order_id: str


def make_service(redis: dict[str, str], saga: dict[str, Any]) -> Service:
    settings = Settings(
        _env_file=None,
        redis=redis,
        saga={"operator_api": True, **saga},
        auth={"insecure_operator_api": True},  # fuzzing the actions; tests/auth covers auth
        tracing={"enabled": False},
    )
    svc = Service("fuzzed-sagas", settings=settings)
    ship = svc.saga("ship", input=Order)

    @ship.step(retries=0)
    async def reserve(ctx: SagaContext[Order]) -> None:
        if ctx.data.order_id.startswith("fail"):
            raise ConnectionError("carrier down")

    @svc.on_startup
    async def seed() -> None:
        for n in range(6):
            prefix = "fail" if n % 2 else "ok"
            handle = await svc.sagas.start(ship, Order(order_id=f"{prefix}-{n}"), saga_id=f"s-{n}")
            await handle.wait(timeout=5)

    return svc


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def app(request: pytest.FixtureRequest) -> Iterator[tuple[Host, httpx.AsyncClient]]:
    """The service on the memory store, and on real Redis (where older_than=inf was a 500)."""
    if request.param == "memory":
        with served(make_service({}, {})) as pair:
            yield pair
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"test:fuzz:{uuid.uuid4().hex[:12]}"
    try:
        with served(make_service({"url": url}, {"key_prefix": prefix, "shards": 2})) as pair:
            yield pair
    finally:
        asyncio.run(delete_keys(url, prefix))


async def delete_keys(url: str, prefix: str) -> None:
    """Remove the keys the Redis-backed service wrote."""
    client = aioredis.Redis.from_url(url)
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


known_ids = st.sampled_from([f"s-{n}" for n in range(6)])
saga_ids = known_ids | st.text(min_size=1, max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["reason", "x"]) | st.text(max_size=6), children)
    ),
    max_leaves=8,
)
numbers = st.integers(min_value=-(10**20), max_value=10**20).map(str) | st.sampled_from(
    ["nan", "inf", "-inf", "1e309", "", " ", "0x10", "1_000"]
)
cursors = st.text(max_size=40) | st.builds(
    lambda a, b: f"{a}|{b}", numbers | st.floats().map(repr), st.text(max_size=10)
)
list_params = st.fixed_dictionaries(
    {},
    optional={
        "limit": numbers | st.text(max_size=6),
        "status": st.sampled_from(STATUSES) | st.text(max_size=12),
        "older_than": numbers | st.floats().map(repr) | st.text(max_size=6),
        "cursor": cursors,
        "name": st.sampled_from(["ship"]) | st.text(max_size=8),
    },
)


@BOUNDED
@given(params=list_params)
def test_list_with_random_parameters_answers_a_page_or_a_problem(
    app: tuple[Host, httpx.AsyncClient], params: dict[str, str]
) -> None:
    """Random limit, status, older_than, cursor and name: a page, or a 4xx problem."""
    host, client = app
    response = host.run(lambda: client.get(PREFIX, params=params))
    assert_problem(response, 200)
    event(f"status: {response.status_code}")
    if response.status_code == 200:
        page = response.json()
        assert isinstance(page["items"], list)


@BOUNDED
@given(
    saga_id=saga_ids,
    action=st.sampled_from(["", "/retry", "/compensate", "/abort"]),
    body=st.none() | json_values | st.binary(max_size=64),
)
def test_actions_on_random_ids_with_random_bodies_answer_a_problem_never_a_500(
    app: tuple[Host, httpx.AsyncClient], saga_id: str, action: str, body: Any
) -> None:
    """Inspect, retry, compensate and abort any id with any body: 200, or a 4xx problem."""
    host, client = app
    url = f"{PREFIX}/{quote(saga_id, safe='')}{action}"
    method = "GET" if not action else "POST"
    if body is None:
        content = b""
    elif isinstance(body, bytes):
        content = body
    else:
        content = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if content else {}
    response = host.run(lambda: client.request(method, url, content=content, headers=headers))
    if slash_redirect(response, saga_id):
        return
    assert_problem(response, 200)
    event(f"status: {response.status_code}")
