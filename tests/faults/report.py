"""The table of docs/reliability.md from fault-suite results (JSON lines, one per fault
run): ``python -m tests.faults.report RESULTS.jsonl``."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def verdict(row: dict[str, Any]) -> str:
    bad = row["problems"] or row["dead_letters"] or row["server_errors"] or row["unaccepted"]
    return "**fail**" if bad else "hold"


def restarts(row: dict[str, Any]) -> str:
    bound = 11.0  # the session timeout + 5 s, static members (see run.py)
    texts = []
    for r in row["restarts"]:
        joined = r["ready_after"] - r["live_after"]
        over = " **over the bound**" if joined >= bound or r["live_cpu"] >= 2 else ""
        texts.append(
            f"live {r['live_after']:.1f} s ({r['live_cpu']:.2f} s CPU), "
            f"ready {r['ready_after']:.1f} s ({joined:.1f} s after live){over}"
        )
    return ", ".join(texts)


def table(rows: list[dict[str, Any]]) -> str:
    by_fault: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_fault[row["fault"]].append(row)
    lines = [
        "| fault | run | orders | confirmed / cancelled | final after (s) | settled after (s) "
        "| 503 / conn. errors | restart | invariants |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fault, runs in by_fault.items():
        for n, row in enumerate(runs, 1):
            if "error" in row:
                error = row["error"].replace("|", "/").replace("\n", " ")[:160]
                lines.append(f"| {fault} | {n} | | | | | | | **broke off**: {error} |")
                continue
            lines.append(
                f"| {fault} | {n} | {row['orders']} | {row['confirmed']} / {row['cancelled']} "
                f"| {row['final_after']} | {row['settled_after']} "
                f"| {row['http'].get('503', 0)} / {row['transport_errors']} "
                f"| {restarts(row) or '-'} | {verdict(row)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    rows = [
        json.loads(line)
        for path in sys.argv[1:]
        for line in Path(path).read_text().splitlines()
        if line.strip()
    ]
    print(table(rows))
