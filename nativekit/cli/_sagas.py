"""``nativekit sagas``: list, show, retry, compensate and abort saga instances.

The commands work on the store the services use (their Redis, key prefix and
shards) without the saga code: retry and compensate write the new status and
release the lease, and the recovery loop of a replica that registers the saga
runs it (see :mod:`nativekit.saga._operator.admin`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click

from nativekit.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError
from nativekit.cli._connect import echo_err, load_settings, redis_client, require_redis, run
from nativekit.cli._output import (
    duration,
    duration_option,
    emit_json,
    json_option,
    shorten,
    table,
    when,
)
from nativekit.saga._operator.admin import SagaAdmin
from nativekit.saga._store.model import SagaRecord, SagaStatus, StepRecord, StepStatus
from nativekit.settings import Settings

_service_option = click.option(
    "--service",
    "-s",
    metavar="NAME",
    help="Service whose sagas to use (default: NATIVEKIT_SERVICE_NAME). Its saga keys "
    "are 'nk:saga:NAME' unless NATIVEKIT_SAGA_KEY_PREFIX says otherwise.",
)
_wait_option = duration_option(
    "--wait",
    "wait_for",
    help="Wait up to DURATION (e.g. 30s) for the saga to end; exit 1 unless it ends as asked.",
)


def _prefix(settings: Settings, service: str | None) -> str:
    if settings.saga.key_prefix:
        return settings.saga.key_prefix
    name = service or settings.service_name
    if not name:
        raise CommandError(
            "which service's sagas? Pass --service NAME or set NATIVEKIT_SERVICE_NAME "
            "(or NATIVEKIT_SAGA_KEY_PREFIX to the services' saga key prefix).",
            EXIT_USAGE,
        )
    return f"nk:saga:{name}"


def _operate(service: str | None, action: Callable[[SagaAdmin], Awaitable[Any]]) -> Any:
    """Run ``action`` with an admin on the services' saga store."""
    settings = load_settings()
    if settings.database.url:  # NATIVEKIT_DATABASE_URL: saga state is in PostgreSQL
        return run(_operate_postgres(settings, action))
    require_redis(settings, "saga state")
    prefix = _prefix(settings, service)

    async def go() -> Any:
        from nativekit.backends.redis._saga_store import RedisSagaStore

        async with redis_client(settings) as client:
            store = RedisSagaStore(client, prefix=prefix, shards=settings.saga.shards)
            admin = SagaAdmin(
                store,
                lease=settings.saga.lease_seconds,
                retention=settings.saga.retention_seconds,
            )
            return await action(admin)

    return run(go())


async def _operate_postgres(
    settings: Settings, action: Callable[[SagaAdmin], Awaitable[Any]]
) -> Any:
    from nativekit.backends.postgres import Database, PostgresSagaStore

    database = Database(settings)
    try:
        admin = SagaAdmin(
            PostgresSagaStore(database),
            lease=settings.saga.lease_seconds,
            retention=settings.saga.retention_seconds,
        )
        return await action(admin)
    finally:
        await database.aclose()


@click.group()
def sagas() -> None:
    """Inspect and operate saga instances (in the Redis of NATIVEKIT_REDIS_URL)."""


@sagas.command("list")
@_service_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in SagaStatus], case_sensitive=False),
    help="Only sagas in this status.",
)
@click.option("--name", metavar="SAGA", help="Only instances of this saga.")
@duration_option(
    "--older-than",
    help="Only sagas in their status for at least DURATION (e.g. 90s, 15m, 2h, 1d).",
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Page size."
)
@click.option("--cursor", metavar="CURSOR", help="Continue after the page that printed it.")
@json_option
def list_sagas(
    service: str | None,
    status: str | None,
    name: str | None,
    older_than: float | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List saga instances, longest in their status first.

    Example: nativekit sagas list -s orders --status FAILED --older-than 10m
    """
    page = _operate(
        service,
        lambda admin: admin.store.list(
            status=SagaStatus(status.upper()) if status else None,
            name=name,
            older_than=older_than,
            limit=limit,
            cursor=cursor,
        ),
    )
    if as_json:
        emit_json({"items": [r.to_dict() for r in page.items], "cursor": page.cursor})
        return
    if not page.items:
        settings = load_settings()
        echo_err(
            f"No saga matches (keys {_prefix(settings, service)}, {settings.saga.shards} shards)."
        )
        return
    now = time.time()
    rows = [
        (
            r.saga_id,
            r.name,
            r.status.value,
            duration(now - r.since),
            current_step(r),
            shorten(r.error, 60),
        )
        for r in page.items
    ]
    click.echo(table(("SAGA ID", "NAME", "STATUS", "FOR", "STEP", "ERROR"), rows))
    if page.cursor:
        echo_err(f"More sagas: add --cursor '{page.cursor}'")


@sagas.command()
@_service_option
@click.argument("saga_id", metavar="ID")
@json_option
def show(service: str | None, saga_id: str, as_json: bool) -> None:
    """Show one saga: status, error, input, and the history of each step."""
    record: SagaRecord = _operate(service, lambda admin: admin.get(saga_id))
    if as_json:
        emit_json(record.to_dict())
        return
    click.echo(describe(record))


@sagas.command()
@_service_option
@click.argument("saga_id", metavar="ID")
@_wait_option
@json_option
def retry(service: str | None, saga_id: str, wait_for: float | None, as_json: bool) -> int:
    """Send a FAILED or ABORTED saga forward again, its failed step with a fresh policy.

    A replica that registers the saga resumes it on its next recovery pass.
    Refused once a compensation ran (use compensate).
    """
    return _act(service, saga_id, "retry", wait_for, as_json, SagaStatus.COMPLETED)


@sagas.command()
@_service_option
@click.argument("saga_id", metavar="ID")
@_wait_option
@json_option
def compensate(service: str | None, saga_id: str, wait_for: float | None, as_json: bool) -> int:
    """Roll a saga back: stop a RUNNING one, or finish undoing a FAILED or ABORTED one.

    A replica that registers the saga runs the compensations on its next recovery pass.
    """
    return _act(service, saga_id, "compensate", wait_for, as_json, SagaStatus.COMPENSATED)


@sagas.command()
@_service_option
@click.argument("saga_id", metavar="ID")
@click.option(
    "--reason", default="aborted by an operator", show_default=True, help="Stored as the error."
)
@json_option
def abort(service: str | None, saga_id: str, reason: str, as_json: bool) -> int:
    """Stop a RUNNING, COMPENSATING or FAILED saga where it is; nothing runs for it again."""
    return _act(service, saga_id, "abort", None, as_json, SagaStatus.ABORTED, reason=reason)


def _act(
    service: str | None,
    saga_id: str,
    action: str,
    wait_for: float | None,
    as_json: bool,
    goal: SagaStatus,
    reason: str = "",
) -> int:
    async def go(admin: SagaAdmin) -> tuple[SagaStatus, SagaRecord, SagaRecord | None]:
        before = (await admin.get(saga_id)).status
        if action == "abort":
            after = await admin.abort(saga_id, reason)
        else:
            after = await getattr(admin, action)(saga_id)
        end = None if wait_for is None else await _wait(admin, saga_id, wait_for)
        return before, after, end

    settings = load_settings()
    before, after, end = _operate(service, go)
    final = end or after
    if as_json:
        emit_json(final.to_dict() | {"previous_status": before.value})
    else:
        click.echo(f"Saga {saga_id} ({after.name}): {before.value} -> {after.status.value}.")
        if after.status.active and end is None:
            click.echo(
                f"A replica that registers saga {after.name!r} resumes it within "
                f"{settings.saga.recovery_interval_seconds:g}s "
                "(NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS)."
            )
        if end is not None:
            click.echo(f"Now {end.status.value}.")
            if end.error and end.status is not SagaStatus.COMPLETED:
                label = "Error" if end.status is SagaStatus.FAILED else "Reason"
                click.echo(f"{label}: {end.error}")
    if end is None or end.status is goal:
        return EXIT_OK
    if end.status.active:
        raise CommandError(
            f"saga {saga_id!r} is still {end.status.value} after {wait_for:g}s; is a replica "
            f"that registers saga {end.name!r} (definition {end.definition}) running?",
            EXIT_FAILED,
        )
    raise CommandError(
        f"saga {saga_id!r} ended {end.status.value}, not {goal.value}: {end.error}", EXIT_FAILED
    )


async def _wait(admin: SagaAdmin, saga_id: str, within: float) -> SagaRecord:
    deadline = time.monotonic() + within
    delay = 0.05
    while True:
        record = await admin.get(saga_id)
        if not record.status.active or time.monotonic() >= deadline:
            return record
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


_BUSY = (StepStatus.RUNNING, StepStatus.COMPENSATING, StepStatus.FAILED)


def current_step(record: SagaRecord) -> str:
    """The step the saga is at: one running, compensating or failed, else the last done."""
    busy = [
        (max(s.compensation_started_at or 0, s.started_at or 0), name)
        for name, s in record.steps.items()
        if s.status in (*_BUSY, StepStatus.COMPENSATION_FAILED)
    ]
    if busy:
        return max(busy)[1]
    return record.order[-1] if record.order else "-"


def _ordered(record: SagaRecord) -> list[tuple[str, StepRecord]]:
    done = [name for name in record.order if name in record.steps]
    rest = sorted(
        (name for name in record.steps if name not in done),
        key=lambda n: record.steps[n].started_at or float("inf"),
    )
    return [(name, record.steps[name]) for name in done + rest]


def _attempts(attempts: int, interrupted: int) -> str:
    """``3`` or ``3 (2 interrupted)``: attempts cut short by a process stop are not failures."""
    return f"{attempts} ({interrupted} interrupted)" if interrupted else str(attempts)


def _model_lines(record: SagaRecord) -> list[str]:
    """Deadline, parent and children, and what a parked saga waits for (when present)."""
    lines = []
    if record.deadline is not None:
        lines.append(f"Deadline:    {when(record.deadline)}")
    if record.parent is not None:
        lines.append(f"Parent:      {record.parent}")
    for child, step in sorted(record.children.items()):
        lines.append(f"Child:       {child} (step {step})")
    if record.awaiting:
        lines.append(f"Awaiting:    {', '.join(record.awaiting)}")
    if record.events:
        lines.append(f"Events:      {', '.join(sorted(record.events))}")
    return lines


def describe(record: SagaRecord) -> str:
    """The ``show`` text of a record."""
    now = time.time()
    lease = "-"
    if record.lease_until:
        left = record.lease_until - now
        lease = f"until {when(record.lease_until)}" + (
            f" ({duration(left)} left)" if left > 0 else " (expired: waits for recovery)"
        )
    lines = [
        f"Saga:        {record.saga_id}",
        f"Name:        {record.name} (definition {record.definition})",
        f"Status:      {record.status.value} for {duration(now - record.since)} "
        f"(since {when(record.since)})",
        f"Created:     {when(record.created_at)}",
        f"Updated:     {when(record.updated_at)}",
        f"Lease:       {lease}",
        f"Error:       {record.error or '-'}",
        f"Input:       {record.input}",
    ]
    lines += _model_lines(record)
    lines.append("")
    rows = [
        (
            name,
            s.status.value
            + (" (uncertain)" if s.uncertain else "")
            + (" (waiting)" if s.waiting else ""),
            _attempts(s.attempts, s.interruptions),
            _attempts(s.compensation_attempts, s.compensation_interruptions),
            when(s.started_at),
            when(s.compensation_ended_at or s.ended_at),
            shorten(s.error, 50),
        )
        for name, s in _ordered(record)
    ]
    if rows:
        headers = ("STEP", "STATUS", "ATTEMPTS", "UNDO ATTEMPTS", "STARTED", "ENDED", "ERROR")
        lines.append(table(headers, rows))
    else:
        lines.append("No step has started.")
    if record.results:
        lines += ["", "Results:"]
        names = [n for n in record.order if n in record.results]
        names += sorted(n for n in record.results if n not in names)
        lines += [f"  {name}: {json.dumps(json.loads(record.results[name]))}" for name in names]
    return "\n".join(lines)
