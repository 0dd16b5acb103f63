"""``nativekit`` command: ``nativekit new NAME`` and ``nativekit version``."""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import nativekit
from nativekit.cli.scaffold import ScaffoldError, scaffold

PROG = "nativekit"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tools for nativekit services.",
        epilog="Run 'nativekit new billing' to create a working service project in ./billing.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {nativekit.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    new = commands.add_parser(
        "new",
        help="create a service project (app, tests, Makefile, Dockerfile)",
        description="Create a working nativekit service project: a typed HTTP app, its "
        "tests, a Makefile (make run, make test), a Dockerfile and a .env.example.",
    )
    new.add_argument(
        "name",
        metavar="NAME",
        help="service name: lowercase letters, digits, '.', '_' and '-' (e.g. order-service); "
        "the Python package is the name with '-' and '.' turned into '_'",
    )
    new.add_argument(
        "--directory",
        "-d",
        metavar="DIR",
        type=Path,
        help="where to create the project (default: ./NAME)",
    )
    new.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty directory, overwriting files of the same name",
    )
    commands.add_parser("version", help="print the nativekit and Python versions")
    return parser


def _new(args: argparse.Namespace) -> int:
    target: Path = args.directory if args.directory is not None else Path(args.name)
    written = scaffold(args.name, target, force=args.force)
    print(f"Created service {args.name!r} in {target}")
    for path in written:
        print(f"  {path.relative_to(target).as_posix()}")
    print("\nNext steps:")
    print(f"  cd {shlex.quote(str(target))}")
    print("  make test   # create .venv, install, run the tests")
    print("  make run    # serve on http://127.0.0.1:8000 (try /readyz and /metrics)")
    return 0


def _version() -> int:
    print(f"{PROG} {nativekit.__version__} (Python {platform.python_version()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nativekit`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 done, 1 the command failed (e.g. the target directory is not empty),
    2 bad usage (unknown command, invalid name).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            return _new(args)
        if args.command == "version":
            return _version()
    except ScaffoldError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser.print_help(sys.stderr)
    return 2
