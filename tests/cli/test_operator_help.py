"""Every operator command answers --help and is documented on the CLI page."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from nativekit.cli._main import cli, main

PAGE = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
GROUPS = ("sagas", "dlq")


def operator_commands() -> list[tuple[str, ...]]:
    """``(group, command)`` for each subcommand, and ``("check",)``."""
    found: list[tuple[str, ...]] = [("check",)]
    for name in GROUPS:
        group = cli.commands[name]
        assert isinstance(group, click.Group)
        found += [(name, sub) for sub in group.commands]
    return found


@pytest.mark.parametrize("path", [(g,) for g in GROUPS] + operator_commands(), ids=" ".join)
def test_help_exits_0_and_describes_the_command(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """`nativekit ... --help` prints usage with the command's summary and exits 0."""
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Usage: nativekit {' '.join(path)}" in out


def test_every_operator_command_is_on_the_cli_page() -> None:
    """docs/cli.md names each command and shows it in a session."""
    for path in operator_commands():
        assert f"`{' '.join(path)}" in PAGE, path
        assert f"$ nativekit {' '.join(path)}" in PAGE, path


def test_groups_without_a_command_print_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`nativekit sagas` alone lists its commands on stderr and exits 2 (usage)."""
    assert main(["sagas"]) == 2
    err = capsys.readouterr().err
    assert "Usage: nativekit sagas" in err and "retry" in err and "compensate" in err
