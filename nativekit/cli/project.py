"""``nativekit new``: create a service project from the packaged templates."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from nativekit.cli.common import CommandError
from nativekit.cli.scaffold import ScaffoldError, scaffold


@click.command()
@click.argument("name", metavar="NAME")
@click.option(
    "--directory",
    "-d",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Where to create the project (default: ./NAME).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty directory, overwriting files of the same name.",
)
def new(name: str, directory: Path | None, force: bool) -> None:
    """Create a working service project NAME (app, tests, Makefile, Dockerfile).

    NAME: lowercase letters, digits, '.', '_' and '-' (e.g. order-service); the
    Python package is the name with '-' and '.' turned into '_'.
    """
    target = directory if directory is not None else Path(name)
    try:
        written = scaffold(name, target, force=force)
    except ScaffoldError as exc:
        raise CommandError(str(exc), exc.exit_code) from exc
    click.echo(f"Created service {name!r} in {target}")
    for path in written:
        click.echo(f"  {path.relative_to(target).as_posix()}")
    click.echo("\nNext steps:")
    click.echo(f"  cd {shlex.quote(str(target))}")
    click.echo("  make test   # create .venv, install, run the tests")
    click.echo("  make run    # serve on http://127.0.0.1:8000 (try /readyz and /metrics)")
