"""How orders reaches inventory and payments: in process (combined app) or over HTTP.

``SHOP_INVENTORY_URL`` / ``SHOP_PAYMENTS_URL`` select HTTP; unset, orders calls the
other services' domain objects directly (they run in the same process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import nativekit
from examples.shop.models import Payment, PaymentRequest, Product
from nativekit.client import PeerError

if TYPE_CHECKING:
    import httpx

    from nativekit.client import HTTPClient

__all__ = ["PeerError"]  # re-exported: what orders catches when a peer cannot answer


class PaymentDeclined(Exception):
    """Payments refused the charge; retrying will not help."""


class InventoryClient(Protocol):
    """What orders asks of inventory."""

    async def product(self, sku: str) -> Product | None: ...
    async def aclose(self) -> None: ...


class PaymentsClient(Protocol):
    """What orders asks of payments."""

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment: ...
    async def refund(self, payment_id: str, order_id: str) -> Payment: ...
    async def aclose(self) -> None: ...


def _in_process(service: Any, variable: str) -> None:
    """Refuse to call a service that this process does not run (a missing URL setting)."""
    if not service.health.started:
        raise nativekit.ConfigError(
            f"{service.name} does not run in this process; set {variable} to its base URL "
            "(or serve examples.shop.app, which runs all three services)."
        )


class LocalInventory:
    """Inventory in this process (``examples.shop.app``)."""

    async def product(self, sku: str) -> Product | None:
        from examples.shop.inventory import load_product, svc

        _in_process(svc, "SHOP_INVENTORY_URL")
        return await load_product(sku)

    async def aclose(self) -> None:
        pass


class LocalPayments:
    """Payments in this process (``examples.shop.app``)."""

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        from examples.shop.payments import payments, svc

        _in_process(svc, "SHOP_PAYMENTS_URL")
        payment = await payments.charge(idempotency_key, request)
        if payment.status != "CAPTURED":
            raise PaymentDeclined(payment.reason or f"payment {payment.status.lower()}")
        return payment

    async def refund(self, payment_id: str, order_id: str) -> Payment:
        from examples.shop.payments import payments, svc

        _in_process(svc, "SHOP_PAYMENTS_URL")
        return await payments.refund(payment_id, order_id)

    async def aclose(self) -> None:
        pass


def http_clients(service: nativekit.Service, inventory_url: str, payments_url: str,
                 timeout: float) -> tuple[HttpInventory | None, HttpPayments | None]:  # fmt: skip
    """The HTTP clients of the configured peers (None where the URL is empty).

    ``svc.http_client`` pools connections, sends the trace context, counts
    ``http_client_requests_total{peer=...}``, opens a circuit breaker on a failing
    host and closes with the service. aiohttp moves the bytes (the 'shop' extra):
    httpx's own pool is slow at the shop's concurrency. Payments calls are not
    retried by the client: the saga step that makes them owns the retries.
    """
    from nativekit.client import AiohttpTransport

    inventory = payments = None
    if inventory_url:
        inventory = HttpInventory(service.http_client(
            inventory_url, peer="inventory", timeout=timeout,
            transport=AiohttpTransport(limit=200), backoff=0.05,
        ))  # fmt: skip
    if payments_url:
        payments = HttpPayments(service.http_client(
            payments_url, peer="payments", timeout=timeout,
            transport=AiohttpTransport(limit=200), retries=0,
        ))  # fmt: skip
    return inventory, payments


def _ok(response: httpx.Response, client: HTTPClient) -> Any:
    """The JSON body of a 2xx answer; any other status is a PeerError (a step retries it)."""
    body = response.json() if response.content else None
    if response.status_code >= 300:
        detail = body.get("detail") if isinstance(body, dict) else body
        request = response.request
        raise PeerError(
            f"{client.peer} answered {response.status_code}: {detail}",
            peer=client.peer, method=request.method, url=str(request.url),
        )  # fmt: skip
    return body


class HttpInventory:
    """Inventory at ``SHOP_INVENTORY_URL``."""

    def __init__(self, client: HTTPClient) -> None:
        self.client = client

    async def product(self, sku: str) -> Product | None:
        # quoted: a SKU is user input ('/' or a newline must stay inside the path segment)
        response = await self.client.get(f"/inventory/products/{quote(sku, safe='')}")
        if response.status_code == 404:
            return None
        return Product.model_validate(_ok(response, self.client))

    async def aclose(self) -> None:
        """Nothing to do: the service closes its clients when it stops."""


class HttpPayments:
    """Payments at ``SHOP_PAYMENTS_URL``; the saga step's key is the Idempotency-Key."""

    def __init__(self, client: HTTPClient) -> None:
        self.client = client

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        response = await self.client.post(
            "/payments", json=request.model_dump(), idempotency_key=idempotency_key
        )
        if response.status_code == 402:
            raise PaymentDeclined(response.json().get("detail"))
        return Payment.model_validate(_ok(response, self.client))  # 503: the step retries

    async def refund(self, payment_id: str, order_id: str) -> Payment:
        response = await self.client.post(
            f"/payments/{quote(payment_id, safe='')}/refund", params={"order_id": order_id}
        )
        return Payment.model_validate(_ok(response, self.client))

    async def aclose(self) -> None:
        """Nothing to do: the service closes its clients when it stops."""
