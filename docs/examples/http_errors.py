"""Query and header parameters, custom errors, and a mounted Starlette app."""

from typing import Annotated

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import nativekit
from nativekit import Header, HTTPError

svc = nativekit.Service("catalog")


@svc.get("/products")
async def list_products(
    limit: int = 10,
    tag: list[str] | None = None,
    tenant: Annotated[str | None, Header("X-Tenant")] = None,
) -> dict[str, object]:
    if limit > 100:
        raise HTTPError(400, "limit must be at most 100", title="Limit too large")
    return {"limit": limit, "tags": tag or [], "tenant": tenant}


async def legacy(request: Request) -> PlainTextResponse:
    return PlainTextResponse("legacy ok")


svc.mount("/legacy", Starlette(routes=[Route("/ping", legacy)]))
app = svc.app
