"""The docs page in a real headless Chromium: Swagger UI from the package, no CDN."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Page
from tests.served import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The whole shop (memory backends) in a uvicorn process."""
    log = tmp_path_factory.mktemp("docs-page") / "shop.log"
    with serve("examples.shop.app:app", log) as url:
        yield url


def test_the_page_lists_every_operation_without_errors(page: Page, shop_url: str) -> None:
    """/docs renders Swagger UI with each shop operation, loading nothing from elsewhere."""
    outside: list[str] = []
    page.page.on(
        "request", lambda r: None if r.url.startswith(shop_url) else outside.append(r.url)
    )
    page.page.goto(f"{shop_url}/docs")
    page.page.wait_for_selector(".opblock", timeout=30_000)
    listed = {
        (block.locator(".opblock-summary-method").inner_text().strip(),
         block.locator(".opblock-summary-path").inner_text().replace("\u200b", "").strip())
        for block in page.page.locator(".opblock").all()
    }  # fmt: skip
    assert {
        ("GET", "/inventory/products"),
        ("GET", "/inventory/products/{sku}"),
        ("PUT", "/inventory/products/{sku}"),
        ("POST", "/payments"),
        ("GET", "/payments/{payment_id}"),
        ("POST", "/payments/{payment_id}/refund"),
        ("POST", "/orders"),
        ("GET", "/orders/{order_id}"),
    } <= listed
    assert page.errors == []
    assert outside == []


def test_try_it_out_shows_a_product(page: Page, shop_url: str) -> None:
    """'Try it out' of GET /inventory/products/{sku} calls the service and shows the product."""
    page.page.goto(f"{shop_url}/docs")
    operation = page.page.locator("#operations-inventory-get_product")
    operation.wait_for(timeout=30_000)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[placeholder='sku']").fill("SKU-002")
    operation.get_by_role("button", name="Execute").click()
    body = operation.locator(".live-responses-table .response .microlight").first
    body.wait_for(timeout=30_000)
    shown = body.inner_text()
    assert '"sku": "SKU-002"' in shown
    assert re.search(r'"name": "Teapot"', shown), shown
    status = operation.locator(".live-responses-table .response .response-col_status").first
    assert status.inner_text().strip() == "200"
    assert page.errors == []


def test_the_page_ships_its_licence() -> None:
    """The Swagger UI files in the package come with their licence and origin."""
    import nativekit._http.openapi as package

    assets = Path(package.__file__).with_name("assets")
    assert "Apache License" in (assets / "LICENSE").read_text()
    assert "swagger-ui-dist" in (assets / "SOURCE.txt").read_text()
