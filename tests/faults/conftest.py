"""The fault suite's shop: started once per module, stopped whatever happens."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.shop import FaultShop

#: ``NATIVEKIT_TEST_FAULTS=long`` (``make test-faults``): more load for longer around each fault.
LONG = os.environ.get("NATIVEKIT_TEST_FAULTS", "quick") == "long"


@pytest.fixture(scope="module")
def fault_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultShop]:
    """Redis, Tansu, the proxies and the three services of one fault run."""
    shop = FaultShop(tmp_path_factory.mktemp("faults"))
    try:
        shop.start_all()
        yield shop
    finally:
        shop.close()
