"""The saga operator API refuses list parameters it cannot use with a 422, on both stores."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

import nativekit
from nativekit.saga import SagaContext
from nativekit.testing import serve


class Order(BaseModel):
    """Input."""

    order_id: str


BAD = [
    {"cursor": "not-a-cursor"},
    {"cursor": "nan|s-1"},
    {"cursor": "inf|s-1"},
    {"older_than": "inf"},
    {"older_than": "nan"},
    {"older_than": "-1"},
    {"older_than": "1e300"},
]


def memory_service() -> nativekit.Service:
    """An operator-enabled service on the memory store."""
    return nativekit.Service(
        "orders", settings=nativekit.Settings(
            _env_file=None, saga={"operator_api": True}, auth={"insecure_operator_api": True}
        )
    )


async def check(svc: nativekit.Service) -> None:
    """Each bad parameter set is a 422 problem naming it; a real cursor still pages."""
    saga = svc.saga("ship", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    async with serve(svc) as client:
        for n in range(3):
            await (await svc.sagas.start(saga, Order(order_id=str(n)), saga_id=f"s-{n}")).wait(5)
        for params in BAD:
            answer = await client.get("/_nativekit/sagas", params=params)
            assert answer.status_code == 422, (params, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert next(iter(params)) in answer.json()["detail"]
        first = (await client.get("/_nativekit/sagas", params={"limit": 2})).json()
        rest = await client.get("/_nativekit/sagas", params={"cursor": first["cursor"]})
        assert rest.status_code == 200
        assert [r["saga_id"] for r in first["items"] + rest.json()["items"]] == [
            "s-0",
            "s-1",
            "s-2",
        ]


async def test_bad_cursor_and_older_than_are_422_on_the_memory_store() -> None:
    """A made-up cursor or a non-finite or negative older_than is a 422, not a 500."""
    await check(memory_service())


@pytest.mark.redis
async def test_bad_cursor_and_older_than_are_422_on_redis(
    make_service: Callable[..., nativekit.Service],
) -> None:
    """The same refusals on Redis, where an infinite older_than overflowed the score."""
    await check(make_service(saga_operator_api=True))
