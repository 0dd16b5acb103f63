"""Inventory on PostgreSQL drops its cached stock after the sale commits: a read between the
consumer handler and its commit (which still sees the stock as it was) must not keep that
stock cached. Dropped inside the handler, before the commit, that read cached it again for
the 30 s TTL: check_invariants of the shop on PostgreSQL then saw an applied sale as still
reserved (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # a subprocess: make test starts it early

WORKER = Path(__file__).with_name("inventory_cache_worker.py")


def test_a_read_before_the_sale_commits_is_not_cached_past_it(postgres_url: str) -> None:
    """The read during the transaction sees the reservation; the one after, the sale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATIVEKIT_", "SHOP_"))}
    env.update(SHOP_DATABASE_URL=postgres_url, SHOP_SEED_PRODUCTS="0",
               PYTHONPATH=str(Path(__file__).parents[2]))  # fmt: skip
    done = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    reads = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert reads == {"during": 1, "after": 0}
