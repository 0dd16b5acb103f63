"""The ASGI application a Service (or a group of services) is served as.

Probe routes, nativekit's telemetry outside Starlette's error layers, problem+json
handlers and the request body limit, plus the drain wait used on shutdown.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from nativekit._health import ProbeEndpoints
from nativekit._http.limits import BodyLimitMiddleware
from nativekit._http.problems import (
    handle_backend_unavailable,
    handle_http_error,
    handle_starlette_http_error,
    handle_unexpected_error,
)
from nativekit._http.routing import FastRoute, LeadingStaticDispatch
from nativekit._telemetry.metrics import Metrics, metrics_endpoint
from nativekit.errors import BackendUnavailable, HTTPError
from nativekit.settings import Settings


async def wait_for_requests(metrics: list[Metrics], grace: float) -> None:
    """Wait until no request is in flight, at most ``grace`` seconds."""
    deadline = time.monotonic() + grace
    # Polling: requests are counted by the telemetry middleware, which has no event to await.
    while any(m.in_flight_count() > 0 for m in metrics) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def probe_routes(
    probes: ProbeEndpoints, metrics: list[Metrics], settings: Settings
) -> list[BaseRoute]:
    """Routes for /livez, /readyz, /startupz and (when enabled) /metrics."""
    # FastRoute: these come first, so every other request is tested against them.
    routes: list[BaseRoute] = [
        FastRoute("/livez", probes.livez, methods=["GET"], include_in_schema=False),
        FastRoute("/readyz", probes.readyz, methods=["GET"], include_in_schema=False),
        FastRoute("/startupz", probes.startupz, methods=["GET"], include_in_schema=False),
    ]
    if settings.telemetry.metrics_enabled:
        endpoint = metrics_endpoint([m.registry for m in metrics])
        routes.append(FastRoute("/metrics", endpoint, methods=["GET"], include_in_schema=False))
    return routes


class _Application(Starlette):
    """Starlette with nativekit's telemetry outside its error middleware."""

    def __init__(self, *, telemetry: dict[str, Any], **kwargs: Any) -> None:
        self._telemetry = telemetry
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        from nativekit._http.observe import TelemetryMiddleware

        settings: Settings = self._telemetry["settings"]
        tracer = None
        if settings.telemetry.tracing_enabled:
            from nativekit._telemetry.tracing import configure_tracing, get_tracer

            if configure_tracing(self._telemetry["name"]) is not None:
                tracer = get_tracer()
        skip: frozenset[str] = (
            frozenset()
            if settings.telemetry.include_probes
            else frozenset({"/livez", "/readyz", "/startupz"})
        )
        return TelemetryMiddleware(
            self._error_layers(),
            service=self._telemetry["name"],
            metrics=self._telemetry["metrics"] if settings.telemetry.metrics_enabled else None,
            tracer=tracer,
            access_log=settings.http.access_log,
            skip_paths=skip,
        )

    def _error_layers(self) -> ASGIApp:
        """Starlette's stock error layers, folded into one when that is equivalent."""
        from nativekit._http import boundary as boundary

        stock = super().build_middleware_stack()
        if self.max_body_size is not None or not boundary.can_fold(
            self.user_middleware, debug=self.debug
        ):
            return stock
        app: ASGIApp = LeadingStaticDispatch(self.router)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return boundary.ErrorBoundary(app, fallback=stock, handlers=self.exception_handlers)


def flushing_spans(
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]],
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """``lifespan``, then the spans the tracer provider still holds exported: the batch
    processor sends every few seconds, and what it held when the server stopped was lost."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        try:
            async with lifespan(app) as state:
                yield state
        finally:
            if "opentelemetry.trace" in sys.modules:  # no span was made otherwise
                from nativekit._telemetry.tracing import flush_tracing

                await asyncio.to_thread(flush_tracing)

    return run


def build_starlette(
    *,
    name: str,
    settings: Settings,
    routes: list[BaseRoute],
    metrics: Metrics,
    lifespan: Any,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """The Starlette app with problem+json handlers, body limit and telemetry.

    ``middleware`` goes outside the body limit (CORS, so preflights skip the rest).
    """
    if lifespan is not None and settings.telemetry.tracing_enabled:
        lifespan = flushing_spans(lifespan)
    return _Application(
        telemetry={"name": name, "settings": settings, "metrics": metrics},
        routes=routes,
        lifespan=lifespan,
        middleware=[
            *middleware,
            Middleware(BodyLimitMiddleware, limit=settings.http.max_body_bytes),
        ],
        exception_handlers={
            HTTPError: handle_http_error,
            BackendUnavailable: handle_backend_unavailable,
            StarletteHTTPException: handle_starlette_http_error,
            Exception: handle_unexpected_error,
        },
    )
