"""HTTP overhead in instructions: each app's server process under callgrind, per request.

Usage::

    python benchmarks/http_cost.py [--apps starlette,nativekit-metrics,...]
                                   [--short 300] [--long 2300] [--connections 16]

Each app of benchmarks/apps/http_apps.py runs under uvicorn (uvloop, httptools, one
worker, as in ``http_overhead.py``) inside ``valgrind --tool=callgrind``; a client in
this process (not measured) sends ``GET /items/42`` over ``--connections`` keep-alive
connections, ``--short`` requests in one server's life and ``--long`` in another's.
The difference of the two servers' instruction totals divided by the difference of the
requests is what one request costs the server: HTTP parsing, the app, and for the
exporting apps the batch span processor's thread and the OTLP export, start-up and
shutdown excluded. Instruction counts do not depend on what else runs on the machine,
so their ratio to bare Starlette approximates ``http_overhead.py``'s req/s ratio (the
server's CPU is what limits it) on a machine too busy for wrk to be trusted. The
exporting apps send to a discarding OTLP/HTTP receiver running in this process.

Needs valgrind (Debian/Ubuntu: ``apt-get install -y valgrind``). The last line of
output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.apps.http_apps import APPS, EXTRA_APPS, HEADERS  # noqa: E402
from benchmarks.http_overhead import (  # noqa: E402
    HOST,
    PAIRS,
    REFERENCE,
    TARGETS,
    _Receiver,
    free_port,
    start_receiver,
)

ALL_APPS = {**APPS, **EXTRA_APPS}
DEFAULT_APPS = [
    "starlette",
    "nativekit-metrics",
    "nativekit-full",
    "nativekit-full-sampled",
    "nativekit-full-exporting",
]


async def _load(port: int, requests: int, connections: int, headers: dict[str, str]) -> None:
    """Send ``requests`` GETs over ``connections`` keep-alive connections; each must be a 200."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET /items/42 HTTP/1.1\r\nhost: bench\r\n{extra}\r\n".encode()
    left = requests

    async def one_connection() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while left > 0:
                left -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                if status != 200:
                    raise RuntimeError(f"status {status}: {head!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))


def _wait_until_up(process: subprocess.Popen[bytes], port: int, name: str, log: Path) -> None:
    deadline = time.monotonic() + 1800  # start-up under valgrind on a busy machine is slow
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        try:
            asyncio.run(_load(port, 1, 1, HEADERS[name]() if name in HEADERS else {}))
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer within 1800 s; see {log}")


def instructions(name: str, requests: int, connections: int, log: Path) -> int:
    """Instructions of one server's whole life serving ``requests`` (plus one probe)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-m", "uvicorn", "--factory",
            f"benchmarks.apps.http_apps:{ALL_APPS[name].__name__}",
            "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log.open("ab") as err:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            _wait_until_up(process, port, name, log)
            headers = HEADERS[name]() if name in HEADERS else {}
            asyncio.run(_load(port, requests, connections, headers))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        summary = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if summary is None:
            raise RuntimeError(f"no instruction total in callgrind output of {name}; see {log}")
        return int(summary.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--apps", default=",".join(DEFAULT_APPS))
    parser.add_argument("--short", type=int, default=300, help="requests of the short run")
    parser.add_argument("--long", type=int, default=2300, help="requests of the long run")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed (apt-get install -y valgrind).", file=sys.stderr)
        return 2
    if not 0 <= args.short < args.long:
        parser.error("--short must be below --long")
    names = [n.strip() for n in args.apps.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_APPS]
    if unknown or not names:
        parser.error(f"unknown apps {unknown}; choose from {', '.join(ALL_APPS)}")
    if any(n.startswith("nativekit-full-") for n in names):
        os.environ["BENCH_OTLP_ENDPOINT"] = start_receiver()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "nativekit-http-cost.log"
    log.write_bytes(b"")
    per_request: dict[str, float] = {}
    exports: dict[str, int] = {}
    for name in names:
        before = _Receiver.requests
        short = instructions(name, args.short, args.connections, log)
        long = instructions(name, args.long, args.connections, log)
        per_request[name] = (long - short) / (args.long - args.short)
        exports[name] = _Receiver.requests - before
        print(f"{name:<26} {per_request[name]:>12,.0f} instructions/request", flush=True)
    ratios: dict[str, dict[str, object]] = {}
    if REFERENCE in per_request:
        for name, cost in per_request.items():
            ratio = per_request[REFERENCE] / cost
            ratios[name] = {"ratio": round(ratio, 3)}
            if name in TARGETS:
                ratios[name].update(min_ratio=TARGETS[name], met=ratio >= TARGETS[name])
            print(f"{name:<26} {ratio:6.3f}x {REFERENCE}" + (
                f" (target >= {TARGETS[name]}: {'met' if ratio >= TARGETS[name] else 'NOT met'})"
                if name in TARGETS else ""
            ), flush=True)  # fmt: skip
    pairs = {
        f"{a}/{b}": round(per_request[b] / per_request[a], 3)
        for a, b, _ in PAIRS
        if a in per_request and b in per_request
    }
    print(
        json.dumps(
            {
                "benchmark": "http_cost",
                "machine": harness.machine(),
                "instructions_per_request": {k: round(v) for k, v in per_request.items()},
                "ratio_to_starlette": ratios,
                "pairs": pairs,
                "otlp_exports": exports,
                "short": args.short,
                "long": args.long,
                "connections": args.connections,
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
