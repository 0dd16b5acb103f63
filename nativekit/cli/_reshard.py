"""``nativekit sagas reshard``: move saga state to another NATIVEKIT_SAGA_SHARDS (offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from nativekit.cli._common import EXIT_OK, EXIT_USAGE, CommandError
from nativekit.cli._connect import load_settings, redis_client, require_redis, run
from nativekit.cli._output import emit_json, json_option
from nativekit.cli._sagas import _prefix, _service_option

if TYPE_CHECKING:
    from nativekit.backends.redis._reshard import ReshardReport


@click.command("reshard")
@_service_option
@click.option(
    "--from",
    "old",
    type=click.IntRange(1, 1024),
    help="Shard count the data has now (default: NATIVEKIT_SAGA_SHARDS).",
)
@click.option("--to", "new", type=click.IntRange(1, 1024), required=True, help="New shard count.")
@click.option(
    "--services-stopped",
    is_flag=True,
    help="Confirm that no replica of the service runs: they must not write meanwhile.",
)
@json_option
def reshard(
    service: str | None, old: int | None, new: int, services_stopped: bool, as_json: bool
) -> int:
    """Move every saga (records, indexes, outbox) from --from shards to --to shards.

    Stop every replica of the service first, run this, then start them with
    NATIVEKIT_SAGA_SHARDS set to the new count. Running it again after an
    interruption finishes the move.
    """
    if not services_stopped:
        raise CommandError(
            "resharding moves keys the services read and write: stop every replica of the "
            "service, then run again with --services-stopped.",
            EXIT_USAGE,
        )
    settings = load_settings()
    require_redis(settings, "saga state")
    prefix = _prefix(settings, service)
    source = old or settings.saga.shards

    async def go() -> ReshardReport:
        from nativekit.backends.redis._reshard import reshard_sagas

        async with redis_client(settings) as client:
            return await reshard_sagas(client, prefix=prefix, old=source, new=new)

    report = run(go())
    summary = {
        "prefix": prefix,
        "from": source,
        "to": new,
        "records": report.records,
        "moved": report.moved,
        "outbox_entries": report.outbox_entries,
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo(
            f"moved {summary['moved']} of {summary['records']} sagas and "
            f"{summary['outbox_entries']} outbox entries from {source} to {new} shards; "
            f"start the services with NATIVEKIT_SAGA_SHARDS={new}."
        )
    return EXIT_OK
