"""The whole shop in one process: ``uvicorn examples.shop.app:app`` (memory backends
by default; set NATIVEKIT_REDIS_URL / NATIVEKIT_KAFKA_URL for real ones)."""

from __future__ import annotations

import nativekit
from examples.shop import inventory, orders, payments

# Services start in this order and stop in reverse: the participants are up before
# orders' saga recovery may call them, and still up while orders drains.
app = nativekit.combine(inventory.svc, payments.svc, orders.svc)
