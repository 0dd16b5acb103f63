"""The example of docs/postgres.md runs as documented, on a real PostgreSQL."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres
EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "postgres.py"


async def test_docs_example_keeps_only_what_committed_with_the_saga_and_the_consumer(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The good order is recorded, charged once and shipped once (a duplicate event is
    skipped); the declined order's payment insert was rolled back with its failed step,
    and its compensation cancelled it."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    spec = importlib.util.spec_from_file_location("docs_postgres_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = await module.main()
    assert rows == {"o-1": ("o-1", "shipped", 990), "o-2": ("o-2", "cancelled", 0)}
