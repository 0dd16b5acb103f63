"""The console page's example runs as documented: signed in with the token file's token,
the saga started through the API is on the console."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from nativekit.testing import serve
from tests.console.console_support import log_in

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "console.py"


async def test_the_documented_console_shows_a_started_saga(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "operator-token"
    token.write_text("documented-operator-token-0123456789\n")
    monkeypatch.setenv("NATIVEKIT_CONSOLE_ENABLED", "true")
    monkeypatch.setenv("NATIVEKIT_AUTH_TOKEN_FILE", str(token))
    spec = importlib.util.spec_from_file_location("docs_console_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    async with serve(module.svc) as client:
        placed = await client.post("/orders", json={"order_id": "o-42", "total": 12.5})
        assert placed.status_code == 202
        assert (await client.get("/_nativekit/console/sagas")).status_code == 401
        assert (await log_in(client, "documented-operator-token-0123456789")).status_code == 303
        listing = await client.get("/_nativekit/console/sagas")
        saga = await client.get("/_nativekit/console/sagas/o-42")
    assert listing.status_code == 200 and "o-42" in listing.text
    assert "reserve_stock" in saga.text and "checkout" in saga.text
