"""A rolling restart of a shop service: SIGTERM (it drains), then a new process.

Each test places orders under load through the shop's public HTTP API, applies the fault
mid-load and then checks every invariant (tests/faults/run.py, docs/reliability.md).
A module starts a shop of its own, so the modules run in parallel under pytest-xdist.
"""

from __future__ import annotations

import pytest

from tests.faults.run import MARKS, fault_test
from tests.faults.shop import FaultShop

pytestmark = MARKS


@pytest.mark.parametrize("name", ["rolling-orders", "rolling-payments", "rolling-inventory"])
async def test_fault(fault_shop: FaultShop, name: str) -> None:
    """Rolled with SIGTERM mid-load: a clean stop, no 5xx but the draining 503, invariants hold."""
    await fault_test(fault_shop, name)
