"""The outbound HTTP clients of one service: made on demand, closed on shutdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from nativekit._context import ServiceContext
from nativekit._lifecycle import Phase

if TYPE_CHECKING:
    import httpx

    from nativekit.client._client import HTTPClient
    from nativekit.client._metrics import ClientMetrics


class ClientOptions(TypedDict, total=False):
    """Options of ``svc.http_client(base_url, ...)``; see :class:`~nativekit.client.HTTPClient`."""

    peer: str
    timeout: float
    retries: int
    backoff: float
    backoff_max: float
    breaker_failures: int
    breaker_reset_seconds: float
    max_connections: int
    keepalive_seconds: float
    headers: Mapping[str, str]
    transport: httpx.AsyncBaseTransport


class HTTPClients:
    """Creates a service's clients with its metrics and tracing; closes them when it stops.

    Their stop is registered in the BACKENDS phase, so clients close after the
    consumers, sagas and hooks that call them have stopped.
    """

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.clients: list[HTTPClient] = []
        self._metrics: ClientMetrics | None = None
        context.lifecycle.add("http-clients", stop=self.aclose, phase=Phase.BACKENDS)

    def create(self, base_url: str, options: ClientOptions) -> HTTPClient:
        """A new :class:`HTTPClient` for ``base_url`` (see its arguments)."""
        from nativekit.client._client import HTTPClient
        from nativekit.client._metrics import ClientMetrics
        from nativekit.client._policy import RetryPolicy

        if self._metrics is None:
            self._metrics = ClientMetrics(self.context.name, self.context.metrics.registry)
        rest: dict[str, Any] = dict(options)
        retry = RetryPolicy(
            **{k: rest.pop(k) for k in ("retries", "backoff", "backoff_max") if k in rest}
        )
        rest.setdefault("tracing", self.context.settings.telemetry.tracing_enabled)
        client = HTTPClient(base_url, metrics=self._metrics, retry=retry, **rest)
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        """Close every client's connections (they reopen if the service starts again)."""
        for client in self.clients:
            await client.aclose()
