"""The shop's fraud review: large orders wait (no task held) for an operator's decision."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from examples.shop import app as shop_app
from examples.shop.config import config
from examples.shop.orders import place_order
from nativekit.testing import serve

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The combined app, started once for the module."""
    async with serve(shop_app.app) as c:
        yield c


async def large_order(client: httpx.AsyncClient) -> tuple[str, str]:
    """A product priced at the review threshold, and an order of one (left PENDING)."""
    sku = f"r-{uuid.uuid4().hex[:8]}"
    product = {"name": "Big", "price": config.review_threshold, "available": 3}
    assert (await client.put(f"/inventory/products/{sku}", json=product)).status_code == 200
    body = {"customer_id": "c", "items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_visa"}
    placed = (await client.post("/orders", json=body, headers={"Prefer": "wait=0.3"})).json()
    assert placed["status"] == "PENDING"
    return placed["order_id"], sku


async def final(client: httpx.AsyncClient, order_id: str) -> dict:
    """The order once CONFIRMED or CANCELLED."""
    for _ in range(250):
        view = (await client.get(f"/orders/{order_id}")).json()
        if view["status"] != "PENDING":
            return dict(view)
        await asyncio.sleep(0.02)
    raise AssertionError(f"order {order_id} stayed PENDING")


async def test_a_large_order_waits_for_the_review_and_an_approval_confirms_it(
    client: httpx.AsyncClient,
) -> None:
    """PENDING at fraud_review with stock held and nothing charged; approved: CONFIRMED; a
    second decision is not delivered; a decision for a final order is a 409."""
    order_id, sku = await large_order(client)
    steps = {
        s["name"]: s["status"] for s in (await client.get(f"/orders/{order_id}")).json()["steps"]
    }
    assert steps["reserve_stock"] == "completed" and steps["fraud_review"] == "running"
    assert steps["charge_payment"] == "pending"
    assert (await client.get(f"/inventory/products/{sku}")).json()["reserved"] == 1
    decision = {"approved": True, "reviewer": "ann"}
    reply = await client.post(f"/orders/{order_id}/review", json=decision)
    assert reply.status_code == 202 and reply.json() == {"order_id": order_id, "delivered": True}
    again = await client.post(f"/orders/{order_id}/review", json={**decision, "approved": False})
    assert again.status_code == 202 and again.json()["delivered"] is False
    assert (await final(client, order_id))["status"] == "CONFIRMED"
    late = await client.post(f"/orders/{order_id}/review", json=decision)
    assert late.status_code == 409 and "already final" in late.json()["detail"]


async def test_a_refused_review_cancels_the_order_and_releases_the_stock(
    client: httpx.AsyncClient,
) -> None:
    """Refused: CANCELLED with the reviewer named, the stock back, nothing charged."""
    order_id, sku = await large_order(client)
    decision = {"approved": False, "reviewer": "bob"}
    assert (await client.post(f"/orders/{order_id}/review", json=decision)).status_code == 202
    view = await final(client, order_id)
    assert (view["status"], view["reason"]) == ("CANCELLED", "refused by the fraud review (bob)")
    product = (await client.get(f"/inventory/products/{sku}")).json()
    assert (product["available"], product["reserved"]) == (3, 0)


async def test_review_input_errors_name_the_field_and_unknown_orders_are_404(
    client: httpx.AsyncClient,
) -> None:
    """A decision without a reviewer is a 422 naming it; an unknown order a 404."""
    bad = await client.post("/orders/ord_x/review", json={"approved": True})
    assert bad.status_code == 422 and "reviewer" in bad.text
    missing = await client.post("/orders/ord_x/review", json={"approved": True, "reviewer": "a"})
    assert missing.status_code == 404


async def test_orders_have_a_deadline() -> None:
    """Every order saga carries the SHOP_ORDER_DEADLINE (longer than the review timeout)."""
    assert place_order.deadline == config.order_deadline > config.review_timeout
