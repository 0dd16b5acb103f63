"""What every ``nativekit`` command shares: the program name, exit codes, errors."""

from __future__ import annotations

from typing import IO

import click

PROG = "nativekit"

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and failed (target not empty, saga not found, ...)
EXIT_USAGE = 2  # bad usage: unknown command or option, invalid argument
EXIT_UNREACHABLE = 3  # Redis or Kafka could not be reached


class CommandError(Exception):
    """A failure that ``main`` reports as ``nativekit: error: MESSAGE`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[str] | None = None) -> None:
        """Print the error to stderr in the commands' one format."""
        click.echo(f"{PROG}: error: {self}", err=True, file=file)
