"""The folded error layer answers exactly as Starlette's stock middleware stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Match, Route

from nativekit import HTTPError, Service, Settings
from nativekit._http import boundary
from nativekit._http.routing import FastRoute
from nativekit.testing import lifespan

Reply = tuple[int | None, list[tuple[bytes, bytes]], bytes]


class Thing(BaseModel):
    """A request body."""

    name: str


def make_service() -> Service:
    """A service with routes for every error path."""
    svc = Service(
        "boundary-test",
        settings=Settings(
            telemetry={"tracing_enabled": False}, http={"access_log": False, "max_body_bytes": 64}
        ),
    )

    @svc.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @svc.post("/things", status_code=201)
    async def create(thing: Thing) -> Thing:
        return thing

    @svc.get("/boom")
    async def boom() -> None:
        raise ValueError("internal detail that must not leak")

    @svc.get("/teapot")
    async def teapot() -> None:
        raise HTTPError(418, "short and stout", headers={"Retry-After": "5"})

    @svc.get("/late")
    async def late() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise HTTPError(409, "too late to answer")

        return StreamingResponse(chunks())

    async def conflict(request: Request) -> JSONResponse:
        raise StarletteHTTPException(409, "plain starlette conflict")

    svc.add_route(Route("/plain", conflict))

    @svc.get("/where")
    async def where(request: Request) -> dict[str, str]:
        return {"livez": str(request.url_for("livez"))}

    @svc.get("/anything/{rest:path}")
    async def anything(rest: str) -> dict[str, str]:
        return {"rest": rest}

    return svc


async def call(
    app: Any,
    method: str,
    path: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    chunks: Iterable[bytes] = (),
) -> Reply:
    """Drive one HTTP request through ``app``; return status, headers, body."""
    pending = list(chunks) or [b""]
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    status = start["status"] if start else None
    kept = sorted(h for h in (start or {}).get("headers", []) if h[0] != b"x-request-id")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, kept, body


JSON = (b"content-type", b"application/json")
CASES: dict[str, tuple[str, str, list[tuple[bytes, bytes]], list[bytes]]] = {
    "ok": ("GET", "/items/7", [], []),
    "bad path parameter": ("GET", "/items/seven", [], []),
    "unknown route": ("GET", "/nope", [], []),
    "wrong method": ("DELETE", "/items/7", [], []),
    "valid body": ("POST", "/things", [JSON, (b"content-length", b"14")], [b'{"name":"cup"}']),
    "malformed json": ("POST", "/things", [JSON, (b"content-length", b"7")], [b'{"name"']),
    "invalid body": ("POST", "/things", [JSON, (b"content-length", b"2")], [b"{}"]),
    "chunked body over limit": ("POST", "/things", [JSON], [b'{"name":"' + b"x" * 40, b"y" * 40]),
    "chunked body under limit": ("POST", "/things", [JSON], [b'{"name":', b'"mug"}']),
    "declared length over limit": (
        "POST",
        "/things",
        [JSON, (b"content-length", b"100")],
        [b"z" * 100],
    ),
    "unhandled exception": ("GET", "/boom", [], []),
    "http error": ("GET", "/teapot", [], []),
    "starlette http exception": ("GET", "/plain", [], []),
    "error after response started": ("GET", "/late", [], []),
    "probe": ("GET", "/livez", [], []),
    "probe, trailing slash": ("GET", "/livez/", [], []),
    "probe, trailing newline": ("GET", "/livez\n", [], []),
    "probe, wrong method": ("POST", "/startupz", [], []),
    "catch-all route": ("GET", "/anything/else", [], []),
    "url_for a probe from a handler": ("GET", "/where", [], []),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_fast_path_answers_like_the_stock_stack(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every error path gets the same status, headers and body with and without the fold."""

    method, path, headers, chunks = CASES[case]
    fast = make_service().app
    async with lifespan(fast):
        fast_reply = await call(fast, method, path, headers=headers, chunks=chunks)
    monkeypatch.setattr(boundary, "can_fold", lambda *a, **k: False)
    stock = make_service().app
    async with lifespan(stock):
        stock_reply = await call(stock, method, path, headers=headers, chunks=chunks)
    assert fast_reply == stock_reply


async def test_fast_path_is_used_and_errors_stay_problem_json() -> None:
    """The folded layer sits under telemetry and renders 4xx/5xx as problem+json."""
    app = make_service().app
    async with lifespan(app):
        status, headers, body = await call(app, "GET", "/boom")
        assert isinstance(app.middleware_stack.app, boundary.ErrorBoundary)  # type: ignore[union-attr]
    assert status == 500
    assert (b"content-type", b"application/problem+json") in headers
    assert b"internal detail" not in body


@pytest.mark.parametrize(
    "path",
    ["/livez", "/livez/", "/livez\n", "/live", "/items/3", "/items/", "/items/3/x", "/", ""],
)
@pytest.mark.parametrize("template", ["/livez", "/items/{item_id:int}", "/items/{name}"])
def test_fast_route_matches_exactly_like_route(template: str, path: str) -> None:
    """The literal-prefix shortcut never changes what a route matches."""

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({})

    scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
    fast_match, fast_scope = FastRoute(template, endpoint).matches(dict(scope))
    stock_match, stock_scope = Route(template, endpoint).matches(dict(scope))
    assert fast_match == stock_match
    assert fast_scope.get("path_params") == stock_scope.get("path_params")
    if fast_match is Match.NONE:
        assert fast_scope == {}
