"""The deploy contract's module paths hold the named services (no server needed)."""

from __future__ import annotations

import importlib

import pytest

import nativekit
from examples.shop import app as shop_app

DEPLOYED = {
    "orders": "examples.shop.orders:app",
    "payments": "examples.shop.payments:app",
    "inventory": "examples.shop.inventory:app",
}


def test_deploy_module_paths_name_services() -> None:
    """Each module path of the deploy contract holds an ASGI `app` of the named service."""
    for service, path in DEPLOYED.items():
        module_name, _, attribute = path.partition(":")
        module = importlib.import_module(module_name)
        assert getattr(module, attribute) is module.svc.app
        assert module.svc.name == service
    assert isinstance(shop_app.app, nativekit.ServiceGroup)


def test_orders_deployment_reaches_payments_and_inventory_by_their_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In Kubernetes, orders' SHOP_*_URL variables name the other Services and their ports."""
    from examples.shop.config import ShopConfig
    from tests.shop.test_deploy import env_of, get

    env = env_of("orders")
    for service in ("payments", "inventory"):
        port = get("Service", service)["spec"]["ports"][0]["port"]
        assert env[f"SHOP_{service.upper()}_URL"] == f"http://{service}:{port}"
    for name in ("SHOP_PAYMENTS_URL", "SHOP_INVENTORY_URL"):
        monkeypatch.setenv(name, env[name])
    config = ShopConfig()  # the names the code reads
    assert (config.payments_url, config.inventory_url) == (
        env["SHOP_PAYMENTS_URL"],
        env["SHOP_INVENTORY_URL"],
    )
