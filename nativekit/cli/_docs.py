"""``nativekit docs``: write a service's OpenAPI and AsyncAPI documents to files."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from nativekit.cli._common import EXIT_OK, EXIT_USAGE, CommandError


def load_target(target: str) -> Any:
    """The object ``module:attribute`` names (the current directory is importable)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CommandError(
            f"{target!r} is not 'module:attribute' (e.g. 'examples.shop.app:app').", EXIT_USAGE
        )
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from exc
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise CommandError(f"{module_name!r} has no attribute {attribute!r}.", EXIT_USAGE)
        found = getattr(found, part)
    # `app = svc.app` is a Starlette app: the service behind it is what has documents
    if not hasattr(found, "docs"):
        raise CommandError(
            f"{target} is a {type(found).__name__}, not a nativekit Service or combine() "
            "group; name the service (e.g. 'billing.app:svc').",
            EXIT_USAGE,
        )
    return found


@click.command()
@click.argument("target")
@click.option(
    "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="Directory to write openapi.json and asyncapi.json into.",
)  # fmt: skip
def docs(target: str, out: Path) -> int:
    """Write TARGET's openapi.json and asyncapi.json (TARGET: 'module:service', e.g.
    'examples.shop.app:app' or 'billing.app:svc'), for a repository or a schema registry.

    Importing TARGET must not need Redis or Kafka: the documents come from the code.
    """
    service = load_target(target)
    out.mkdir(parents=True, exist_ok=True)
    for name, document in (
        ("openapi.json", service.docs.openapi()),
        ("asyncapi.json", service.docs.asyncapi()),
    ):
        path = out / name
        path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {path}")
    return EXIT_OK
