"""How to test a nativekit service: in-process, with its lifespan."""

from docs.examples.quickstart import svc
from nativekit.testing import serve


async def test_create_and_read_order() -> None:
    """Creating an order returns it; reading it back gives the same order."""
    async with serve(svc) as client:
        created = await client.post("/orders", json={"sku": "mug", "quantity": 2})
        assert created.status_code == 201
        order_id = created.json()["order_id"]
        assert (await client.get(f"/orders/{order_id}")).json()["sku"] == "mug"


async def test_bad_quantity_is_a_422_naming_the_field() -> None:
    """A quantity below 1 is rejected with the field's location."""
    async with serve(svc) as client:
        response = await client.post("/orders", json={"sku": "mug", "quantity": 0})
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "quantity"]
