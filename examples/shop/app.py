"""The whole shop in one process: ``uvicorn examples.shop.app:app`` (memory backends
by default; set NATIVEKIT_REDIS_URL / NATIVEKIT_KAFKA_URL for real ones)."""

from __future__ import annotations

import nativekit
from examples.shop import inventory, orders, payments

app = nativekit.combine(orders.svc, payments.svc, inventory.svc)
