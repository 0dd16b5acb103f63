"""The deploy contract's module paths hold the named services (no server needed)."""

from __future__ import annotations

import importlib

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
