"""The Caching page's example runs as documented."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from nativekit.testing import serve

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "caching.py"


def load_example() -> ModuleType:
    """Import docs/examples/caching.py afresh."""
    spec = importlib.util.spec_from_file_location("docs_caching_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_catalog_caches_reads_and_invalidates_on_writes() -> None:
    """Reads hit the cache, a PUT invalidates one product, reprice drops the tag."""
    example = load_example()
    async with serve(example.svc) as client:
        for _ in range(3):
            response = await client.get("/products/p-1")
            assert response.json() == {"sku": "p-1", "name": "Kettle", "price": 39.0}
        assert example.LOADS == ["p-1"]

        assert (await client.get("/products/nope")).status_code == 404
        assert (await client.get("/products/nope")).status_code == 404
        assert example.LOADS == ["p-1", "nope"]  # None is cached too

        new = {"sku": "p-1", "name": "Kettle", "price": 45.0}
        assert (await client.put("/products/p-1", json=new)).status_code == 200
        assert (await client.get("/products/p-1")).json()["price"] == 45.0

        assert (await client.post("/products/reprice?percent=10")).json() == {"dropped": 2}
        assert (await client.get("/products/p-1")).json()["price"] == pytest.approx(49.5)
        ready = (await client.get("/readyz")).json()
        assert ready["checks"]["cache"][0]["status"] == "pass"
