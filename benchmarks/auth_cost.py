"""What authentication costs per request, in instructions counted by callgrind.

Usage::

    python benchmarks/auth_cost.py [--apps nativekit-metrics,nativekit-jwt]
                                   [--short 200] [--long 1200] [--nativekit-root DIR]

Each app of benchmarks/apps/http_apps.py (with the headers it needs) is driven
in-process through its ASGI interface, ``GET /items/42`` again and again, under
``valgrind --tool=callgrind``: once with ``--short`` and once with ``--long``
requests. The difference of the two instruction counts divided by the
difference of the requests is the cost of one request, start-up excluded.
Instruction counts do not depend on what else the machine runs, so the figures
hold on a busy machine where req/s would not. ``--nativekit-root`` runs another
checkout's nativekit (e.g. ``git archive main``) to compare a route before and
after a change. Needs ``valgrind`` (Debian/Ubuntu: ``apt-get install -y valgrind``).

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [("nativekit-jwt", "nativekit-metrics", 0.8)]


async def _drive(name: str, requests: int) -> None:
    """Start app ``name``, send it ``requests`` requests, check each is a 200."""
    from benchmarks.apps.http_apps import APPS, EXTRA_APPS, HEADERS
    from nativekit.testing import lifespan

    app = {**APPS, **EXTRA_APPS}[name]()
    headers = [
        (k.lower().encode(), v.encode())
        for k, v in (HEADERS[name]() if name in HEADERS else {}).items()
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/42",
        "raw_path": b"/items/42",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    async with lifespan(app):
        for _ in range(requests):
            await app(dict(scope), receive, send)
    bad = [s for s in statuses if s != 200]
    if bad or len(statuses) != requests:
        raise SystemExit(f"{name}: {len(bad)} of {requests} requests were not 200 ({bad[:3]})")


def _instructions(name: str, requests: int, nativekit_root: Path | None) -> int:
    """Instructions of a whole driver run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(p) for p in (nativekit_root, ROOT) if p is not None),
        }
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--drive",
            name,
            str(requests),
            *(["--nativekit-root", str(nativekit_root)] if nativekit_root else []),
        ]
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
        summary = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if summary is None:
            raise RuntimeError(f"no instruction total in callgrind output of {name}")
        return int(summary.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--apps", default="nativekit-metrics,nativekit-jwt")
    parser.add_argument("--short", type=int, default=200, help="requests of the short run")
    parser.add_argument("--long", type=int, default=1200, help="requests of the long run")
    parser.add_argument("--nativekit-root", type=Path, default=None)
    parser.add_argument("--drive", nargs=2, metavar=("APP", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        sys.path.insert(0, str(ROOT))
        if args.nativekit_root:
            sys.path.insert(0, str(args.nativekit_root))
        asyncio.run(_drive(args.drive[0], int(args.drive[1])))
        return 0
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed (apt-get install -y valgrind).", file=sys.stderr)
        return 2
    if not 0 <= args.short < args.long:
        parser.error("--short must be below --long")
    per_request: dict[str, float] = {}
    for name in [n.strip() for n in args.apps.split(",") if n.strip()]:
        short = _instructions(name, args.short, args.nativekit_root)
        long = _instructions(name, args.long, args.nativekit_root)
        per_request[name] = (long - short) / (args.long - args.short)
        print(f"{name:<22} {per_request[name]:>12,.0f} instructions/request", flush=True)
    ratios = {
        f"{a}/{b}": {
            "ratio": round(per_request[b] / per_request[a], 3),
            "min_ratio": minimum,
            "met": per_request[b] / per_request[a] >= minimum,
        }
        for a, b, minimum in PAIRS
        if a in per_request and b in per_request
    }
    for pair, figure in ratios.items():
        print(
            f"{pair}: {figure['ratio']:.3f} (throughput ratio at equal CPU, target >= "
            f"{figure['min_ratio']})"
        )
    print(
        json.dumps(
            {
                "benchmark": "auth_cost",
                "instructions_per_request": {k: round(v) for k, v in per_request.items()},
                "targets": ratios,
                "short": args.short,
                "long": args.long,
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
