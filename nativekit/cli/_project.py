"""``nativekit new`` and ``nativekit update``: create a service project, keep it current."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from nativekit.cli._common import EXIT_FAILED, CommandError
from nativekit.cli._scaffold import ScaffoldError, project_for, scaffold

# The parts a project can leave out: option name -> what the prompt asks.
PARTS = {
    "kafka": "Use Kafka (an idempotent consumer, Kafka in compose.yaml and the manifests)?",
    "kubernetes": "Add Kubernetes manifests (k8s/)?",
    "ci": "Add a GitHub Actions workflow?",
}


def _interactive(prompt: bool | None) -> bool:
    """Prompt when asked to, else when a person is at the terminal."""
    return prompt if prompt is not None else sys.stdin.isatty() and sys.stdout.isatty()


@click.command()
@click.argument("name", metavar="NAME", required=False)
@click.argument("dir_arg", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@click.option(
    "--directory",
    "-d",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Where to create the project (default: ./NAME); same as the DIR argument.",
)
@click.option("--kafka/--no-kafka", default=True, help="Kafka consumer and infra (default: on).")
@click.option("--kubernetes/--no-kubernetes", default=True, help="k8s/ manifests (default: on).")
@click.option("--ci/--no-ci", default=True, help="GitHub Actions workflow (default: on).")
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty directory, overwriting files of the same name.",
)
@click.option(
    "--prompt/--no-prompt",
    default=None,
    help="Ask for the name and parts (default: only when run in a terminal).",
)
@click.pass_context
def new(
    ctx: click.Context,
    name: str | None,
    dir_arg: Path | None,
    directory: Path | None,
    kafka: bool,
    kubernetes: bool,
    ci: bool,
    force: bool,
    prompt: bool | None,
) -> None:
    """Create a working service project NAME in DIR (default ./NAME).

    NAME: lowercase letters, digits and '-' (e.g. order-service), usable as a
    DNS label; the Python package is the name with '-' turned into '_'.
    """
    interactive = _interactive(prompt)
    if name is None:
        if not interactive:
            raise click.UsageError("Missing argument 'NAME'.")
        name = click.prompt("Service name (e.g. order-service)", type=str).strip()
    if dir_arg is not None and directory is not None:
        raise click.UsageError("Give the directory once: as DIR or as --directory.")
    target = dir_arg or directory or Path(name)
    parts = {"kafka": kafka, "kubernetes": kubernetes, "ci": ci}
    try:
        project_for(name)  # a bad name fails before any question is asked
        if interactive:
            for part, question in PARTS.items():
                if ctx.get_parameter_source(part) is click.core.ParameterSource.DEFAULT:
                    parts[part] = click.confirm(question, default=parts[part])
        project = project_for(name, **parts)
        written = scaffold(project, target, force=force)
    except ScaffoldError as exc:
        raise CommandError(str(exc), exc.exit_code) from exc
    click.echo(f"Created service {name!r} in {target}")
    for path in written:
        click.echo(f"  {path.relative_to(target).as_posix()}")
    click.echo("\nNext steps:")
    click.echo(f"  cd {shlex.quote(str(target))}")
    click.echo("  make test   # create .venv, install, run the tests")
    click.echo("  make run    # serve on http://127.0.0.1:8000 (try /readyz and /metrics)")
    click.echo("  git init && git add -A && git commit -m 'New service'   # for nativekit update")


@click.command()
@click.argument(
    "directory",
    metavar="[DIR]",
    required=False,
    default=Path("."),
    type=click.Path(path_type=Path, file_okay=False),
)
def update(directory: Path) -> None:
    """Merge the current project template into the project in DIR (default: here).

    Your changes are kept; where you and the template changed the same lines the
    file gets conflict markers to resolve. Commit first: the project must be a
    clean git work tree, so `git diff` shows what the update did.
    """
    from nativekit.cli._template_repo import update as run_update

    try:
        result = run_update(directory)
    except ScaffoldError as exc:
        raise CommandError(str(exc), exc.exit_code) from exc
    if result.new_version <= result.old_version:
        click.echo(f"{directory} is at the current template version {result.old_version}.")
        return
    click.echo(
        f"Updated {directory} from template version {result.old_version} to {result.new_version}."
    )
    for path in result.changed:
        mark = "  (conflict: resolve the <<<<<<< markers)" if path in result.conflicts else ""
        click.echo(f"  {path}{mark}")
    click.echo("Review with 'git diff', run the tests, then commit.")
    if result.conflicts:
        raise CommandError(
            f"{len(result.conflicts)} file(s) have conflicts between your changes and the "
            "template's; resolve them, then commit.",
            EXIT_FAILED,
        )
