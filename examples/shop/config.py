"""Shop settings that are not nativekit's own, read from ``SHOP_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class ShopConfig:
    """Where the other services are and how the shop names its keys and topics.

    ``SHOP_PAYMENTS_URL`` / ``SHOP_INVENTORY_URL``: base URLs of the other
    services. Unset, orders calls them in process (``examples.shop.app``).
    """

    payments_url: str = field(default_factory=lambda: _env("SHOP_PAYMENTS_URL", ""))
    inventory_url: str = field(default_factory=lambda: _env("SHOP_INVENTORY_URL", ""))
    key_prefix: str = field(default_factory=lambda: _env("SHOP_KEY_PREFIX", "shop"))
    #: PostgreSQL of inventory (products, reservations, and nativekit's own tables); unset:
    #: Redis when the service has one, else memory
    database_url: str = field(default_factory=lambda: _env("SHOP_DATABASE_URL", ""))
    topic_prefix: str = field(default_factory=lambda: _env("SHOP_TOPIC_PREFIX", "shop."))
    seed_products: int = field(default_factory=lambda: int(_env("SHOP_SEED_PRODUCTS", "10")))
    seed_stock: int = field(default_factory=lambda: int(_env("SHOP_SEED_STOCK", "100")))
    http_timeout: float = field(default_factory=lambda: float(_env("SHOP_HTTP_TIMEOUT", "5")))
    #: seconds orders reuses a product's catalog entry to price new orders
    quote_ttl: float = field(default_factory=lambda: float(_env("SHOP_QUOTE_TTL", "5")))
    #: orders of at least this total (cents) wait for a fraud review before the charge
    review_threshold: int = field(
        default_factory=lambda: int(_env("SHOP_REVIEW_THRESHOLD", "1000000"))
    )
    #: how long a fraud review may take before the order is cancelled
    review_timeout: float = field(
        default_factory=lambda: float(_env("SHOP_REVIEW_TIMEOUT", str(2 * 86400)))
    )
    #: seconds an order may take from placement to confirmation before it is cancelled
    #: (stock and payment released); longer than the review: a reviewed order can wait
    order_deadline: float = field(
        default_factory=lambda: float(_env("SHOP_ORDER_DEADLINE", str(3 * 86400)))
    )

    def topic(self, name: str) -> str:
        """The Kafka topic of a service's events: ``shop.orders`` by default."""
        return f"{self.topic_prefix}{name}"


config = ShopConfig()
