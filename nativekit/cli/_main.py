"""The ``nativekit`` command: a click group that each command module adds to.

Commands live in their own modules (``nativekit.cli._project`` for ``new``, and so
on) and are registered in :func:`_commands`. Every failure a user can cause is a
:class:`CommandError` with an exit code that means something.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence

import click

import nativekit
from nativekit.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PROG, CommandError


@click.group(
    name=PROG,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Run 'nativekit new billing' to create a working service project in ./billing.",
)
@click.version_option(nativekit.__version__, prog_name=PROG, message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Tools for nativekit services: create projects and operate sagas and dead letters."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help(), err=True)
        ctx.exit(EXIT_USAGE)


@cli.command()
def version() -> None:
    """Print the nativekit and Python versions."""
    click.echo(f"{PROG} {nativekit.__version__} (Python {platform.python_version()})")


def _commands() -> None:
    from nativekit.cli._check import check
    from nativekit.cli._db import db
    from nativekit.cli._dlq import dlq
    from nativekit.cli._docs import docs
    from nativekit.cli._project import new, update
    from nativekit.cli._reshard import reshard
    from nativekit.cli._sagas import sagas

    sagas.add_command(reshard)
    cli.add_command(new)
    cli.add_command(update)
    cli.add_command(sagas)
    cli.add_command(dlq)
    cli.add_command(check)
    cli.add_command(docs)
    cli.add_command(db)


_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nativekit`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 done, 1 the command failed (e.g. the target directory is not empty),
    2 bad usage (unknown command, invalid name), 3 Redis or Kafka unreachable.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except (CommandError, click.ClickException) as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo(f"{PROG}: aborted", err=True)
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_OK
