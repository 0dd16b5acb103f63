"""How orders reaches inventory and payments: in process (combined app) or over HTTP.

``SHOP_INVENTORY_URL`` / ``SHOP_PAYMENTS_URL`` select HTTP; unset, orders calls the
other services' domain objects directly (they run in the same process).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import nativekit
from examples.shop.models import Payment, PaymentRequest, Product


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


class _Http:
    """A JSON client that carries the current trace context to the other service."""

    def __init__(self, base_url: str, timeout: float) -> None:
        import aiohttp  # the 'shop' extra; only separate deployments need it

        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            base_url=base_url,
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=200),
        )

    async def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """Send a request; returns the status and the decoded JSON body (None if empty)."""
        import aiohttp
        from opentelemetry import propagate

        carrier = dict(headers or {})
        propagate.inject(carrier)
        try:
            async with self.session.request(method, path, headers=carrier, **kwargs) as response:
                body = await response.read()
                return response.status, json.loads(body) if body else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"{method} {self.base_url}{path} failed: {exc!r}"
            raise PeerError(message, uncertain=True) from exc

    async def aclose(self) -> None:
        await self.session.close()


class PeerError(Exception):
    """The other service could not be reached or answered with an unexpected status; a saga
    step retries, an HTTP request answers 503.

    ``uncertain``: the peer may have applied the request (no answer, or a 5xx): a saga
    step that fails with it is compensated (nativekit reads the attribute)."""

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


def _ok(status: int, body: Any, what: str) -> Any:
    if status >= 300:
        detail = body.get("detail") if isinstance(body, dict) else body
        raise PeerError(f"{what} answered {status}: {detail}", uncertain=status >= 500)
    return body


class HttpInventory(_Http):
    """Inventory at ``SHOP_INVENTORY_URL``."""

    async def product(self, sku: str) -> Product | None:
        status, body = await self.call("GET", f"/inventory/products/{sku}")
        if status == 404:
            return None
        return Product.model_validate(_ok(status, body, "inventory"))


class HttpPayments(_Http):
    """Payments at ``SHOP_PAYMENTS_URL``; the saga step's key is the Idempotency-Key."""

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        status, body = await self.call(
            "POST",
            "/payments",
            json=request.model_dump(),
            headers={"Idempotency-Key": idempotency_key},
        )
        if status == 402:
            raise PaymentDeclined(body.get("detail"))
        return Payment.model_validate(_ok(status, body, "payments"))  # 503: the step retries

    async def refund(self, payment_id: str, order_id: str) -> Payment:
        status, body = await self.call(
            "POST", f"/payments/{payment_id}/refund", params={"order_id": order_id}
        )
        return Payment.model_validate(_ok(status, body, "payments"))
