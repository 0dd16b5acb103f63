"""What the API documents cost a request to a route of yours: instructions per request.

Usage::

    python benchmarks/apidocs_cost.py [--requests 1000]

Drives ``GET /items/1`` through benchmarks/apps/http_apps.py's nativekit-metrics app
in process (raw ASGI calls, ``gc.disable()``) under ``valgrind --tool=callgrind``,
twice per setting (200 and 200 + N requests), so the difference is the cost of N
requests alone, whatever else runs on the machine. Settings: the documents on (the
default) and off (``NATIVEKIT_DOCS_ENABLED=false``); ``--tree PATH`` adds the same
app from another checkout (e.g. the main branch before the documents existed).

The last line is one JSON object: instructions per request by setting, and on/off.
Needs valgrind (Debian: ``apt-get install -y valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def drive(requests: int) -> None:
    """Serve ``requests`` GETs through the app (called in the measured process, whose
    PYTHONPATH names the tree to measure)."""
    from benchmarks.apps.http_apps import nativekit_metrics
    from nativekit.testing import lifespan

    app: Any = nativekit_metrics()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/items/1", "raw_path": b"/items/1", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"status {message['status']}")

    async def run() -> None:
        async with lifespan(app):
            for _ in range(20):  # warm: first-request work is not per-request cost
                await app(dict(scope), receive, send)
            gc.disable()
            for _ in range(requests):
                await app(dict(scope), receive, send)

    asyncio.run(run())


def instructions(requests: int, env: dict[str, str], pythonpath: str) -> int:
    """Instructions callgrind counts for one process serving ``requests``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, str(Path(__file__).resolve()), "--drive", str(requests),
        ]  # fmt: skip
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NATIVEKIT_")},
            **env,
            "PYTHONPATH": pythonpath,
            "PYTHONHASHSEED": "0",
        }
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.M)
        if found is None:
            raise RuntimeError("callgrind wrote no summary")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--tree", help="another checkout to measure the same way")
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(args.drive)
        return
    base = 200
    settings = {
        "docs on": ({}, str(ROOT)),
        "docs off": ({"NATIVEKIT_DOCS_ENABLED": "false"}, str(ROOT)),
    }
    if args.tree:
        settings["other tree"] = ({}, str(Path(args.tree).resolve()))
    per_request: dict[str, float] = {}
    for name, (env, path) in settings.items():
        low = instructions(base, env, path)
        high = instructions(base + args.requests, env, path)
        per_request[name] = (high - low) / args.requests
        print(f"{name:>12}: {per_request[name]:,.0f} instructions per request")
    ratio = per_request["docs on"] / per_request["docs off"]
    print(json.dumps({"instructions_per_request": per_request, "on_vs_off": round(ratio, 4)}))


if __name__ == "__main__":
    main()
