"""HTTP overhead: one JSON endpoint under raw ASGI, Starlette, FastAPI, peers and nativekit.

Usage::

    python benchmarks/http_overhead.py [--rounds 3] [--duration 10] [--apps a,b,...]

Each app runs alone under one uvicorn worker (uvloop, httptools) on 127.0.0.1;
``wrk`` loads ``GET /items/{id}`` with 64 connections. Runs are interleaved
(every app once per round, the order rotating between rounds) and each figure
is the median over the rounds. On a machine with two or more CPUs the server
is pinned to one CPU and wrk to another, so they do not fight for a core.

The last line of output is one JSON object with the figures and their ratios to
bare Starlette. Needs ``wrk`` (Debian/Ubuntu: ``apt-get install -y wrk``) and the
``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.apps.http_apps import APPS, EXTRA_APPS, HEADERS  # noqa: E402

ALL_APPS = {**APPS, **EXTRA_APPS}

REFERENCE = "starlette"
HOST = "127.0.0.1"
#: issue 21's "must reach" (ratio of req/s to bare Starlette in the same run)
TARGETS = {
    "nativekit-metrics": 0.90,
    "nativekit-full": 0.70,
    "nativekit-full-sampled": 0.70,
    "nativekit-full-exporting": 0.45,
}
#: Targets relative to another app of the run: (app, reference, minimum req/s ratio).
PAIRS = [("nativekit-jwt", "nativekit-metrics", 0.8)]
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Run:
    """One wrk run against one app."""

    rps: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us: float | None = None  # server CPU time per request, steadier than req/s on a busy box


def parse_wrk(output: str) -> Run:
    """Requests/sec, p99 latency and error counts from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if rps is None or p99 is None or total is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Run(
        rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)],
        requests=int(total.group(1)),
        errors=errors,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pin(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, wrk CPU), or Nones when there are not two CPUs to split."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) < 2:
        return None, None
    return available[0], available[1]


@dataclass
class Server:
    """A running app: its URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux), else None."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serve(
    name: str, port: int, cpu: int | None, log: Path, headers: dict[str, str]
) -> Iterator[Server]:
    """Run app ``name`` under uvicorn on ``port``; yield it once it answers."""
    factory = ALL_APPS[name].__name__
    command = [
        *_pin(cpu),
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"benchmarks.apps.http_apps:{factory}",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # stdout (nativekit's JSON access log) is discarded; stderr is kept for diagnosis.
    with log.open("ab") as err:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    url = f"http://{HOST}:{port}/items/42"
    try:
        _wait_until_up(process, url, name, log, headers)
        yield Server(url, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_until_up(
    process: subprocess.Popen[bytes], url: str, name: str, log: Path, headers: dict[str, str]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=1) as response:
                body = json.loads(response.read())
                if response.status == 200 and body.get("id") == 42:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within 30 s; see {log}")


def wrk(
    wrk_bin: str,
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    cpu: int | None,
    headers: dict[str, str],
) -> Run:
    """One bounded wrk run against ``url``."""
    duration = max(1, round(seconds))
    command = [
        *_pin(cpu),
        wrk_bin,
        *[arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")],
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 30, check=True
    )
    return parse_wrk(done.stdout)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver that accepts every export and discards it."""

    requests = 0
    received = 0

    def do_POST(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        self.rfile.read(size)
        type(self).requests += 1
        type(self).received += size
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


def start_receiver() -> str:
    """Start the discarding OTLP receiver in a thread; its traces endpoint URL."""
    server = http.server.ThreadingHTTPServer((HOST, 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True, name="otlp").start()
    return f"http://{HOST}:{server.server_address[1]}/v1/traces"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--apps", default=",".join(APPS), help=f"comma-separated; also: {', '.join(EXTRA_APPS)}"
    )
    parser.add_argument("--wrk", default="wrk", help="the wrk binary")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and wrk")
    args = parser.parse_args(argv)

    wrk_bin = shutil.which(args.wrk)
    if wrk_bin is None:
        print(
            f"error: {args.wrk!r} is not installed. This benchmark drives the load with wrk: "
            "install it (Debian/Ubuntu: apt-get install -y wrk; macOS: brew install wrk).",
            file=sys.stderr,
        )
        return 2
    names = [n.strip() for n in args.apps.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_APPS]
    if unknown or not names:
        parser.error(f"unknown apps {unknown}; choose from {', '.join(ALL_APPS)}")
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds must be >= 1 and --duration > 0")

    server_cpu, wrk_cpu = (None, None) if args.no_pin else _cpus()
    if any(n.startswith("nativekit-full-") for n in names):
        # the receiver (a thread of this process) shares wrk's CPU, not the server's
        if wrk_cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {wrk_cpu})
        os.environ["BENCH_OTLP_ENDPOINT"] = start_receiver()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "nativekit-http-overhead.log"
    log.write_bytes(b"")
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for round_no in range(args.rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            headers = HEADERS[name]() if name in HEADERS else {}
            with serve(name, free_port(), server_cpu, log, headers) as server:
                load = {
                    "connections": args.connections,
                    "threads": args.threads,
                    "cpu": wrk_cpu,
                    "headers": headers,
                }
                if args.warmup > 0:
                    wrk(wrk_bin, server.url, seconds=args.warmup, **load)
                cpu_before = server.cpu_seconds()
                run = wrk(wrk_bin, server.url, seconds=args.duration, **load)
                cpu_after = server.cpu_seconds()
            if cpu_before is not None and cpu_after is not None and run.requests:
                run.cpu_us = (cpu_after - cpu_before) / run.requests * 1e6
            runs[name].append(run)
            if name.startswith("nativekit-full-"):
                print(
                    f"  OTLP receiver so far: {_Receiver.requests} exports, "
                    f"{_Receiver.received:,} bytes",
                    flush=True,
                )
            cpu_us = f"{run.cpu_us:6.1f}" if run.cpu_us is not None else "     -"
            print(
                f"round {round_no + 1}/{args.rounds} {name:<22} {run.rps:>10.0f} req/s "
                f"p99 {run.p99_ms:7.2f} ms  cpu {cpu_us} us/req  errors {run.errors}",
                flush=True,
            )
    report(names, runs, args)
    return 0


def report(names: list[str], runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    """Print the table and the JSON line."""
    median = {n: statistics.median(r.rps for r in runs[n]) for n in names}
    p99 = {n: statistics.median(r.p99_ms for r in runs[n]) for n in names}
    cpu = {
        n: statistics.median(c) if (c := [r.cpu_us for r in runs[n] if r.cpu_us]) else None
        for n in names
    }
    cpu_ref = cpu.get(REFERENCE)
    reference = median.get(REFERENCE)
    print()
    print(
        f"{'app':<22} {'req/s':>10} {'p99 ms':>8} {'x starlette':>12} "
        f"{'cpu us/req':>11} {'cpu x':>6} {'errors':>7}"
    )
    results: dict[str, dict[str, object]] = {}
    for name in names:
        ratio = median[name] / reference if reference else None
        errors = sum(r.errors for r in runs[name])
        shown = f"{ratio:.2f}" if ratio is not None else "-"
        cpu_us = cpu[name]
        # CPU per request relative to Starlette, inverted so that, like req/s, higher is better
        cpu_ratio = cpu_ref / cpu_us if cpu_ref and cpu_us else None
        print(
            f"{name:<22} {median[name]:>10.0f} {p99[name]:>8.2f} {shown:>12} "
            f"{_fmt(cpu_us, 1):>11} {_fmt(cpu_ratio, 2):>6} {errors:>7}"
        )
        results[name] = {
            "rps": round(median[name], 1),
            "p99_ms": round(p99[name], 3),
            "ratio_to_starlette": round(ratio, 3) if ratio is not None else None,
            "rps_runs": [round(r.rps, 1) for r in runs[name]],
            "cpu_us_per_request": round(cpu_us, 2) if cpu_us is not None else None,
            "cpu_ratio_to_starlette": round(cpu_ratio, 3) if cpu_ratio is not None else None,
            "errors": errors,
        }
    targets = {
        name: {
            "min_ratio": minimum,
            "ratio": results[name]["ratio_to_starlette"],
            "met": (
                results[name]["ratio_to_starlette"] is not None
                and float(str(results[name]["ratio_to_starlette"])) >= minimum
            ),
        }
        for name, minimum in TARGETS.items()
        if name in results
    }
    for name, reference_name, minimum in PAIRS:
        if name in results and reference_name in results and median[reference_name]:
            ratio = median[name] / median[reference_name]
            targets[f"{name}/{reference_name}"] = {
                "min_ratio": minimum,
                "ratio": round(ratio, 3),
                "met": ratio >= minimum,
            }
    print()
    rows = [
        harness.row(
            f"{name} (req/s)",
            unit="req/s",
            figure=float(str(results[name]["rps"])),
            peer="Starlette",
            peer_figure=reference or 0.0,
            target=minimum,
        )
        for name, minimum in TARGETS.items()
        if name in results and reference
    ]
    details = {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "reference": REFERENCE,
        "otlp_exports": _Receiver.requests,
        "otlp_bytes": _Receiver.received,
        "results": results,
        "targets": targets,
    }
    if rows:
        first = rows[0]
        harness.headline(
            "http_overhead",
            what=first["what"],
            unit="req/s",
            figure=first["figure"],
            peer="Starlette",
            peer_figure=first["peer_figure"],
            target=first["target"],
            rows=rows[1:],
            details=details,
        )
    else:
        print(json.dumps({"benchmark": "http_overhead", **details}, separators=(",", ":")))


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
