"""``nativekit db``: the PostgreSQL schema of the saga, outbox and dedup tables.

``nativekit db upgrade`` applies the migrations this nativekit ships that the
database (``NATIVEKIT_DATABASE_URL``, schema ``NATIVEKIT_DATABASE_SCHEMA_NAME``)
has not seen; ``nativekit db status`` shows the versions without changing anything.
"""

from __future__ import annotations

import click

from nativekit.cli._checks import Finding, Status
from nativekit.cli._common import EXIT_OK, EXIT_USAGE, CommandError
from nativekit.cli._connect import load_settings, run
from nativekit.cli._output import emit_json, json_option
from nativekit.settings import Settings


def _require_database(settings: Settings) -> None:
    if not settings.database.url:
        raise CommandError(
            "NATIVEKIT_DATABASE_URL is not set: the services keep their state in Redis or "
            "memory, so there is no schema to manage; set it to the PostgreSQL your "
            "services use (postgresql://user@host:5432/database).",
            EXIT_USAGE,
        )


@click.group()
def db() -> None:
    """The PostgreSQL schema of sagas, the outbox and consumer dedup."""


@db.command()
@json_option
def upgrade(as_json: bool) -> int:
    """Apply pending schema migrations (safe to run from several places at once)."""
    settings = load_settings()
    _require_database(settings)
    from nativekit.backends.postgres import Database, latest_version
    from nativekit.backends.postgres import upgrade as apply

    async def go() -> list[int]:
        database = Database(settings)
        try:
            return [m.version for m in await apply(database)]
        finally:
            await database.aclose()

    applied = run(go())
    schema = settings.database.schema_name
    if as_json:
        emit_json({"schema": schema, "applied": applied, "version": latest_version()})
    elif applied:
        click.echo(
            f"schema {schema}: applied {', '.join(map(str, applied))}; "
            f"now at version {latest_version()}"
        )
    else:
        click.echo(f"schema {schema}: already at version {latest_version()}")
    return EXIT_OK


@db.command()
@json_option
def status(as_json: bool) -> int:
    """Show the server version, the schema version and the pending migrations."""
    settings = load_settings()
    _require_database(settings)
    from nativekit.backends.postgres import Database, current_version, pending, server_version

    async def go() -> tuple[str, int, list[str]]:
        database = Database(settings)
        try:
            waiting = await pending(database)
            names = [f"{m.version:04d}_{m.name}" for m in waiting]
            return await server_version(database), await current_version(database), names
        finally:
            await database.aclose()

    server, version, waiting = run(go())
    schema = settings.database.schema_name
    if as_json:
        emit_json(
            {"server_version": server, "schema": schema, "version": version, "pending": waiting}
        )
    else:
        click.echo(
            f"PostgreSQL {server}; schema {schema} at version {version}; "
            f"pending: {', '.join(waiting) or 'none'}"
        )
    return EXIT_OK


async def postgres_findings(settings: Settings) -> list[Finding]:
    """For ``nativekit check``: server version, schema version, pending migrations."""
    if not settings.database.url:
        return []
    from nativekit.backends.postgres import Database, current_version, pending, server_version
    from nativekit.errors import BackendUnavailable

    database = Database(settings)
    try:
        server = await server_version(database)
        version = await current_version(database)
        waiting = await pending(database)
    except BackendUnavailable as exc:
        return [Finding("postgres", "unreachable", str(exc))]
    finally:
        await database.aclose()
    schema = settings.database.schema_name
    found = [Finding("postgres", "ok", f"PostgreSQL {server} at {database.url_safe}")]
    if waiting:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in waiting)
        fix = (
            "applied when the services start (NATIVEKIT_DATABASE_MIGRATE_ON_START)"
            if settings.database.migrate_on_start
            else "services refuse to start until 'nativekit db upgrade' runs"
        )
        status: Status = "warn" if settings.database.migrate_on_start else "fail"
        found.append(
            Finding(
                "postgres:schema", status, f"{schema} at version {version}; pending: {names}; {fix}"
            )
        )
    else:
        found.append(Finding("postgres:schema", "ok", f"{schema} at version {version}"))
    return found
