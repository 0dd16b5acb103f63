"""The combined shop app in process, on memory backends (what `make shop` serves)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from examples.shop import app as shop_app
from examples.shop.models import payment_id_for
from nativekit.testing import serve

DEPLOYED = {
    "orders": "examples.shop.orders:app",
    "payments": "examples.shop.payments:app",
    "inventory": "examples.shop.inventory:app",
}


# One event loop for the module: the in-memory broker behind memory:// is process-wide
# and its waiters belong to the loop that first used it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The combined app, started once for the module."""
    async with serve(shop_app.app) as c:
        yield c


async def new_product(client: httpx.AsyncClient, available: int, price: int = 500) -> str:
    """PUT a product under a fresh SKU."""
    sku = f"t-{uuid.uuid4().hex[:8]}"
    body = {"name": "Thing", "price": price, "available": available}
    assert (await client.put(f"/inventory/products/{sku}", json=body)).status_code == 200
    return sku


async def order(client: httpx.AsyncClient, sku: str, qty: int, token: str = "tok_visa") -> dict:
    """Place an order and wait for it."""
    body = {"customer_id": "c", "items": [{"sku": sku, "quantity": qty}], "payment_token": token}
    reply = await client.post("/orders", json=body, headers={"Prefer": "wait=5"})
    assert reply.status_code == 202
    assert reply.headers["preference-applied"] == "wait=5"
    return dict(reply.json())


async def test_seeded_catalog_is_listed(client: httpx.AsyncClient) -> None:
    """Ten demo products are seeded at startup."""
    products = (await client.get("/inventory/products")).json()
    assert {f"SKU-{n:03d}" for n in range(1, 11)} <= {p["sku"] for p in products}


async def test_order_flow_confirms_and_sells(client: httpx.AsyncClient) -> None:
    """A good order is CONFIRMED with its total; the consumer turns the hold into a sale."""
    sku = await new_product(client, 5, price=250)
    placed = await order(client, sku, 2)
    assert (placed["status"], placed["total"]) == ("CONFIRMED", 500)
    fetched = (await client.get(f"/orders/{placed['order_id']}")).json()
    assert fetched == placed
    for _ in range(100):  # the sale is made by inventory's consumer
        product = (await client.get(f"/inventory/products/{sku}")).json()
        if product["sold"] == 2:
            break
        await asyncio.sleep(0.02)
    assert (product["available"], product["reserved"], product["sold"]) == (3, 0, 2)


async def test_decline_out_of_stock_and_transient(client: httpx.AsyncClient) -> None:
    """Declined and out-of-stock orders are CANCELLED with a reason; tok_fail is retried."""
    sku = await new_product(client, 3)
    declined = await order(client, sku, 1, "tok_decline")
    assert (declined["status"], declined["reason"]) == ("CANCELLED", "card declined")
    short = await order(client, sku, 4)
    assert (short["status"], short["reason"]) == ("CANCELLED", f"insufficient stock for {sku}")
    flaky = await order(client, sku, 1, "tok_fail")
    assert flaky["status"] == "CONFIRMED"
    product = (await client.get(f"/inventory/products/{sku}")).json()
    assert product["available"] == 2


async def test_product_reads_follow_stock_changes(client: httpx.AsyncClient) -> None:
    """A cached product read shows the stock after a reservation and after a restock."""
    sku = await new_product(client, 4)
    assert (await client.get(f"/inventory/products/{sku}")).json()["available"] == 4
    await order(client, sku, 1, "tok_decline")  # reserve then release: two changes
    await order(client, sku, 3)
    assert (await client.get(f"/inventory/products/{sku}")).json()["available"] == 1
    await client.put(f"/inventory/products/{sku}", json={"name": "T", "price": 1, "available": 9})
    assert (await client.get(f"/inventory/products/{sku}")).json()["available"] == 9


async def test_idempotency_key_returns_the_same_order(client: httpx.AsyncClient) -> None:
    """A repeated Idempotency-Key returns the first order; a different body is a 422."""
    sku = await new_product(client, 5)
    body = {"customer_id": "c", "items": [{"sku": sku, "quantity": 1}], "payment_token": "t"}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first, second = [await client.post("/orders", json=body, headers=headers) for _ in range(2)]
    assert first.json()["order_id"] == second.json()["order_id"]
    body["items"][0]["quantity"] = 2  # type: ignore[index]
    assert (await client.post("/orders", json=body, headers=headers)).status_code == 422


async def test_bad_input_is_a_problem(client: httpx.AsyncClient) -> None:
    """Bad bodies, unknown SKUs and unknown ids answer 4xx problem+json."""
    bad = await client.post("/orders", json={"customer_id": "c", "items": [], "payment_token": "t"})
    unknown = await client.post(
        "/orders",
        json={"customer_id": "c", "items": [{"sku": "nope", "quantity": 1}], "payment_token": "t"},
    )
    replies = [
        bad,
        unknown,
        await client.get("/orders/ord_missing"),
        await client.get("/inventory/products/nope"),
        await client.get("/payments/x"),
        await client.post("/payments", json={"order_id": "o", "amount": 1, "token": "t"}),
    ]
    assert [r.status_code for r in replies] == [422, 422, 404, 404, 404, 422]
    assert {r.headers["content-type"] for r in replies} == {"application/problem+json"}
    assert "items" in bad.text and "Idempotency-Key".lower() in replies[-1].text.lower()


async def test_payments_api_charges_once_per_key(client: httpx.AsyncClient) -> None:
    """POST /payments: one capture per key, 402 for tok_decline, 503 then success for tok_fail."""
    key = uuid.uuid4().hex
    body = {"order_id": "o-1", "amount": 700, "token": "tok_visa"}
    first = await client.post("/payments", json=body, headers={"Idempotency-Key": key})
    again = await client.post("/payments", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert first.json()["payment_id"] == payment_id_for(key)
    declined = await client.post("/payments", json={**body, "token": "tok_decline"},
                                 headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    assert declined.status_code == 402
    assert declined.json()["status"] == 402 and declined.json()["payment"]["status"] == "DECLINED"
    flaky = {"Idempotency-Key": uuid.uuid4().hex}
    fail = {**body, "token": "tok_fail"}
    statuses = [(await client.post("/payments", json=fail, headers=flaky)).status_code
                for _ in range(2)]  # fmt: skip
    assert statuses == [503, 201]
    refund = await client.post(f"/payments/{payment_id_for(key)}/refund?order_id=o-1")
    assert refund.json()["status"] == "REFUNDED"


async def test_probes_and_metrics_cover_the_three_services(client: httpx.AsyncClient) -> None:
    """/readyz and /metrics of the combined app report orders, payments and inventory."""
    assert (await client.get("/readyz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    for service in DEPLOYED:
        assert f'service="{service}"' in metrics


async def test_new_orders_are_priced_from_a_quote_kept_for_a_few_seconds(
    client: httpx.AsyncClient,
) -> None:
    """Orders reuses a product's catalog price for SHOP_QUOTE_TTL seconds; a reprice
    reaches new orders once the quote is gone; an unknown SKU is not remembered."""
    from examples.shop import orders

    sku = await new_product(client, 10, price=250)
    assert (await order(client, sku, 2))["total"] == 500
    repriced = {"name": "T", "price": 300, "available": 8}
    assert (await client.put(f"/inventory/products/{sku}", json=repriced)).status_code == 200
    assert (await order(client, sku, 1))["total"] == 250  # the quote still holds
    await orders.quote.invalidate(sku=sku)  # what SHOP_QUOTE_TTL seconds do
    assert (await order(client, sku, 1))["total"] == 300
    unknown = f"t-{uuid.uuid4().hex[:8]}"
    body = {"customer_id": "c", "items": [{"sku": unknown, "quantity": 1}], "payment_token": "t"}
    assert (await client.post("/orders", json=body)).status_code == 422
    created = {"name": "N", "price": 7, "available": 1}
    assert (await client.put(f"/inventory/products/{unknown}", json=created)).status_code == 200
    assert (await order(client, unknown, 1))["total"] == 7


async def test_order_priced_while_inventory_is_unreachable_is_a_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line that cannot be priced because inventory is down answers 503 problem+json with
    Retry-After and starts nothing; the same request succeeds once inventory is back."""
    from examples.shop import orders
    from examples.shop.clients import http_clients
    from nativekit.testing.servers import free_port

    sku = await new_product(client, 3, price=120)
    # nothing listens there
    down, _ = http_clients(orders.svc, f"http://127.0.0.1:{free_port()}", "", 2.0)
    assert down is not None
    monkeypatch.setattr(orders.peers, "inventory", down)
    body = {"customer_id": "c", "items": [{"sku": sku, "quantity": 1}], "payment_token": "t"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    try:
        reply = await client.post("/orders", json=body, headers=key)
    finally:
        await down.client.aclose()
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["retry-after"] == "1"
    assert "items[0]" in reply.json()["detail"] and "inventory" in reply.json()["detail"]
    monkeypatch.undo()
    again = await client.post("/orders", json=body, headers={**key, "Prefer": "wait=5"})
    assert again.status_code == 202 and again.json()["status"] == "CONFIRMED"
    assert again.json()["total"] == 120


@pytest.mark.parametrize("sku", ["a/b", "line\nbreak", "../payments"])
async def test_a_sku_stays_one_path_segment_over_http(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, sku: str
) -> None:
    """Orders asks inventory over HTTP with the SKU quoted: an odd SKU is a 422 naming the
    line, never a 500 (an unquoted newline made httpx refuse the URL)."""
    from examples.shop import inventory, orders
    from examples.shop.clients import http_clients

    over_http, _ = http_clients(orders.svc, "http://inventory.test", "", 2.0)
    assert over_http is not None
    over_http.client.use_transport(httpx.ASGITransport(app=inventory.svc.app))
    monkeypatch.setattr(orders.peers, "inventory", over_http)
    body = {"customer_id": "c", "items": [{"sku": sku, "quantity": 1}], "payment_token": "t"}
    reply = await client.post("/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert reply.status_code == 422, reply.text
    assert "items[0].sku" in reply.json()["detail"]
