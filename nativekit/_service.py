"""The Service: settings, routes, components and probes wired into one ASGI app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from nativekit._apidocs import Described, api_docs
from nativekit._context import ServiceContext
from nativekit._health import CheckFunc, Health, HealthCollector, ProbeEndpoints
from nativekit._http.app import build_starlette, probe_routes, wait_for_requests
from nativekit._http.routes import Routes
from nativekit._lifecycle import Component, Hook, Lifecycle, Phase, install_drain_signal
from nativekit._messaging_api import MessagingMethods
from nativekit._saga_api import SagaMethods
from nativekit._telemetry.logging import configure_logging, get_logger
from nativekit._telemetry.metrics import Metrics
from nativekit._transaction import Transaction
from nativekit.auth._setup import build_authenticator, cors_middleware, secure_routes
from nativekit.backends._select import Backends
from nativekit.client._registry import ClientOptions, HTTPClients
from nativekit.errors import ConfigError
from nativekit.messaging._commands.handlers import CommandHandlers
from nativekit.messaging._consume.handler import HandlerFunc
from nativekit.messaging._messaging import Messaging
from nativekit.saga._run.capability import build_sagas
from nativekit.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from nativekit.cache import Cache, CachedFunction, CacheOptions  # -- cache --
    from nativekit.client import HTTPClient
    from nativekit.saga import SagaRuntime

H = TypeVar("H", bound=HandlerFunc)
#: What a service name may look like (also the rule of `nativekit new`).
SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
P = ParamSpec("P")  # -- cache --
R = TypeVar("R")  # -- cache --
T = TypeVar("T")  # -- sagas --


class Service(SagaMethods, MessagingMethods, Routes):
    """A nativekit service: decorate handlers on it, serve ``service.app`` with uvicorn.

    Args:
        name: service name used in logs, metrics (``service`` label) and traces
            (lowercase letters, digits, ``.``, ``_`` and ``-``).
        settings: settings to use; read from ``NATIVEKIT_*`` variables when omitted.
    """

    def __init__(self, name: str, *, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.name = self.settings.service_name or name
        if not SERVICE_NAME.match(self.name):
            raise ConfigError(
                f"Service name {self.name!r} is not valid; use 1-64 lowercase letters, digits, "
                "'.', '_' or '-', starting and ending with a letter or digit "
                "(e.g. 'order-service')."
            )
        self.routes: list[BaseRoute] = []
        self.health = Health(
            self.name,
            timeout=self.settings.telemetry.health_timeout_seconds,
            cache_ttl=self.settings.telemetry.health_cache_seconds,
        )
        self.metrics = Metrics(self.name)
        self.metrics.registry.register(HealthCollector(self.health))
        self.lifecycle = Lifecycle(self.name)
        self.log = get_logger(service=self.name)
        self.context = ServiceContext(
            self.name, self.settings, self.metrics, self.health, self.lifecycle
        )
        self.backends = Backends(self.name, self.settings)
        #: Verifies bearer tokens (static token, JWTs) per ``NATIVEKIT_AUTH_*``; None: no auth.
        self.authenticator = build_authenticator(self.settings.auth)
        if self.authenticator is not None:
            self.lifecycle.add_component("auth", self.authenticator, phase=Phase.BACKENDS)
        # Capabilities, in their start phases: backends, then (after the application's own
        # hooks) consumers, saga recovery, the outbox relay; stopped in reverse.
        self.lifecycle.add(
            "backends", start=self.backends.start, stop=self.backends.aclose, phase=Phase.BACKENDS
        )
        self.lifecycle.add(
            "cache", start=self._start_cache, stop=self._stop_cache, phase=Phase.BACKENDS
        )
        #: Broker, publisher and consumers of this service.
        self.messaging = Messaging(
            self.context,
            broker=self.backends.broker,
            dedup_store=self.backends.dedup_store,
            transactions=self.backends.transactions,
        )
        self.lifecycle.add_component("messaging", self.messaging, phase=Phase.CONSUMERS)
        self._commands = CommandHandlers(
            self.context, self.messaging, store=self.backends.reply_store
        )
        #: The saga runtime: start, wait for, list and operate saga instances.
        self.sagas: SagaRuntime
        self.sagas, self._saga_commands = build_sagas(
            self.context, self.backends.saga_store, self.messaging, self.backends.transactions
        )
        self._http_clients = HTTPClients(self.context)
        #: The OpenAPI and AsyncAPI documents and the docs page (``NATIVEKIT_DOCS_*``).
        self.docs = api_docs(self.settings, self.name, lambda: [self.described()])
        self._cache: Cache | None = None
        self._app: Starlette | None = None
        self._checks_added = False
        self._restore_sigterm: Callable[[], None] | None = None

    def _add(self, route: BaseRoute) -> None:
        if self._app is not None:
            raise ConfigError(
                f"Service {self.name!r}: routes must be added before 'service.app' is first used."
            )
        self.routes.append(route)

    # -- components and checks -------------------------------------------------------

    def add_component(self, name: str, component: Component) -> None:
        """Start ``component`` with the service and stop it (in reverse order) on shutdown.

        Components and ``on_startup`` hooks start in the order they were added, after the
        backends and the cache and before consumers, saga recovery and the outbox relay.
        """
        self.lifecycle.add_component(name, component)

    def on_startup(self, func: Hook) -> Hook:
        """Decorator: run ``func`` when the service starts."""
        self.lifecycle.add(getattr(func, "__qualname__", "startup"), start=func)
        return func

    def on_shutdown(self, func: Hook) -> Hook:
        """Decorator: run ``func`` when the service stops."""
        self.lifecycle.add(getattr(func, "__qualname__", "shutdown"), stop=func)
        return func

    def readiness_check(
        self, name: str, *, timeout: float | None = None, critical: bool = True
    ) -> Callable[[CheckFunc], CheckFunc]:
        """Decorator: add an async check to ``/readyz`` (non-critical failures only warn)."""

        def decorator(func: CheckFunc) -> CheckFunc:
            self.health.add(name, func, timeout=timeout, critical=critical)
            return func

        return decorator

    # -- shared backends -----------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction on the service's PostgreSQL (``NATIVEKIT_DATABASE_URL``) for code
        outside steps and handlers (routes, startup hooks): committed when the block
        ends, rolled back when it raises.

        Raises:
            ConfigError: no database is configured.
        """
        factory = self.backends.transactions()
        if factory is None:
            raise ConfigError(
                "svc.transaction() needs a database: set NATIVEKIT_DATABASE_URL=postgresql://..."
            )
        scope = factory()
        try:
            yield scope
            await scope.commit()
        finally:
            await scope.close()

    @property
    def uses_redis(self) -> bool:
        """True when ``NATIVEKIT_REDIS_URL`` points at a Redis server."""
        return self.backends.uses_redis

    @property
    def uses_kafka(self) -> bool:
        """True when ``NATIVEKIT_KAFKA_URL`` points at Kafka brokers."""
        return self.backends.uses_kafka

    @property
    def redis(self) -> aioredis.Redis:
        """The service's shared Redis client (created on first use, closed on shutdown).

        Using it makes the ``redis:ping`` readiness check critical (with
        ``NATIVEKIT_REDIS_READINESS=critical``); a service using Redis only through
        its cache gets a warning when Redis is down, as the cache falls through.
        """
        return self.backends.redis

    def _add_checks(self) -> None:
        """Backend checks and the operator API: added once, when the app is first built."""
        if self._checks_added:
            return
        self._checks_added = True
        redis_mode, kafka_mode = self.settings.redis.readiness, self.settings.kafka.readiness
        if self.uses_redis and redis_mode != "off":
            self.health.add(
                "redis:ping",
                self.backends.redis_check(),
                critical=lambda: redis_mode == "critical" and self.backends.redis_required,
                component_type="datastore",
            )
        database_mode = self.settings.database.readiness
        if self.backends.uses_postgres and database_mode != "off":
            self.health.add(
                "postgres:ping",
                self.backends.postgres_check(),
                critical=database_mode == "critical",
                component_type="datastore",
            )
        if self.uses_kafka and kafka_mode != "off":
            from nativekit.backends.kafka._client import KafkaProbe

            probe = KafkaProbe(self.settings)
            self.health.add(
                "kafka:metadata",
                probe.check,
                critical=kafka_mode == "critical",
                component_type="datastore",
            )
            self.lifecycle.add("kafka-probe", stop=probe.stop, phase=Phase.BACKENDS)
        if self.settings.saga.operator_api and self.sagas.in_use and self._app is None:
            from nativekit.auth._setup import check_operator_api
            from nativekit.saga._operator.http import operator_routes

            check_operator_api(self.settings.auth, self.log)

            prefix = self.settings.saga.operator_prefix
            self.routes[:0] = operator_routes(self.sagas, prefix)
        if self.settings.console.enabled and self._app is None:
            from nativekit._console import build_console

            self.routes.insert(0, build_console(
                service=self.name, settings=self.settings, authenticator=self.authenticator,
                sagas=self.sagas if self.sagas.in_use else None, messaging=self.messaging,
                health=self.health, backends=self.backends, log=self.log,
            ))  # fmt: skip

    # -- the ASGI app ----------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        """The Starlette application to serve (``uvicorn module:svc.app``)."""
        if self._app is None:
            self._app = self._build_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve as an ASGI app directly (``uvicorn module:svc``)."""
        await self.app(scope, receive, send)

    def _build_app(self) -> Starlette:
        configure_logging(self.settings, self.name)
        self._add_checks()
        probes = probe_routes(
            ProbeEndpoints(self.name, [self.health]), [self.metrics], self.settings
        )
        secure_routes(
            self.routes,
            metrics=[r for r in probes if getattr(r, "path", None) == "/metrics"],
            settings=self.settings.auth,
            authenticator=self.authenticator,
            realm=self.name,
            log=self.log,
        )
        return build_starlette(
            name=self.name,
            settings=self.settings,
            routes=[*probes, *self.docs.routes(), *self.routes],
            metrics=self.metrics,
            lifespan=self._lifespan,
            middleware=cors_middleware(self.settings.cors),
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self, *, hook_sigterm: bool = True) -> None:
        """Start components, then report started; also hooks SIGTERM for draining."""
        configure_logging(self.settings, self.name)
        self._add_checks()
        if hook_sigterm and self._restore_sigterm is None:
            self._restore_sigterm = install_drain_signal(
                self._begin_drain, self.settings.http.shutdown_delay_seconds
            )
        self.docs.build_or_log(self.log)
        try:
            await self.lifecycle.start()
        except BaseException:
            # The lifecycle stopped what started; no shutdown follows a failed startup.
            await self.backends.aclose()
            self._unhook_sigterm()
            raise
        self.health.draining = False  # a service started again after a shutdown is ready again
        self.health.started = True
        self.log.info("service.started", environment=self.settings.environment)

    def _begin_drain(self) -> None:
        if not self.health.draining:
            self.health.draining = True
            self.log.info("service.draining", delay_s=self.settings.http.shutdown_delay_seconds)

    def _unhook_sigterm(self) -> None:
        if self._restore_sigterm is not None:
            restore, self._restore_sigterm = self._restore_sigterm, None
            restore()

    async def shutdown(self) -> None:
        """Fail readiness, let in-flight requests finish, stop components in reverse order."""
        self._begin_drain()
        await wait_for_requests([self.metrics], self.settings.http.shutdown_grace_seconds)
        await self.lifecycle.stop()
        self._unhook_sigterm()
        self.health.started = False
        self.log.info("service.stopped")

    def http_client(self, base_url: str, **options: Unpack[ClientOptions]) -> HTTPClient:
        """A client for another service at ``base_url``, closed when this service stops.

        Pooled, retried (idempotent requests and those with an idempotency key),
        broken per host, traced and counted in ``http_client_requests_total``; see
        docs/http-client.md for the options (``peer``, ``timeout``, ``retries``, ...).
        """
        return self._http_clients.create(base_url, options)

    # -- API documents -----------------------------------------------------------------

    def described(self) -> Described:
        """What this service's documents are built from (``svc.docs.openapi()``)."""
        _ = self.app  # the operator routes join when the app is built
        parts = (self.messaging, self._commands, self.sagas, self._saga_commands.reply_topic)
        return Described(self.name, self.routes, *parts)

    # -- cache -----------------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        """The service's cache: Redis per ``NATIVEKIT_REDIS_URL``, in memory for memory://."""
        if self._cache is None:
            self._cache = self.backends.cache(self.metrics.registry)
            self.health.add("cache", self._cache.check, critical=False, component_type="datastore")
        return self._cache

    async def _start_cache(self) -> None:
        if self._cache is not None:
            await self._cache.start()

    async def _stop_cache(self) -> None:
        # A cache first used while running (from a route) was never started; its client
        # must close all the same (its near cache stays off until the next startup).
        if self._cache is not None:
            await self._cache.stop()

    def cached(
        self, *, ttl: float, **options: Unpack[CacheOptions]
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], CachedFunction[P, R]]:
        """Decorator: cache an ``async def``'s typed result for ``ttl`` seconds (see docs)."""
        return self.cache.cached(ttl=ttl, **options)
