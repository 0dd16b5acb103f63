"""A small service using every documented route feature, for the OpenAPI tests."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

import nativekit
from tests.support import settings


class Item(BaseModel):
    """An item to sell."""

    name: str = Field(min_length=1, max_length=50)
    price: int = Field(ge=0)


class ItemView(BaseModel):
    """An item with its id."""

    id: int
    item: Item


def build(name: str = "catalog", **values: object) -> nativekit.Service:
    """The catalog service (a new one each call: routes are per service)."""
    svc = nativekit.Service(name, settings=settings(**values))

    @svc.get("/items", tags=["items"])
    async def list_items(
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        tag: list[str] | None = None,
        trace: Annotated[str | None, nativekit.Header("X-Trace")] = None,
    ) -> list[ItemView]:
        """List the items.

        Paged by ``limit``; ``tag`` filters (repeatable)."""
        return []

    @svc.post("/items", status_code=201, deprecated=True, operation_id="addItem",
              responses={409: "An item with this name exists."})  # fmt: skip
    async def add_item(body: Item) -> ItemView:
        """Add an item."""
        return ItemView(id=1, item=body)

    @svc.get("/items/{item_id}")
    async def get_item(item_id: int) -> ItemView:
        """One item."""
        raise nativekit.HTTPError(404, f"no item {item_id}")

    @svc.delete("/items/{item_id}", status_code=204, summary="Remove an item",
                responses={200: ItemView})  # fmt: skip
    async def remove_item(item_id: int) -> None:
        return None

    @svc.get("/raw", response_model=ItemView, include_in_schema=True)
    async def raw() -> JSONResponse:
        """Answers a Response it builds itself."""
        return JSONResponse({"id": 2, "item": {"name": "x", "price": 1}})

    @svc.get("/internal", include_in_schema=False)
    async def internal() -> dict[str, str]:
        return {}

    @nativekit.operation_schema(
        {"summary": "Ping", "responses": {"200": {"description": "pong"}}}
    )
    async def ping(request: Request) -> Response:
        return Response("pong")

    async def undocumented(request: Request) -> Response:
        return Response("?")

    async def hello(request: Request) -> Response:
        """Say hello.
        ---
        summary: Hello from a mounted router
        responses:
          "200":
            description: a greeting
        """
        return Response("hello")

    svc.add_route(Route("/ping", ping))
    svc.add_route(Route("/undocumented", undocumented))
    svc.add_route(Mount("/sub", routes=[Route("/hello", hello)]))
    return svc
