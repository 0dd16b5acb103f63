"""The AsyncAPI 3.0 document: consumers, publishers, command handlers, saga command steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

import nativekit
from nativekit.errors import ConfigError
from nativekit.testing import memory_broker, serve

#: The AsyncAPI 3.0 JSON Schema, vendored (see SOURCE.txt beside it).
SCHEMA = json.loads(Path(__file__).with_name("asyncapi-3.0.0.schema.json").read_text())


def check(document: dict[str, Any]) -> dict[str, Any]:
    """``document``, after the AsyncAPI 3.0 JSON Schema accepted it."""
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(document), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors][:5] == []
    return document


@pytest.fixture(scope="module")
def shop() -> dict[str, Any]:
    """The whole shop's AsyncAPI document, validated."""
    from examples.shop.app import app

    return check(app.docs.asyncapi())


def test_the_schema_refuses_a_broken_document(shop: dict[str, Any]) -> None:
    """The vendored schema is strict enough to catch a mistake (so acceptance means much)."""
    broken = json.loads(json.dumps(shop))
    broken["operations"]["inventory.on_order_confirmed"]["action"] = "consume"
    assert not jsonschema.Draft7Validator(SCHEMA).is_valid(broken)


def test_a_consumer_receives_its_event_types(shop: dict[str, Any]) -> None:
    """A consumer is a receive operation on its topic, with its group and event models."""
    op = shop["operations"]["inventory.on_order_confirmed"]
    assert op["action"] == "receive"
    assert op["channel"] == {"$ref": "#/channels/shop.orders"}
    assert op["messages"] == [{"$ref": "#/channels/shop.orders/messages/OrderConfirmed"}]
    assert op["bindings"]["kafka"]["groupId"]["enum"] == ["inventory.on_order_confirmed"]
    assert op["summary"].startswith("A confirmed order's reservation becomes a sale")
    assert shop["channels"]["shop.orders"]["address"] == "shop.orders"
    dead = shop["operations"]["inventory.on_order_confirmed.dead-letter"]
    assert dead["channel"] == {"$ref": "#/channels/shop.orders.dlq"}


def test_a_declared_publisher_sends_its_models_with_their_key(shop: dict[str, Any]) -> None:
    """svc.publisher(...) is a send operation listing each model, keyed by its field."""
    op = shop["operations"]["orders.send.shop.orders"]
    assert op["action"] == "send"
    assert [m["$ref"].rsplit("/", 1)[1] for m in op["messages"]] == [
        "OrderPlaced", "OrderConfirmed", "OrderCancelled"
    ]  # fmt: skip
    placed = shop["components"]["messages"]["OrderPlaced"]
    assert placed["payload"] == {"$ref": "#/components/schemas/OrderPlaced"}
    assert placed["bindings"]["kafka"]["key"]["description"] == "the event's order_id"
    assert placed["headers"]["allOf"][1]["properties"]["event-type"] == {"const": "OrderPlaced"}
    schema = shop["components"]["schemas"]["OrderPlaced"]
    assert sorted(schema["properties"]) == ["customer_id", "order_id", "total"]
    envelope = shop["components"]["schemas"]["EventHeaders"]["properties"]
    assert {"message-id", "event-type", "traceparent"} <= set(envelope)


def test_a_command_handler_replies_to_the_reply_to_topic(shop: dict[str, Any]) -> None:
    """A command handler receives its command and replies where reply-to says."""
    op = shop["operations"]["inventory.on_reserve"]
    assert op["action"] == "receive"
    assert op["messages"] == [
        {"$ref": "#/channels/shop.inventory.commands/messages/ReserveStock"}
    ]
    assert op["reply"]["address"]["location"] == "$message.header#/reply-to"
    assert op["reply"]["messages"] == [
        {"$ref": "#/channels/shop.inventory.commands.reply-to/messages/Reservation"}
    ]
    headers = shop["components"]["schemas"]["CommandHeaders"]["properties"]
    assert {"reply-to", "idempotency-key", "saga-id", "traceparent", "message-id"} <= set(headers)
    assert shop["channels"]["shop.inventory.commands.reply-to"]["address"] is None


def test_a_saga_command_step_sends_and_waits_for_its_reply(shop: dict[str, Any]) -> None:
    """Each direction of a command step sends its command; the reply topic is received."""
    forward = shop["operations"]["orders.place-order.reserve_stock"]
    back = shop["operations"]["orders.place-order.reserve_stock.compensate"]
    assert forward["action"] == back["action"] == "send"
    assert forward["channel"] == {"$ref": "#/channels/shop.inventory.commands"}
    assert forward["messages"][0]["$ref"].endswith("/ReserveStock")
    assert back["messages"][0]["$ref"].endswith("/ReleaseStock")
    assert forward["reply"]["channel"] == {"$ref": "#/channels/orders.replies"}
    assert forward["reply"]["messages"] == [
        {"$ref": "#/channels/orders.replies/messages/Reservation"}
    ]
    replies = shop["operations"]["orders.saga-replies"]
    assert replies["action"] == "receive"
    assert replies["bindings"]["kafka"]["groupId"]["enum"] == ["orders.replies"]


class Shipped(BaseModel):
    """A parcel left."""

    parcel_id: str


class Lost(BaseModel):
    """A parcel is lost."""

    parcel_id: str


async def test_a_declared_publisher_checks_models_and_sets_the_key() -> None:
    """publish() refuses an undeclared model and keys the message by the declared field."""
    svc = nativekit.Service("parcels")
    parcels = svc.publisher("parcels.events", Shipped, key="parcel_id")
    async with serve(svc):
        await parcels.publish(Shipped(parcel_id="p-7"))
        with pytest.raises(TypeError, match="Lost is not declared"):
            await parcels.publish(Lost(parcel_id="p-8"))
    [record] = memory_broker().records("parcels.events")
    assert record.key == b"p-7"
    assert dict(record.headers)["event-type"] == b"Shipped"
    document = check(svc.docs.asyncapi())
    assert list(document["channels"]) == ["parcels.events"]


def test_a_key_field_the_model_lacks_is_a_config_error() -> None:
    """key= must name a field of every declared model."""
    svc = nativekit.Service("parcels")
    with pytest.raises(ConfigError, match="no field 'order_id'"):
        svc.publisher("parcels.events", Shipped, key="order_id")


async def test_served_at_asyncapi_json() -> None:
    """/asyncapi.json answers the document the service builds."""
    from examples.shop import inventory

    async with serve(inventory.svc) as client:
        served = (await client.get("/asyncapi.json")).json()
    assert served == check(inventory.svc.docs.asyncapi())
    assert served["info"]["title"] == "inventory"
