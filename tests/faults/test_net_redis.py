"""Network trouble on one service's Redis link: latency, dropped connections, a blackhole.

Each test places orders under load through the shop's public HTTP API, applies the fault
mid-load and then checks every invariant (tests/faults/run.py, docs/reliability.md).
A module starts a shop of its own, so the modules run in parallel under pytest-xdist.
"""

from __future__ import annotations

import pytest

from tests.faults.run import MARKS, fault_test
from tests.faults.shop import FaultShop

pytestmark = MARKS


@pytest.mark.parametrize("name", ["net-redis-orders", "net-redis-payments", "net-redis-inventory"])
async def test_fault(fault_shop: FaultShop, name: str) -> None:
    """Trouble on one service's Redis link: every order final within 60 s, invariants hold."""
    await fault_test(fault_shop, name)
