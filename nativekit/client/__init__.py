"""Calling other services over HTTP: ``svc.http_client(base_url)``.

Pooled connections, per-call timeouts, retries with backoff for requests that
are safe to repeat, a circuit breaker per host, the trace context sent along,
``http_client_requests_total`` and a duration histogram, and one error,
:class:`PeerError`, when no response came back. See docs/http-client.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nativekit.client._breaker import Breaker
from nativekit.client._errors import CircuitOpen, PeerError
from nativekit.client._policy import RetryPolicy

if TYPE_CHECKING:
    from nativekit.client._aiohttp import AiohttpTransport
    from nativekit.client._client import HTTPClient

__all__ = ["AiohttpTransport", "Breaker", "CircuitOpen", "HTTPClient", "PeerError", "RetryPolicy"]


def __getattr__(name: str) -> Any:
    if name == "HTTPClient":  # loads httpx: only when a client is made
        from nativekit.client._client import HTTPClient

        return HTTPClient
    if name == "AiohttpTransport":
        from nativekit.client._aiohttp import AiohttpTransport

        return AiohttpTransport
    raise AttributeError(f"module 'nativekit.client' has no attribute {name!r}")
