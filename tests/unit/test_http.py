"""Typed routes and problem+json errors."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from nativekit import ConfigError, Header, HTTPError, Service, Settings
from nativekit.errors import BackendUnavailable
from nativekit.testing import capture_logs, serve
from tests.support import grouped


class Item(BaseModel):
    name: str
    quantity: int = Field(ge=1)


def make_service(**overrides: Any) -> Service:
    svc = Service("items", settings=Settings(_env_file=None, **grouped(overrides)))

    @svc.get("/items/{item_id}")
    async def get_item(
        item_id: int, verbose: bool = False, tag: list[str] | None = None
    ) -> dict[str, Any]:
        return {"id": item_id, "verbose": verbose, "tags": tag}

    @svc.post("/items", status_code=201)
    async def create_item(
        item: Item, key: Annotated[str | None, Header("Idempotency-Key")] = None
    ) -> dict[str, Any]:
        return {"item": item.model_dump(), "key": key}

    @svc.put("/items/{item_id}")
    async def replace_item(item_id: int, item: Item) -> Item:
        return item

    @svc.delete("/items/{item_id}", status_code=204)
    async def delete_item(item_id: int) -> None:
        return None

    @svc.patch("/items/{item_id}")
    async def patch_item(item_id: int) -> list[int]:
        return [item_id]

    @svc.get("/teapot")
    async def teapot() -> None:
        raise HTTPError(418, "short and stout", extra={"hint": "try coffee"})

    @svc.get("/redis-down")
    async def redis_down() -> None:
        raise BackendUnavailable("Redis at redis://:hunter2@10.0.0.9:6379/0 did not answer")

    @svc.get("/boom")
    async def boom() -> None:
        raise RuntimeError("db password is hunter2")

    @svc.get("/raw")
    async def raw(request: Request) -> Response:
        return PlainTextResponse(request.headers.get("x-thing", "none"))

    return svc


@pytest.fixture
async def client() -> Any:
    async with serve(make_service()) as c:
        yield c


async def test_path_and_query_parameters_are_converted(client: httpx.AsyncClient) -> None:
    """Path and query values are converted by annotation; lists take repeated values."""
    r = await client.get("/items/7?verbose=yes&tag=a&tag=b")
    assert r.status_code == 200
    assert r.json() == {"id": 7, "verbose": True, "tags": ["a", "b"]}


async def test_body_model_and_header(client: httpx.AsyncClient) -> None:
    """A pydantic parameter is the JSON body; Header() reads a request header."""
    r = await client.post(
        "/items", json={"name": "x", "quantity": 2}, headers={"Idempotency-Key": "k1"}
    )
    assert r.status_code == 201
    assert r.json() == {"item": {"name": "x", "quantity": 2}, "key": "k1"}


async def test_return_types_render_as_json(client: httpx.AsyncClient) -> None:
    """Models, lists, None (204) and Starlette responses are rendered as expected."""
    put = await client.put("/items/1", json={"name": "y", "quantity": 1})
    assert put.json() == {"name": "y", "quantity": 1}
    assert (await client.patch("/items/4")).json() == [4]
    deleted = await client.delete("/items/4")
    assert deleted.status_code == 204 and deleted.content == b""
    raw = await client.get("/raw", headers={"x-thing": "hi"})
    assert raw.text == "hi"


async def test_validation_errors_list_every_field(client: httpx.AsyncClient) -> None:
    """Each bad field is reported with location and message as 422 problem+json."""
    r = await client.post("/items", json={"name": 5, "quantity": 0})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 422 and body["instance"] == "/items"
    locs = sorted(tuple(e["loc"]) for e in body["errors"])
    assert locs == [("body", "name"), ("body", "quantity")]
    bad_path = await client.get("/items/abc")
    assert bad_path.status_code == 422
    assert bad_path.json()["errors"][0]["loc"] == ["path", "item_id"]
    bad_query = await client.get("/items/1?verbose=maybe")
    assert bad_query.json()["errors"][0]["loc"] == ["query", "verbose"]


@pytest.mark.parametrize(
    ("kwargs", "status", "title"),
    [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "Malformed JSON",
        ),
        (
            {"content": b"", "headers": {"content-type": "application/json"}},
            422,
            "Request validation failed",
        ),
        (
            {"content": b"name=x", "headers": {"content-type": "text/plain"}},
            415,
            "Unsupported Media Type",
        ),
        ({"json": [1, 2]}, 422, "Request validation failed"),
    ],
)
async def test_bad_bodies_get_4xx_problems(
    client: httpx.AsyncClient, kwargs: dict[str, Any], status: int, title: str
) -> None:
    """Malformed, missing, non-JSON and wrongly shaped bodies are 4xx, never 500."""
    r = await client.post("/items", **kwargs)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == title


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    """404 for unknown paths, 405 with Allow for a wrong method, both problem+json."""
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "instance": "/nowhere",
    }
    wrong = await client.post("/items/1")
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"]
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_body_over_limit_is_413() -> None:
    """A body larger than the configured limit is refused with 413 problem+json."""
    async with serve(make_service(request_body_limit=64)) as c:
        r = await c.post("/items", json={"name": "x" * 200, "quantity": 1})
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"


async def test_handler_http_error(client: httpx.AsyncClient) -> None:
    """HTTPError raised by a handler becomes its problem, with extra members."""
    r = await client.get("/teapot")
    assert r.status_code == 418
    assert r.json() == {
        "type": "about:blank",
        "title": "I'm a Teapot",
        "status": 418,
        "detail": "short and stout",
        "instance": "/teapot",
        "hint": "try coffee",
    }


async def test_unhandled_exception_is_generic_500_and_logged(client: httpx.AsyncClient) -> None:
    """A crash answers a generic 500 without internals and logs it once with a trace id."""
    with capture_logs() as logs:
        r = await client.get("/boom")
    assert r.status_code == 500
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    failures = [e for e in logs if e["event"] == "http.request.failed"]
    assert len(failures) == 1
    assert len(failures[0]["trace_id"]) == 32


async def test_backend_unavailable_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    """A backend a route needs being down is a 503 the client may retry, not a 500; the
    error (which names the backend) goes to the log only."""
    with capture_logs() as logs:
        r = await client.get("/redis-down")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "A backend this request needs is unavailable; retry later."
    assert "hunter2" not in r.text and "10.0.0.9" not in r.text
    [logged] = [e for e in logs if e["event"] == "http.backend_unavailable"]
    assert "10.0.0.9" in logged["error"]


async def test_starlette_routes_and_mounts() -> None:
    """Plain Starlette routes and mounted ASGI apps are served, with templates as labels."""
    svc = Service("mixed", settings=Settings(_env_file=None))

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    sub = Starlette(routes=[Route("/ping", hello)])
    svc.add_route(Route("/hello", hello))
    svc.mount("/sub", sub)
    async with serve(svc) as c:
        assert (await c.get("/hello")).text == "hello"
        assert (await c.get("/sub/ping")).text == "hello"
        metrics = (await c.get("/metrics")).text
    assert 'route="/sub/ping"' in metrics
    assert 'route="/hello"' in metrics


def test_definition_errors_are_clear() -> None:
    """Wrong handler definitions fail at decoration time with a message saying what to fix."""
    svc = Service("defs", settings=Settings(_env_file=None))
    with pytest.raises(ConfigError, match="must be an 'async def'"):
        svc.get("/sync")(lambda: None)  # type: ignore[arg-type]

    async def missing(other: int) -> None: ...

    with pytest.raises(ConfigError, match=r"path parameters \['item_id'\]"):
        svc.get("/items/{item_id}")(missing)

    async def two(a: Item, b: Item) -> None: ...

    with pytest.raises(ConfigError, match="at most one pydantic model"):
        svc.post("/two")(two)
    with pytest.raises(ConfigError, match="must start with '/'"):
        svc.get("relative")
    with pytest.raises(ConfigError, match="Service name"):
        Service("Bad Name", settings=Settings(_env_file=None))
    with pytest.raises(ConfigError, match="4xx or 5xx"):
        HTTPError(302)


async def test_routes_cannot_be_added_after_app_is_built() -> None:
    """Adding a route after the app was built is an error, not a silently ignored route."""
    svc = Service("late", settings=Settings(_env_file=None))
    _ = svc.app

    async def late() -> None: ...

    with pytest.raises(ConfigError, match=r"before 'service\.app'"):
        svc.get("/late")(late)
