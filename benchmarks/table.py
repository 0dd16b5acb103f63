"""Collect each benchmark's last JSON line into the table at the top of benchmarks/README.md.

    make bench                                   # writes benchmarks/results/<script>.log
    python benchmarks/table.py                   # prints the table from those logs
    python benchmarks/table.py --write           # and replaces it in benchmarks/README.md
    python benchmarks/table.py a.log b.log       # other logs

Every line of the table comes from one log's last JSON line (see benchmarks/harness.py):
the machine's reference figure (a 10-million-step Python loop), the load average at
the end of that run, nativekit's figure, the peer's figure measured in the same run
and their ratio, against the target where the issue sets one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
START = "<!-- results:start (benchmarks/table.py --write) -->"
END = "<!-- results:end -->"
ORDER = (
    "http_overhead",
    "cache_hit",
    "saga_throughput",
    "consumer_throughput",
    "saga_command_reply",
    "shop_load",
)


def last_json(path: Path) -> dict[str, Any] | None:
    """The last line of ``path`` that is a JSON object, or None."""
    for line in reversed(path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:,.2f}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def table(lines: list[dict[str, Any]]) -> str:
    """The markdown table of ``lines`` (one row per headline row)."""
    out = [
        "| benchmark | contender | figure | peer (same run) | peer figure | ratio | target "
        "| met | loop s | load | date |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for line in lines:
        for row in line.get("rows") or [line]:
            unit = row.get("unit", "")
            target = row.get("target")
            met = row.get("met")
            out.append(
                f"| `{line.get('benchmark', '?')}` | {row.get('what', '?')} "
                f"| {_num(row.get('figure'))} {unit} | {row.get('peer', '?')} "
                f"| {_num(row.get('peer_figure'))} {unit} | **{_num(row.get('ratio'))}x** "
                f"| {'≥ ' + _num(target) + 'x' if target is not None else '-'} "
                f"| {'yes' if met else 'no' if met is not None else '-'} "
                f"| {_num(line.get('reference_loop_s'))} | {_num(line.get('load'))} "
                f"| {str(line.get('date', ''))[:16]} |"
            )
    return "\n".join(out)


def main(argv: list[str]) -> int:
    write = "--write" in argv
    paths = [Path(a) for a in argv if a != "--write"]
    if not paths:
        paths = [RESULTS / f"{name}.log" for name in ORDER if (RESULTS / f"{name}.log").exists()]
    lines = [line for path in paths if (line := last_json(path)) is not None]
    if not lines:
        print(f"no benchmark logs with a JSON line found in {RESULTS}", file=sys.stderr)
        return 1
    text = table(lines)
    print(text)
    if write:
        readme = README.read_text()
        head, found, rest = readme.partition(START)
        _, found_end, tail = rest.partition(END)
        if not (found and found_end):
            print(f"{README} has no {START} ... {END} block", file=sys.stderr)
            return 1
        README.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
