"""The readiness check of PostgreSQL and the schema check at startup."""

from __future__ import annotations

import time

from nativekit._health import CheckFunc, CheckResult
from nativekit._telemetry.logging import get_logger
from nativekit.backends.postgres._client import Database
from nativekit.backends.postgres._migrations import current_version, latest_version, upgrade
from nativekit.errors import BackendUnavailable, ConfigError


def postgres_check(database: Database) -> CheckFunc:
    """A readiness check: ``SELECT 1`` on the pool, with its latency."""

    async def check() -> CheckResult:
        started = time.perf_counter()
        await database.ping()
        latency = round((time.perf_counter() - started) * 1000, 2)
        return CheckResult(observed_value=latency, observed_unit="ms")

    return check


async def prepare_schema(database: Database, service: str) -> None:
    """Apply pending migrations when ``NATIVEKIT_DATABASE_MIGRATE_ON_START`` allows it;
    else refuse to start on an outdated schema. An unreachable server is logged, not
    fatal: the service stays live and its stores report the outage."""
    log = get_logger(service=service, component="postgres")
    try:
        if database.settings.database.migrate_on_start:
            applied = await upgrade(database)
            if applied:
                log.info("postgres.schema.upgraded", versions=[m.version for m in applied])
            return
        version = await current_version(database)
    except BackendUnavailable as exc:
        log.warning("postgres.schema.unchecked", error=str(exc))
        return
    if version < latest_version():
        raise ConfigError(
            f"PostgreSQL schema {database.schema!r} at {database.url_safe} is at version "
            f"{version}, this nativekit needs {latest_version()}: run 'nativekit db upgrade' "
            "or set NATIVEKIT_DATABASE_MIGRATE_ON_START=true."
        )
