"""Several services in one ASGI app: each keeps its routes, metrics label and components."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from nativekit._apidocs import api_docs
from nativekit._health import ProbeEndpoints
from nativekit._http.app import build_starlette, probe_routes, wait_for_requests
from nativekit._lifecycle import install_drain_signal
from nativekit._service import Service
from nativekit._telemetry.logging import configure_logging, get_logger
from nativekit.auth._setup import secure_routes
from nativekit.errors import ConfigError


class ServiceGroup:
    """An ASGI app serving several services in one process.

    Each request goes to the service whose route matches, so metrics, logs
    and spans carry that service's name. ``/livez``, ``/readyz``, ``/startupz``
    and ``/metrics`` cover every service. Services start in the given order
    and stop in reverse.
    """

    def __init__(self, services: Sequence[Service], *, name: str | None = None) -> None:
        if not services:
            raise ConfigError("combine() needs at least one Service.")
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ConfigError(f"combine() got services with the same name: {names}.")
        self.services = list(services)
        self.name = name or "+".join(names)
        first = self.services[0]
        self.settings = first.settings
        probes = ProbeEndpoints(self.name, [s.health for s in self.services])
        #: One OpenAPI and one AsyncAPI document for every service, and the docs page.
        self.docs = api_docs(
            self.settings, self.name, lambda: [s.described() for s in self.services]
        )
        probe = probe_routes(probes, [s.metrics for s in self.services], self.settings)
        secure_routes(  # /metrics of the group, with the first service's authentication
            [],
            metrics=[r for r in probe if getattr(r, "path", None) == "/metrics"],
            settings=self.settings.auth,
            authenticator=first.authenticator,
            realm=self.name,
            log=first.log,
        )
        self._probe_app = build_starlette(
            name=self.name,
            settings=self.settings,
            routes=[*probe, *self.docs.routes()],
            metrics=first.metrics,
            lifespan=None,
        )
        self._probe_paths = {getattr(r, "path", "") for r in self._probe_app.routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch lifespan to every service and requests to the matching one."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._route(scope)(scope, receive, send)

    def _route(self, scope: Scope) -> ASGIApp:
        if scope.get("path") in self._probe_paths:
            return self._probe_app
        partial: Service | None = None
        for service in self.services:
            match = _match(service.routes, scope)
            if match is Match.FULL:
                return service.app
            if match is Match.PARTIAL and partial is None:
                partial = service
        return (partial or self.services[0]).app

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":  # pragma: no cover - protocol guarantees order
            return
        configure_logging(self.settings, self.name)
        started: list[Service] = []
        try:
            for service in self.services:
                _ = service.app  # builds routes and checks before serving
                await service.startup(hook_sigterm=False)
                started.append(service)
            self.docs.build_or_log(get_logger(service=self.name))
            restore_sigterm = install_drain_signal(
                self._drain, self.settings.http.shutdown_delay_seconds
            )
        except BaseException as exc:  # cancelled too (the server stopping mid-startup)
            for service in reversed(started):
                with suppress(Exception):
                    await service.shutdown()
            if not isinstance(exc, Exception):
                raise
            await send(
                {"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"}
            )
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        self._drain()
        await wait_for_requests(
            [s.metrics for s in self.services], self.settings.http.shutdown_grace_seconds
        )
        for service in reversed(started):
            await service.shutdown()
        if restore_sigterm is not None:
            restore_sigterm()
        if "opentelemetry.trace" in sys.modules:  # spans ended since the last batch export
            from nativekit._telemetry.tracing import flush_tracing

            await asyncio.to_thread(flush_tracing)
        await send({"type": "lifespan.shutdown.complete"})

    def _drain(self) -> None:
        for service in self.services:
            service.health.draining = True


def _match(routes: list[BaseRoute], scope: Scope) -> Match:
    best = Match.NONE
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return match
        if match is Match.PARTIAL:
            best = match
    return best


def combine(*services: Service, name: str | None = None) -> Any:
    """One ASGI app serving ``services`` (the example shop runs three this way)."""
    return ServiceGroup(services, name=name)
