"""How operator commands print: aligned tables for people, JSON for scripts, durations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Rows under upper-case headers, columns padded to their widest cell."""
    lines = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def shorten(text: str | None, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    if not text:
        return "-"
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def when(epoch: float | None) -> str:
    """An epoch time as ``2026-11-25 19:40:02Z`` (UTC)."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(seconds: float) -> str:
    """A duration as ``42s``, ``4m12s``, ``2h5m``, ``3d4h`` or ``7d`` (two units at most)."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    big, small = parts[0], parts[1] if len(parts) > 1 else (0, "")
    return f"{big[0]}{big[1]}" + (f"{small[0]}{small[1]}" if small[0] else "")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h`` or ``1d12h``; raises ValueError."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"{text!r} is not a duration; use seconds or a number with s, m, h or d "
            "(e.g. 90s, 15m, 2h, 1d12h)"
        )
    return float(sum(float(n) * _UNITS[u] for n, u in parts))


def duration_option(*names: str, help: str, **options: Any) -> Callable[[F], F]:
    """A click option taking a duration (see :func:`parse_duration`), in seconds."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return click.option(*names, metavar="DURATION", callback=convert, help=help, **options)
