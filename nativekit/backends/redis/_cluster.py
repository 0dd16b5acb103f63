"""The Redis Cluster client (redis-py's asyncio ``RedisCluster``) behind ``redis+cluster://``.

Every store keeps the keys of one Lua script or ``MULTI`` under one hash tag,
so each runs on one slot; pipelines without a transaction may span slots (the
cluster client splits them per node). Near-cache invalidations use sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``), which stays on the channel's shard instead
of being broadcast over the whole cluster bus.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from nativekit.settings import Settings, parse_cluster_url

__all__ = ["create_cluster", "is_cluster", "pool_size"]


async def _whole(call: Any, what: str) -> Any:
    """Run ``call`` to its end even if the caller is cancelled meanwhile.

    redis-py 8.1's cluster client hands a connection whose command was cancelled
    mid-flight back to its free list while the cancellation still tears it down; the
    next command on it fails with ``AttributeError: 'NoneType' object has no attribute
    'writelines'`` (seen when a lease-renewal task was cancelled as its handler ended).
    A shielded command finishes and returns its connection intact; the caller still
    sees its own cancellation at once. A driver fault that slips through is reported
    as a connection error, which the stores translate and their callers retry.
    """
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieve)  # a cancelled caller no longer awaits its outcome
    try:
        return await asyncio.shield(task)
    except AttributeError as exc:
        raise redis.exceptions.ConnectionError(f"{what} lost its connection: {exc}") from exc


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class ShieldedPipeline(ClusterPipeline):
    """A cluster pipeline whose execution is not cut short by a cancelled caller."""

    def __init__(self, client: RedisCluster, transaction: Any = None) -> None:
        super().__init__(client, transaction)
        self.owner = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        """Send the queued commands (see :func:`_whole`), the layout known first."""
        return await _whole(self._execute(raise_on_error, allow_redirections), "pipeline")

    async def _execute(self, raise_on_error: bool, allow_redirections: bool) -> Any:
        await self.owner.initialize()
        return await super().execute(raise_on_error, allow_redirections)


class ShieldedCluster(RedisCluster):
    """redis-py's asyncio cluster client whose commands run to their end (see
    :func:`_whole`) and wait for the cluster's layout before they start.

    redis-py 8.1 learns the layout lazily, inside the first command, after that command
    has already looked up its command policy over a startup node's connection; a burst
    of first calls then opens connections that the layout discovery closes under them
    (``'NoneType' object has no attribute 'writelines'`` during the connection's
    handshake). ``initialize()`` (public, a no-op once done, serialised by the client's
    own lock) before each command makes every caller of a burst wait for the one
    discovery instead, also when a failover makes the client discover the layout anew.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Send one command to the node serving its slot, the layout known first."""
        return await _whole(self._execute(*args, **kwargs), str(args[0]))

    async def _execute(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        """A pipeline without transaction (commands of many slots, grouped per node)."""
        if shard_hint:
            raise redis.exceptions.RedisClusterException("shard_hint is not for a cluster")
        return ShieldedPipeline(self, transaction)  # type: ignore[abstract]


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
    client = ShieldedCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        # a killed master's slots move to its replica within a few node timeouts:
        # a command keeps asking the refreshed layout for that long, not only 3 times
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
        **options,
    )
    # RedisCluster has the command API of Redis (what the stores call) but is no
    # subclass of it; the stores take either.
    return client  # type: ignore[return-value]
