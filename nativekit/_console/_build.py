"""The console built from a service's parts (called by the service when its app is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from nativekit._console import _app as app
from nativekit._console import _consumers, _letters, _sagas
from nativekit._console._app import ConsoleSources
from nativekit._console._session import Gate
from nativekit.auth import Access
from nativekit.errors import ConfigError
from nativekit.messaging._consume.deadletters import DeadLetter, Replay, Revivable, replay

if TYPE_CHECKING:
    from nativekit._health import Health
    from nativekit.auth import Authenticator
    from nativekit.backends import Backends
    from nativekit.messaging._messaging import Messaging
    from nativekit.saga._run.runtime import SagaRuntime
    from nativekit.settings import Settings


def build_console(
    *,
    service: str,
    settings: Settings,
    authenticator: Authenticator | None,
    sagas: SagaRuntime | None,
    messaging: Messaging,
    health: Health,
    backends: Backends,
    log: Any,
) -> Mount:
    """The console mount; refuses to build it with no authentication configured unless
    ``NATIVEKIT_AUTH_INSECURE_OPERATOR_API`` allows it for development."""
    if authenticator is None and not settings.auth.insecure_operator_api:
        raise ConfigError(
            "NATIVEKIT_CONSOLE_ENABLED=true but no authentication is configured, so anyone "
            "reaching the port could read saga inputs and retry, compensate or abort sagas. "
            "Set NATIVEKIT_AUTH_TOKEN_FILE (a static operator token) or NATIVEKIT_AUTH_JWKS_URL "
            "with NATIVEKIT_AUTH_AUDIENCE; for local development only, "
            "NATIVEKIT_AUTH_INSECURE_OPERATOR_API=true serves it without authentication."
        )
    if authenticator is None:
        log.warning("console.insecure", hint="the operator console has no authentication")
    retention = settings.consumer.dedup_retention_seconds

    def store(namespace: str, retain: float | None) -> Revivable:
        return cast("Revivable", backends.dedup_store(namespace, retain or retention))

    async def send_back(letter: DeadLetter) -> Replay:
        return await replay(letter, broker=messaging.broker, stores=store)

    async def read_topic(topic: str, limit: int) -> tuple[list[Any], int]:
        return await backends.read_topic(topic, limit=limit)

    async def readiness() -> tuple[str, dict[str, Any]]:
        return await health.run()

    sources = ConsoleSources(
        service=service,
        settings=settings.console,
        gate=Gate(authenticator, settings.auth.operator_scope, settings.console.secure_cookie),
        sagas=sagas,
        consumers=lambda: [c.status() for c in messaging.consumers],
        readiness=readiness,
        read_topic=read_topic,
        replay=send_back,
        log=log,
    )
    return console_mount(sources)


def console_mount(sources: ConsoleSources) -> Mount:
    """The console as one mount at ``sources.settings.path``.

    It authenticates its own requests (cookie or bearer header), so the service's
    route guards leave it alone (``access``: not required).
    """
    pages = app.Pages(sources)

    async def home(request: Request) -> Response:
        return RedirectResponse(pages.url(request, "sagas"), status_code=303)

    async def login(request: Request) -> Response:
        return await app.login(pages, request)

    async def logout(request: Request) -> Response:
        return await app.logout(pages, request)

    routes = [
        Route("/", home, name="home"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/console.css", app.css, name="css"),
        *_sagas.routes(pages),
        *_letters.routes(pages),
        *_consumers.routes(pages),
    ]
    return _ConsoleMount(sources.settings.path, routes=routes, name="console")


class _ConsoleMount(Mount):
    #: The console checks its callers itself (cookie or header): no route guard on it.
    access = Access(required=False)
