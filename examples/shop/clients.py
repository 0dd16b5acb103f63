"""How orders reaches inventory and payments: in process (combined app) or over HTTP.

``SHOP_INVENTORY_URL`` / ``SHOP_PAYMENTS_URL`` select HTTP; unset, orders calls the
other services' domain objects directly (they run in the same process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from examples.shop.models import Item, Payment, PaymentRequest, Product, Reservation


class OutOfStock(Exception):
    """Inventory cannot hold the order's lines; retrying will not help."""


class PaymentDeclined(Exception):
    """Payments refused the charge; retrying will not help."""


class InventoryClient(Protocol):
    """What orders asks of inventory."""

    async def product(self, sku: str) -> Product | None: ...
    async def reserve(self, order_id: str, items: Sequence[Item]) -> Reservation: ...
    async def release(self, order_id: str) -> None: ...
    async def aclose(self) -> None: ...


class PaymentsClient(Protocol):
    """What orders asks of payments."""

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment: ...
    async def refund(self, payment_id: str, order_id: str) -> Payment: ...
    async def aclose(self) -> None: ...


class LocalInventory:
    """Inventory in this process (``examples.shop.app``)."""

    async def product(self, sku: str) -> Product | None:
        from examples.shop.inventory import load_product

        return await load_product(sku)

    async def reserve(self, order_id: str, items: Sequence[Item]) -> Reservation:
        from examples.shop.inventory import stock

        reservation = await stock.reserve(order_id, items)
        if reservation.state != "RESERVED":
            raise OutOfStock(reservation.reason)
        return reservation

    async def release(self, order_id: str) -> None:
        from examples.shop.inventory import stock

        await stock.release(order_id)

    async def aclose(self) -> None:
        pass


class LocalPayments:
    """Payments in this process (``examples.shop.app``)."""

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        from examples.shop.payments import payments

        payment = await payments.charge(idempotency_key, request)
        if payment.status != "CAPTURED":
            raise PaymentDeclined(payment.reason or f"payment {payment.status.lower()}")
        return payment

    async def refund(self, payment_id: str, order_id: str) -> Payment:
        from examples.shop.payments import payments

        return await payments.refund(payment_id, order_id)

    async def aclose(self) -> None:
        pass


class _Http:
    """A JSON client that carries the current trace context to the other service."""

    def __init__(self, base_url: str, timeout: float) -> None:
        import httpx  # the 'shop' extra; only separate deployments need it

        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        )

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> Any:  # fmt: skip
        from opentelemetry import propagate

        carrier = dict(headers or {})
        propagate.inject(carrier)
        return await self.http.request(method, path, headers=carrier, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()


class HttpInventory(_Http):
    """Inventory at ``SHOP_INVENTORY_URL``."""

    async def product(self, sku: str) -> Product | None:
        response = await self.call("GET", f"/inventory/products/{sku}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return Product.model_validate_json(response.content)

    async def reserve(self, order_id: str, items: Sequence[Item]) -> Reservation:
        body = {"order_id": order_id, "items": [i.model_dump() for i in items]}
        response = await self.call("POST", "/inventory/reservations", json=body)
        if response.status_code == 409:
            raise OutOfStock(response.json().get("detail"))
        response.raise_for_status()  # anything else is worth a retry
        return Reservation.model_validate_json(response.content)

    async def release(self, order_id: str) -> None:
        response = await self.call("POST", f"/inventory/reservations/{order_id}/release")
        response.raise_for_status()


class HttpPayments(_Http):
    """Payments at ``SHOP_PAYMENTS_URL``; the saga step's key is the Idempotency-Key."""

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        response = await self.call(
            "POST", "/payments", json=request.model_dump(),
            headers={"Idempotency-Key": idempotency_key},
        )  # fmt: skip
        if response.status_code == 402:
            raise PaymentDeclined(response.json().get("detail"))
        response.raise_for_status()  # 503 and friends: the step retries with the same key
        return Payment.model_validate_json(response.content)

    async def refund(self, payment_id: str, order_id: str) -> Payment:
        response = await self.call(
            "POST", f"/payments/{payment_id}/refund", params={"order_id": order_id}
        )
        response.raise_for_status()
        return Payment.model_validate_json(response.content)
