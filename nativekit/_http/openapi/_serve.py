"""The routes that serve the API documents and the docs page.

Each document is built once (at startup, or by the first request when the app
is served without its lifespan) and kept as bytes. The routes are static
``FastRoute``s placed with the probes, so a request to any other path pays one
set lookup for them, and none at all when the documents are off.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from nativekit.settings import DocsSettings

_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "init.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
<link rel="icon" type="image/png" href="{base}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-url="{url}"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script src="{base}/init.js"></script>
</body>
</html>
"""


class Document:
    """A JSON document built by ``build`` on first use, then served as the same bytes."""

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build = build
        self._body: bytes | None = None

    def body(self) -> bytes:
        """The document as JSON bytes (built on the first call)."""
        if self._body is None:
            self._body = json.dumps(self._build(), separators=(",", ":")).encode()
        return self._body

    def __call__(self) -> dict[str, Any]:
        """The document as a dict (a fresh copy)."""
        result: dict[str, Any] = json.loads(self.body())
        return result

    async def endpoint(self, request: Request) -> Response:
        """Answer with the document."""
        return Response(self.body(), media_type="application/json")


class ApiDocs:
    """The OpenAPI and AsyncAPI documents of a service (or a group) and their routes."""

    def __init__(
        self,
        settings: DocsSettings,
        *,
        title: str,
        openapi: Callable[[], dict[str, Any]],
        asyncapi: Callable[[], dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.title = title
        self.openapi = Document(openapi)
        self.asyncapi = Document(asyncapi)
        self._assets: dict[str, bytes] = {}

    def build(self) -> None:
        """Build the served documents now (at startup), so a broken one fails the start."""
        if self.settings.enabled and self.settings.openapi_path:
            self.openapi.body()
        if self.settings.enabled and self.settings.asyncapi_path:
            self.asyncapi.body()

    def build_or_log(self, log: Any) -> None:
        """:meth:`build`, logging a failure: the service runs, the document answers 500."""
        try:
            self.build()
        except Exception as exc:
            log.error("docs.build_failed", error=f"{type(exc).__name__}: {exc}")

    def routes(self) -> list[BaseRoute]:
        """The routes the settings turn on (none when ``NATIVEKIT_DOCS_ENABLED=false``)."""
        from nativekit._http.routing import FastRoute

        s = self.settings
        if not s.enabled:
            return []
        routes: list[BaseRoute] = []

        def add(path: str, endpoint: Callable[[Request], Any]) -> None:
            routes.append(FastRoute(path, endpoint, methods=["GET"], include_in_schema=False))

        if s.openapi_path:
            add(s.openapi_path, self.openapi.endpoint)
            if s.ui_path:
                add(s.ui_path, self._page)
                for name in _ASSETS:
                    add(f"{s.ui_path}/{name}", self._asset_endpoint(name))
        if s.asyncapi_path:
            add(s.asyncapi_path, self.asyncapi.endpoint)
        return routes

    async def _page(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        page = _PAGE.format(
            title=html.escape(f"{self.title} - API docs"),
            base=html.escape(root + self.settings.ui_path),
            url=html.escape(root + self.settings.openapi_path),
        )
        return Response(page, media_type="text/html; charset=utf-8")

    def _asset_endpoint(self, name: str) -> Callable[[Request], Any]:
        media_type = _ASSETS[name]

        async def asset(request: Request) -> Response:
            body = self._assets.get(name)
            if body is None:
                body = self._assets[name] = asset_bytes(name)
            return Response(
                body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
            )

        return asset


def asset_bytes(name: str) -> bytes:
    """A file of the docs page shipped in the package."""
    return (resources.files("nativekit._http.openapi") / "assets" / name).read_bytes()
