"""The Redis tests behave on a Redis shared with other work: its data does not slow them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from nativekit.testing import servers

ROOT = Path(__file__).resolve().parents[2]
UNRELATED = 1_000_000
BATCH = 5000
# Redis tests whose fixtures write and clean up many keys (stores, contracts).
SUBSET = [
    "tests/messaging/test_dedup_store.py",
    "tests/saga/test_saga_store_contract.py",
    "tests/saga_commands/test_reply_store.py",
    "tests/shop/test_stores.py",
]


class Unrelated:
    """A million keys of someone else in a Redis database, written and removed by name."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = f"nk-unrelated:{uuid.uuid4().hex[:8]}:"
        self.written = 0

    def _names(self, start: int) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(start, start + BATCH)]

    def populate(self) -> None:
        """Write the keys, 5,000 per MSET."""
        for start in range(0, UNRELATED, BATCH):
            self.client.mset(dict.fromkeys(self._names(start), b"x"))
            self.written = start + BATCH

    def remove(self) -> None:
        """Delete exactly the keys written."""
        for start in range(0, self.written, BATCH):
            self.client.unlink(*self._names(start))
        self.written = 0


@pytest.fixture
def shared_server() -> Iterator[servers.Server]:
    """A Redis for this test alone, standing in for one shared with other work.

    Not the suite's own server: a million keys there would slow other suites that
    still walk the keyspace, and their walks would slow this measurement.
    """
    server = servers.start_redis(reuse=False)
    yield server
    server.stop()


@pytest.fixture
def unrelated(shared_server: servers.Server) -> Iterator[Unrelated]:
    """Unrelated keys for the database of the URL the suite is given; removed afterwards."""
    keys = Unrelated(shared_server.url)
    try:
        yield keys
    finally:
        keys.remove()
        keys.client.close()


def _run_subset(base_url: str, report: Path) -> dict[str, float]:
    """Run SUBSET's Redis tests in a fresh pytest; the time of each (setup to teardown)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATIVEKIT_", "COV_"))}
    env.pop("PYTEST_ADDOPTS", None)
    env[servers.REDIS_ENV] = base_url
    options = ["-q", "-p", "no:cacheprovider", "-m", "redis", "-o", "junit_duration_report=total"]
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", *options, *SUBSET, f"--junitxml={report}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a run walking the million keys per test takes minutes
    )
    assert ran.returncode == 0, ran.stdout[-3000:]
    cases = ET.parse(report).getroot().iter("testcase")
    return {f"{c.get('classname')}::{c.get('name')}": float(c.get("time", 0)) for c in cases}


def _best(runs: list[dict[str, float]]) -> float:
    """Summed time of each test's fastest run: a moment of load on the machine hits one run."""
    assert all(run.keys() == runs[0].keys() for run in runs)
    return sum(min(run[test] for run in runs) for test in runs[0])


@pytest.mark.slow
@pytest.mark.long_check  # about two minutes: make test-long, run by CI after make test
@pytest.mark.redis
@pytest.mark.timeout(600)
def test_a_million_unrelated_keys_slow_the_redis_tests_by_under_10_percent(
    shared_server: servers.Server, unrelated: Unrelated, tmp_path: Path
) -> None:
    """With 1,000,000 other keys in the suite's Redis, its Redis tests take at most 10% longer."""
    empty: list[dict[str, float]] = []
    full: list[dict[str, float]] = []
    walk = 0.0
    for n in range(2):  # interleaved, so a change of the machine's load hits both sides
        empty.append(_run_subset(shared_server.url, tmp_path / f"empty-{n}.xml"))
        unrelated.populate()
        assert unrelated.client.dbsize() >= UNRELATED
        full.append(_run_subset(shared_server.url, tmp_path / f"full-{n}.xml"))
        started = time.perf_counter()
        assert list(unrelated.client.scan_iter(match="no-such-key:*", count=1000)) == []
        walk = max(walk, time.perf_counter() - started)
        unrelated.remove()
    baseline, loaded, tests = _best(empty), _best(full), len(empty[0])
    # the measurement would see one walk of the keyspace per test if fixtures still walked it
    assert walk * tests > 0.10 * baseline, (walk, tests, baseline)
    assert loaded <= 1.10 * baseline, (
        f"{tests} Redis tests took {loaded:.2f}s with {UNRELATED:,} unrelated keys, "
        f"{baseline:.2f}s without (one SCAN of the keyspace: {walk:.2f}s)"
    )
