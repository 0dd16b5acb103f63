"""The OpenAPI document of typed routes: parameters, bodies, responses, ids, serving."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_spec_validator import validate

import nativekit
from nativekit.errors import ConfigError
from nativekit.testing import serve
from tests.apidocs.catalog import build


@pytest.fixture
def document() -> dict[str, Any]:
    """The catalog's document, checked by openapi-spec-validator."""
    found = build().docs.openapi()
    validate(found)
    return found


def _param(operation: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in operation["parameters"] if p["name"] == name)


def test_parameters_carry_their_types_and_constraints(document: dict[str, Any]) -> None:
    """Query, header and path parameters with their JSON Schema, default and place."""
    listing = document["paths"]["/items"]["get"]
    assert _param(listing, "limit") == {
        "name": "limit", "in": "query", "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    }  # fmt: skip
    assert _param(listing, "tag")["schema"] == {"type": "array", "items": {"type": "string"}}
    assert _param(listing, "x-trace") == {
        "name": "x-trace", "in": "header", "required": False, "schema": {"type": "string"},
    }  # fmt: skip
    item_id = _param(document["paths"]["/items/{item_id}"]["get"], "item_id")
    assert item_id == {"name": "item_id", "in": "path", "required": True,
                       "schema": {"type": "integer"}}  # fmt: skip


def test_models_are_shared_components(document: dict[str, Any]) -> None:
    """A model used by several routes is one components/schemas entry, used by reference."""
    schemas = document["components"]["schemas"]
    assert sorted(schemas) == ["Item", "ItemView", "Problem", "ValidationProblem"]
    assert schemas["Item"]["properties"]["name"] == {
        "type": "string", "minLength": 1, "maxLength": 50, "title": "Name",
    }  # fmt: skip
    add = document["paths"]["/items"]["post"]
    assert add["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
    }
    ok = add["responses"]["201"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ItemView"}
    listing = document["paths"]["/items"]["get"]["responses"]["200"]["content"]
    assert listing["application/json"]["schema"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/ItemView"},
    }  # fmt: skip
    text = json.dumps(document)
    assert text.count('"title": "ItemView"') == 1


def test_errors_are_shared_problem_responses(document: dict[str, Any]) -> None:
    """Each operation lists the problem+json statuses it can answer, by reference."""
    responses = document["components"]["responses"]
    assert {r: v["content"]["application/problem+json"]["schema"]["$ref"]
            for r, v in responses.items()} == {
        "BadRequest": "#/components/schemas/Problem",
        "NotFound": "#/components/schemas/Problem",
        "MethodNotAllowed": "#/components/schemas/Problem",
        "PayloadTooLarge": "#/components/schemas/Problem",
        "UnsupportedMediaType": "#/components/schemas/Problem",
        "ValidationFailed": "#/components/schemas/ValidationProblem",
        "InternalError": "#/components/schemas/Problem",
    }  # fmt: skip
    add = document["paths"]["/items"]["post"]["responses"]
    assert sorted(add) == ["201", "400", "409", "413", "415", "422", "500"]
    assert add["415"] == {"$ref": "#/components/responses/UnsupportedMediaType"}
    assert add["409"]["description"] == "An item with this name exists."
    assert sorted(document["paths"]["/items/{item_id}"]["get"]["responses"]) == [
        "200", "404", "422", "500"
    ]  # fmt: skip
    assert sorted(document["paths"]["/items"]["get"]["responses"]) == ["200", "422", "500"]


def test_status_docstring_tags_deprecated_and_ids(document: dict[str, Any]) -> None:
    """status_code, summary and description from the docstring, tags, deprecated, ids."""
    listing = document["paths"]["/items"]["get"]
    assert listing["summary"] == "List the items."
    assert listing["description"] == "Paged by ``limit``; ``tag`` filters (repeatable)."
    assert listing["tags"] == ["items"] and listing["operationId"] == "list_items"
    add = document["paths"]["/items"]["post"]
    assert add["deprecated"] is True and add["operationId"] == "addItem"
    assert add["tags"] == ["catalog"]
    remove = document["paths"]["/items/{item_id}"]["delete"]
    assert remove["summary"] == "Remove an item"
    assert "content" not in remove["responses"]["204"]
    assert remove["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemView"
    }
    raw = document["paths"]["/raw"]["get"]["responses"]["200"]["content"]
    assert raw["application/json"]["schema"] == {"$ref": "#/components/schemas/ItemView"}
    assert "/internal" not in document["paths"]
    assert [t["name"] for t in document["tags"]] == ["catalog", "items"]


def test_plain_routes_are_listed_only_when_they_declare_an_operation(
    document: dict[str, Any],
) -> None:
    """operation_schema() and a YAML docstring declare; an undeclared route is left out."""
    assert document["paths"]["/ping"]["get"]["summary"] == "Ping"
    assert document["paths"]["/sub/hello"]["get"]["summary"] == "Hello from a mounted router"
    assert "/undocumented" not in document["paths"]


def test_combined_services_give_one_document_with_unique_ids() -> None:
    """combine() documents every service once; a name two services share is qualified."""
    one, two = build("one"), build("two", docs={"title": "Shop"})
    group = nativekit.combine(one, two)
    document = group.docs.openapi()
    validate(document)
    assert document["info"]["title"] == "one+two"
    # the same paths: the first service serves them, so it is the one documented
    assert document["paths"]["/items"]["get"]["operationId"] == "list_items"
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_operation_ids_are_stable_and_unique_across_services() -> None:
    """Two services with a handler of the same name get ids qualified by service."""
    a = nativekit.Service("a")
    b = nativekit.Service("b")

    @a.get("/a/things")
    async def things() -> list[int]:
        return []

    @b.get("/b/things", name="things")
    async def things_b() -> list[int]:
        return []

    @b.post("/b/things", name="things")
    async def add_things() -> list[int]:
        return []

    ids = {
        (path, method): op["operationId"]
        for path, item in nativekit.combine(a, b).docs.openapi()["paths"].items()
        for method, op in item.items()
    }
    assert ids == {
        ("/a/things", "get"): "a.things",
        ("/b/things", "get"): "b.things.get",
        ("/b/things", "post"): "b.things.post",
    }


def test_an_operation_id_given_twice_is_a_config_error() -> None:
    """Two routes with the same explicit operation_id cannot both be documented."""
    svc = nativekit.Service("dup")

    @svc.get("/x", operation_id="same")
    async def x() -> None: ...

    @svc.get("/y", operation_id="same")
    async def y() -> None: ...

    with pytest.raises(ConfigError, match="same"):
        svc.docs.openapi()


def test_unknown_route_options_are_refused() -> None:
    """A misspelled documentation option is a config error naming it."""
    svc = nativekit.Service("typo")
    with pytest.raises(ConfigError, match="summery"):
        svc.get("/x", summery="oops")  # type: ignore[call-arg]


async def test_served_once_at_the_configured_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """/openapi.json is built once at startup and served as the same bytes each time."""
    from nativekit._http.openapi import _document

    builds = []
    real = _document.build_openapi

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_document, "build_openapi", counting)
    svc = build(docs={"openapi_path": "/api/v1/openapi.json"})
    async with serve(svc) as client:
        assert len(builds) == 1  # at startup, before any request
        first = await client.get("/api/v1/openapi.json")
        second = await client.get("/api/v1/openapi.json")
        assert (await client.get("/openapi.json")).status_code == 404
        page = await client.get("/docs")
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert first.content == second.content and len(builds) == 1
    assert first.json()["paths"]["/items"]["get"]["operationId"] == "list_items"
    assert 'data-url="/api/v1/openapi.json"' in page.text


async def test_turned_off_there_is_no_route() -> None:
    """NATIVEKIT_DOCS_ENABLED=false: no document, no page, no route added to the app."""
    svc = build(docs={"enabled": False})
    async with serve(svc) as client:
        answers = [
            (await client.get(path)).status_code
            for path in ("/openapi.json", "/asyncapi.json", "/docs", "/docs/init.js")
        ]
    assert answers == [404, 404, 404, 404]
    on = build()
    assert len(on.app.routes) - len(svc.app.routes) == 7  # 2 documents, the page, 4 files


async def test_a_broken_document_is_a_500_not_a_failed_start() -> None:
    """A document that cannot be built is logged at startup; the service still serves."""
    svc = nativekit.Service("broken")

    @svc.get("/x", operation_id="same")
    async def x() -> int:
        return 1

    @svc.get("/y", operation_id="same")
    async def y() -> int:
        return 2

    async with serve(svc) as client:
        assert (await client.get("/x")).json() == 1
        failed = await client.get("/openapi.json")
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"


def test_the_operator_api_is_documented_when_served() -> None:
    """With the operator API on, its routes are in the document with their 409s."""
    from tests.support import settings

    svc = nativekit.Service("ops", settings=settings(saga={"operator_api": True}))
    saga = svc.saga("s")

    @saga.step()
    async def only(ctx: nativekit.SagaContext[Any]) -> None: ...

    document = svc.docs.openapi()
    validate(document)
    retry = document["paths"]["/_nativekit/sagas/{saga_id}/retry"]["post"]
    assert retry["tags"] == ["saga operator"] and retry["operationId"] == "sagas.retry_saga"
    assert sorted(retry["responses"]) == ["200", "404", "409", "422", "500"]
    status = document["paths"]["/_nativekit/sagas"]["get"]["parameters"][0]
    assert status["schema"] == {"$ref": "#/components/schemas/SagaStatus"}
    assert "COMPLETED" in document["components"]["schemas"]["SagaStatus"]["enum"]
