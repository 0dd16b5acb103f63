"""What every benchmark prints last: one JSON line with the machine, its reference
figure, the headline figure, the peer's figure in the same run and their ratio.

The reference figure is the time of a 10-million-step Python ``for`` loop on this
machine (best of three), so figures from machines of different speed can be told
apart: a run where the loop takes 1.2 s is not comparable, figure for figure, with
one where it takes 0.56 s; the ratios are. ``load`` is the 1-minute load average at
the end of the run: above the core count, other work shared the machine.

``benchmarks/table.py`` collects these lines into the table at the top of
benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

LOOP_STEPS = 10_000_000


def loop_seconds(steps: int = LOOP_STEPS, repeat: int = 3) -> float:
    """Seconds of the fastest of ``repeat`` runs of a ``steps``-step empty Python loop."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(steps):
            pass
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def machine() -> dict[str, object]:
    """CPU count and model, and the Python version."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def row(
    what: str,
    *,
    unit: str,
    figure: float,
    peer: str,
    peer_figure: float,
    target: float | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """One line of the README table: a contender, its peer in the same run, their ratio."""
    ratio = figure / peer_figure if higher_is_better else peer_figure / figure
    return {
        "what": what,
        "unit": unit,
        "figure": round(figure, 3),
        "peer": peer,
        "peer_figure": round(peer_figure, 3),
        "ratio": round(ratio, 3),
        "target": target,
        "met": None if target is None else ratio >= target,
    }


def headline(
    benchmark: str,
    *,
    what: str,
    unit: str,
    figure: float,
    peer: str,
    peer_figure: float,
    target: float | None = None,
    higher_is_better: bool = True,
    details: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The last JSON line of a benchmark (printed and returned).

    Args:
        benchmark: the script's name (``consumer_throughput``).
        what: the headline contender (``nativekit idempotent consumer``).
        unit: the figure's unit (``msg/s``).
        figure: nativekit's figure.
        peer: the peer measured in the same run (``FastStream``).
        peer_figure: the peer's figure.
        target: the ratio the issue asks for, if any.
        higher_is_better: False for costs (latency, CPU): the ratio is then peer/figure.
        details: everything else the script measured.
        rows: further table lines (see :func:`row`); the headline is the first.
    """
    first = row(
        what,
        unit=unit,
        figure=figure,
        peer=peer,
        peer_figure=peer_figure,
        target=target,
        higher_is_better=higher_is_better,
    )
    line: dict[str, Any] = {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reference_loop_s": loop_seconds(),
        "load": round(os.getloadavg()[0], 2),
        **first,
        "rows": [first, *(rows or [])],
        **(details or {}),
    }
    print(json.dumps(line, separators=(",", ":"), default=str), flush=True)
    return line
