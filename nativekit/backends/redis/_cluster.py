"""The Redis Cluster client (redis-py's asyncio ``RedisCluster``) behind ``redis+cluster://``.

Every store keeps the keys of one Lua script or ``MULTI`` under one hash tag,
so each runs on one slot; pipelines without a transaction may span slots (the
cluster client splits them per node). Near-cache invalidations use sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``), which stays on the channel's shard instead
of being broadcast over the whole cluster bus.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from nativekit.settings import Settings, parse_cluster_url

__all__ = ["create_cluster", "is_cluster", "pool_size"]


def is_cluster(client: Any) -> bool:
    """True when ``client`` is a Redis Cluster client."""
    return isinstance(client, RedisCluster)


def pool_size(client: Any) -> int:
    """Connections a caller may use at once: the pool's size, per node on a cluster."""
    pool = getattr(client, "connection_pool", None)
    size = getattr(pool, "max_connections", None) or getattr(client, "max_connections", None)
    return int(size or 64)


def create_cluster(settings: Settings, options: dict[str, Any]) -> aioredis.Redis:
    """A cluster client from the nodes of ``redis+cluster://`` with the shared ``options``
    (timeouts, password, TLS files); its pool holds ``max_connections`` per node."""
    parsed = parse_cluster_url(settings.redis.url)
    options = {k: v for k, v in options.items() if k != "maint_notifications_config"}
    if parsed.username:
        options["username"] = parsed.username
    if parsed.password is not None and "password" not in options:
        options["password"] = parsed.password
    if parsed.tls:
        options["ssl"] = True
        options.setdefault("ssl_cert_reqs", "required")
        for name, value in (
            ("ssl_ca_certs", settings.redis.tls_ca_file),
            ("ssl_certfile", settings.redis.tls_cert_file),
            ("ssl_keyfile", settings.redis.tls_key_file),
        ):
            if value:
                options[name] = str(value)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        # a killed master's slots move to its replica within a few node timeouts:
        # a command keeps asking the refreshed layout for that long, not only 3 times
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
        **options,
    )
    # RedisCluster has the command API of Redis (what the stores call) but is no
    # subclass of it; the stores take either.
    return client  # type: ignore[return-value]
