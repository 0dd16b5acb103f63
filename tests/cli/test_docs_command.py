"""``nativekit docs``: both documents written to files, for a repository or a registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openapi_spec_validator import validate

from nativekit.cli import main
from nativekit.cli._main import cli
from tests.apidocs.test_asyncapi import check


def test_writes_openapi_and_asyncapi(tmp_path: Path) -> None:
    """The shop's two documents land in --out, valid, with every service in them."""
    result = CliRunner().invoke(cli, ["docs", "examples.shop.app:app", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    openapi = json.loads((tmp_path / "openapi.json").read_text())
    asyncapi = json.loads((tmp_path / "asyncapi.json").read_text())
    validate(openapi)
    check(asyncapi)
    assert {"/orders", "/payments", "/inventory/products"} <= set(openapi["paths"])
    assert "orders.place-order.reserve_stock" in asyncapi["operations"]
    assert f"wrote {tmp_path / 'openapi.json'}" in result.output


def test_a_target_that_is_not_a_service_says_what_to_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Naming the Starlette app instead of the service is a usage error saying what to do."""
    assert main(["docs", "examples.shop.inventory:app"]) == 2
    assert "name the service (e.g. 'billing.app:svc')" in capsys.readouterr().err
    assert main(["docs", "examples.shop.nope:svc"]) == 2
    assert "cannot import 'examples.shop.nope'" in capsys.readouterr().err
    assert main(["docs", "no-colon"]) == 2
    assert "is not 'module:attribute'" in capsys.readouterr().err
