"""The Service: settings, routes, components and probes wired into one ASGI app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from nativekit import garbage
from nativekit.asgi import build_starlette, probe_routes, wait_for_requests
from nativekit.errors import ConfigError
from nativekit.health import CheckFunc, Health, ProbeEndpoints
from nativekit.lifecycle import Component, Hook, Lifecycle, install_drain_signal
from nativekit.logging import configure_logging, get_logger
from nativekit.metrics import Metrics
from nativekit.routing import Handler, TypedRoute
from nativekit.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import redis.asyncio as aioredis
    from pydantic import BaseModel

    from nativekit.cache import Cache, CachedFunction, CacheOptions  # -- cache --
    from nativekit.messaging import Messaging, Published
    from nativekit.messaging.runtime import ConsumerKwargs
    from nativekit.saga import Saga, SagaRuntime

F = TypeVar("F", bound=Handler)
#: What a service name may look like (also the rule of `nativekit new`).
SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
P = ParamSpec("P")  # -- cache --
R = TypeVar("R")  # -- cache --


class Service:
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
            timeout=self.settings.health_timeout,
            cache_ttl=self.settings.health_cache_ttl,
        )
        self.metrics = Metrics(self.name)
        self.lifecycle = Lifecycle(self.name)
        self.log = get_logger(service=self.name)
        self._app: Starlette | None = None
        self._redis: aioredis.Redis | None = None
        #: Set once a capability uses the shared Redis client (sagas, dedup, command
        #: replies): Redis is then needed to be correct, not only to cache.
        self._redis_required = False
        self._backend_checks_added = False
        self._gc_raised = False

    # -- routes -------------------------------------------------------------------

    def route(
        self, path: str, *, methods: list[str], status_code: int = 200, name: str | None = None
    ) -> Callable[[F], F]:
        """Register a typed handler for ``path`` and ``methods``; returns it unchanged."""
        if not path.startswith("/"):
            raise ConfigError(f"Route path {path!r} must start with '/'.")

        def decorator(func: F) -> F:
            self._add(TypedRoute(path, func, methods=methods, status_code=status_code, name=name))
            return func

        return decorator

    def get(
        self, path: str, *, status_code: int = 200, name: str | None = None
    ) -> Callable[[F], F]:
        """Register a GET handler (HEAD is answered too)."""
        return self.route(path, methods=["GET"], status_code=status_code, name=name)

    def post(
        self, path: str, *, status_code: int = 200, name: str | None = None
    ) -> Callable[[F], F]:
        """Register a POST handler."""
        return self.route(path, methods=["POST"], status_code=status_code, name=name)

    def put(
        self, path: str, *, status_code: int = 200, name: str | None = None
    ) -> Callable[[F], F]:
        """Register a PUT handler."""
        return self.route(path, methods=["PUT"], status_code=status_code, name=name)

    def patch(
        self, path: str, *, status_code: int = 200, name: str | None = None
    ) -> Callable[[F], F]:
        """Register a PATCH handler."""
        return self.route(path, methods=["PATCH"], status_code=status_code, name=name)

    def delete(
        self, path: str, *, status_code: int = 200, name: str | None = None
    ) -> Callable[[F], F]:
        """Register a DELETE handler."""
        return self.route(path, methods=["DELETE"], status_code=status_code, name=name)

    def add_route(self, route: BaseRoute) -> None:
        """Add a plain Starlette route (``Route``, ``Mount``, ``WebSocketRoute``)."""
        self._add(route)

    def mount(self, path: str, app: ASGIApp, *, name: str | None = None) -> None:
        """Mount an ASGI application (a sub-app, static files) under ``path``."""
        self._add(Mount(path, app=app, name=name))

    def _add(self, route: BaseRoute) -> None:
        if self._app is not None:
            raise ConfigError(
                f"Service {self.name!r}: routes must be added before 'service.app' is first used."
            )
        self.routes.append(route)

    # -- components and checks -------------------------------------------------------

    def add_component(self, name: str, component: Component) -> None:
        """Start ``component`` with the service and stop it (in reverse order) on shutdown."""
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

    @property
    def uses_redis(self) -> bool:
        """True when ``NATIVEKIT_REDIS_URL`` points at a Redis server."""
        return not self.settings.redis_url.startswith("memory://")

    @property
    def uses_kafka(self) -> bool:
        """True when ``NATIVEKIT_KAFKA_URL`` points at Kafka brokers."""
        return self.settings.kafka_url != "memory://"

    @property
    def redis(self) -> aioredis.Redis:
        """The service's shared Redis client (created on first use, closed on shutdown).

        Using it makes the ``redis:ping`` readiness check critical (with
        ``NATIVEKIT_REDIS_READINESS=critical``); a service using Redis only through
        its cache gets a warning when Redis is down, as the cache falls through.
        """
        self._redis_required = True
        return self._redis_client()

    def _redis_client(self) -> aioredis.Redis:
        if self._redis is None:
            from nativekit.backends.redis import create_redis

            self._redis = create_redis(self.settings)
        return self._redis

    def _add_backend_checks(self) -> None:
        if self._backend_checks_added:
            return
        self._backend_checks_added = True
        redis_mode, kafka_mode = self.settings.redis_readiness, self.settings.kafka_readiness
        if self.uses_redis and redis_mode != "off":
            from nativekit.backends.redis import redis_check

            self.health.add(
                "redis:ping",
                redis_check(self._redis_client(), self.settings),
                critical=lambda: redis_mode == "critical" and self._redis_required,
                component_type="datastore",
            )
        if self.uses_kafka and kafka_mode != "off":
            from nativekit.backends.kafka import KafkaProbe

            probe = KafkaProbe(self.settings)
            self.health.add(
                "kafka:metadata",
                probe.check,
                critical=kafka_mode == "critical",
                component_type="datastore",
            )
            self.lifecycle.add("kafka-probe", stop=probe.stop)

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
        self._add_backend_checks()
        probes = ProbeEndpoints(self.name, [self.health])
        return build_starlette(
            name=self.name,
            settings=self.settings,
            routes=[*probe_routes(probes, [self.metrics], self.settings), *self.routes],
            metrics=self.metrics,
            lifespan=self._lifespan,
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
        self._add_backend_checks()
        if hook_sigterm:
            install_drain_signal(self._begin_drain, self.settings.shutdown_delay)
        try:
            await self.lifecycle.start()
        except BaseException:
            # The lifecycle stopped what started; no shutdown follows a failed startup.
            await self._close_redis()
            raise
        if not self._gc_raised:
            self._gc_raised = garbage.raise_threshold(self.settings.gc_young_threshold)
        self.health.draining = False  # a service started again after a shutdown is ready again
        self.health.started = True
        self.log.info("service.started", environment=self.settings.environment)

    def _begin_drain(self) -> None:
        if not self.health.draining:
            self.health.draining = True
            self.log.info("service.draining", delay_s=self.settings.shutdown_delay)

    async def shutdown(self) -> None:
        """Fail readiness, let in-flight requests finish, stop components in reverse order."""
        self._begin_drain()
        await wait_for_requests([self.metrics], self.settings.shutdown_grace)
        await self.lifecycle.stop()
        if self._gc_raised:
            self._gc_raised = False
            garbage.restore()
        await self._close_redis()
        self.health.started = False
        self.log.info("service.stopped")

    async def _close_redis(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()

    # -- cache -----------------------------------------------------------------------

    _cache: Cache | None = None

    @property
    def cache(self) -> Cache:
        """The service's cache: Redis per ``NATIVEKIT_REDIS_URL``, in memory for memory://."""
        if self._cache is None:
            from nativekit.cache import Cache

            self._cache = Cache.from_settings(
                self.settings, service=self.name, registry=self.metrics.registry
            )
            if self.health.started:
                # First used while running (from a route): it needs no start now (its near
                # cache stays off until the next startup), but its client must close.
                self.lifecycle.add_running("cache", start=self._cache.start, stop=self._cache.stop)
            else:
                self.add_component("cache", self._cache)
            self.health.add("cache", self._cache.check, critical=False, component_type="datastore")
        return self._cache

    def cached(
        self, *, ttl: float, **options: Unpack[CacheOptions]
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], CachedFunction[P, R]]:
        """Decorator: cache an ``async def``'s typed result for ``ttl`` seconds (see docs)."""
        return self.cache.cached(ttl=ttl, **options)

    # -- sagas --

    @property
    def sagas(self) -> SagaRuntime:
        """The saga runtime: start, wait for, list and operate saga instances."""
        runtime: SagaRuntime | None = getattr(self, "_sagas", None)
        if runtime is None:
            from nativekit.saga.service import attach_runtime

            runtime = self._sagas = attach_runtime(self)
        return runtime

    def saga(self, name: str, *, input: Any = Any) -> Saga[Any]:
        """Define a saga run by this service; add steps with ``@saga.step()``."""
        from nativekit.saga import Saga

        saga: Saga[Any] = Saga(name, input=input)
        self.sagas.declare(saga)
        return saga

    def add_saga(self, saga: Saga[Any], *, legacy: bool = False) -> None:
        """Register a standalone ``Saga``; ``legacy=True`` keeps an old definition only to
        finish the instances started with it."""
        self.sagas.declare(saga, legacy=legacy)

    # -- messaging ---------------------------------------------------------------------

    @property
    def messaging(self) -> Messaging:
        """Broker, publisher and consumers of this service (created on first use)."""
        messaging: Messaging | None = self.__dict__.get("_messaging")
        if messaging is None:
            from nativekit.messaging import Messaging

            messaging = self.__dict__["_messaging"] = Messaging(self)
        return messaging

    async def publish(
        self,
        topic: str,
        event: BaseModel | bytes,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        message_id: str | None = None,
    ) -> Published:
        """Publish a pydantic model (as JSON) or bytes; returns once the broker acknowledged."""
        return await self.messaging.publish(
            topic, event, key=key, headers=headers, message_id=message_id
        )

    def consumer(
        self, topic: str | Sequence[str], **options: Unpack[ConsumerKwargs]
    ) -> Callable[[F], F]:
        """Decorator: run ``async def handler(event: Model[, msg: Message])`` for each message
        of ``topic`` (a name or several); the options are those of ``ConsumerKwargs``:
        ``group``, ``retries``, ``non_retryable``, ``concurrency``, ``max_in_flight``,
        ``dedup_key``, ``idempotent``, ``dead_letter_topic``, ``retain``, ``event_types``."""
        return self.messaging.consumer(topic, **options)

    # -- saga commands --

    def command_handler(
        self, topic: str, *, concurrency: int = 16
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: answer commands of ``topic`` with ``async def h(cmd: Cmd) -> Reply``.

        Runs idempotently per the command's idempotency key (a duplicate gets the
        stored reply again); raise ``CommandRejected`` for a failure reply. Several
        handlers may share a topic: the command type picks one.
        """
        from nativekit.messaging.commands import command_handlers

        return command_handlers(self).register(topic, concurrency=concurrency)
