"""The console built from a service's parts (called by the service when its app is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from nativekit._console._app import ConsoleSources, console_mount
from nativekit._console._session import Gate
from nativekit.errors import ConfigError
from nativekit.messaging._consume.deadletters import DeadLetter, Replay, Revivable, replay

if TYPE_CHECKING:
    from starlette.routing import Mount

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
