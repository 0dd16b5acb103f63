"""An HTTP client for calling other services: pooled, timed out, retried, broken, traced.

Built on httpx. Every call goes through the same steps: the peer host's circuit
breaker is asked first; the request carries the current trace context
(``traceparent``); an attempt that gets no response, or a 429/502/503/504, is
retried with jittered exponential backoff, but only when sending it twice is
safe (an idempotent method or an ``Idempotency-Key``); each attempt is counted
in ``http_client_requests_total`` and timed. No response at all ends as a
:class:`PeerError` naming the peer; any response, even a 500, is returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from nativekit.client._breaker import Breaker
from nativekit.client._errors import CircuitOpen, PeerError
from nativekit.client._metrics import ClientMetrics
from nativekit.client._policy import BREAKER_STATUSES, RETRY_STATUSES, RetryPolicy, may_retry


class HTTPClient:
    """Calls one peer service (``svc.http_client(base_url)`` makes one; it closes with the
    service).

    Args:
        base_url: the peer's base URL; request paths are relative to it.
        peer: the peer's name in metrics, logs and errors (default: its host).
        metrics: where attempts are counted.
        timeout: seconds a call may take (connect, write, each read), unless the call says.
        retry: how often and how patiently calls are retried.
        breaker_failures: consecutive failures that open a host's breaker.
        breaker_reset_seconds: seconds an open breaker waits before a trial call.
        max_connections: pooled connections to the peer.
        keepalive_seconds: seconds an idle pooled connection is reused; keep it below the
            peer server's idle timeout (uvicorn's is 5 s) so a call is never sent on a
            connection the server is closing at that moment.
        headers: headers sent with every call (e.g. a bearer token).
        transport: an httpx transport: ``httpx.MockTransport(handler)`` or
            ``httpx.ASGITransport(app)`` in tests, a real connection pool otherwise.
        tracing: start a client span per attempt (the trace context is sent either way).
    """

    def __init__(
        self,
        base_url: str,
        *,
        peer: str | None = None,
        metrics: ClientMetrics,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 10.0,
        max_connections: int = 100,
        keepalive_seconds: float = 2.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        tracing: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer = peer or urlsplit(base_url).hostname or base_url
        self.metrics = metrics
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.tracing = tracing
        self._breaker_failures = breaker_failures
        self._breaker_reset = breaker_reset_seconds
        self._breakers: dict[str, Breaker] = {}
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_seconds,
        )
        self._headers = dict(headers or {})
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout,
                limits=self._limits,
                headers=self._headers,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def use_transport(self, transport: httpx.AsyncBaseTransport | None) -> None:
        """Send through ``transport`` from now on (None: a real connection pool).

        The test seam for a client made at import time: point it at
        ``httpx.MockTransport(handler)`` or ``httpx.ASGITransport(app)`` in a test.
        Connections of the previous transport are dropped, not closed: use it
        before the client is called, or between tests.
        """
        self._transport = transport
        self._client = None

    def breaker(self, url: str = "") -> Breaker:
        """The circuit breaker of the host ``url`` (a path: the base URL's host)."""
        parts = urlsplit(url if "://" in url else self.base_url)
        host = f"{parts.scheme}://{parts.netloc}"
        found = self._breakers.get(host)
        if found is None:
            found = self._breakers[host] = Breaker(
                failures=self._breaker_failures, reset=self._breaker_reset
            )
        return found

    # -- calls -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpx's per-call timeout, not a deadline
        idempotency_key: str | None = None,
        retries: int | None = None,
    ) -> httpx.Response:
        """Send a request; retried as the class says. Returns the response, whatever its status.

        Args:
            url: a path relative to the base URL (or an absolute URL).
            timeout: seconds for this call instead of the client's.
            idempotency_key: sent as ``Idempotency-Key``; makes a POST or PATCH retryable.
            retries: attempts after the first for this call instead of the policy's.

        Raises:
            PeerError: no response came back (after the retries), naming the peer.
            CircuitOpen: the host's breaker is open; nothing was sent.
        """
        method = method.upper()
        sent = dict(headers or {})
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        budget = (
            (self.retry.retries if retries is None else retries) if may_retry(method, sent) else 0
        )
        breaker = self.breaker(url)
        options: dict[str, Any] = {"params": params, "json": json, "content": content}
        if timeout is not None:
            options["timeout"] = timeout
        attempt = 0
        while True:
            if not breaker.allow():
                self.metrics.attempt(self.peer, method, "circuit_open", None)
                raise CircuitOpen(
                    f"{self.peer} is failing: its circuit breaker is open for another "
                    f"{breaker.retry_in():.1f} s after {breaker.failures} failures in a row "
                    f"({method} {url} was not sent).",
                    peer=self.peer,
                    method=method,
                    url=url,
                )
            try:
                response = await self._attempt(method, url, sent, options)
            except httpx.TransportError as exc:
                self._failed(breaker)
                if attempt >= budget:
                    raise PeerError(
                        f"{self.peer} did not answer {method} {self._full(url)}: "
                        f"{type(exc).__name__}: {exc or 'no detail'}"
                        f"{f' (after {attempt + 1} attempts)' if attempt else ''}.",
                        peer=self.peer,
                        method=method,
                        url=self._full(url),
                    ) from exc
                await asyncio.sleep(self.retry.delay(attempt))
            else:
                if response.status_code in BREAKER_STATUSES:
                    self._failed(breaker)
                else:
                    breaker.succeeded()
                if response.status_code not in RETRY_STATUSES or attempt >= budget:
                    return response
                await response.aclose()
                await asyncio.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
            attempt += 1

    def _failed(self, breaker: Breaker) -> None:
        if breaker.failed():
            self.metrics.breaker_opened.labels(self.metrics.service, self.peer).inc()

    def _full(self, url: str) -> str:
        return url if "://" in url else f"{self.base_url}/{url.lstrip('/')}"

    async def _attempt(
        self, method: str, url: str, headers: dict[str, str], options: dict[str, Any]
    ) -> httpx.Response:
        """One attempt, in a client span when tracing, with the trace context injected."""
        from opentelemetry import propagate

        started = time.perf_counter()
        status = "error"
        try:
            if not self.tracing:
                carrier = dict(headers)
                propagate.inject(carrier)
                response = await self._http().request(method, url, headers=carrier, **options)
            else:
                response = await self._traced(method, url, headers, options)
            status = str(response.status_code)
            return response
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.attempt(self.peer, method, status, elapsed if status != "error" else None)

    async def _traced(
        self, method: str, url: str, headers: dict[str, str], options: dict[str, Any]
    ) -> httpx.Response:
        from opentelemetry import propagate, trace

        from nativekit._telemetry.tracing import get_tracer

        attributes = {
            "http.request.method": method,
            "url.full": self._full(url),
            "server.address": urlsplit(self._full(url)).hostname or "",
            "peer.service": self.peer,
        }
        with get_tracer().start_as_current_span(
            method, kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            carrier = dict(headers)
            propagate.inject(carrier)
            response = await self._http().request(method, url, headers=carrier, **options)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            return response

    async def get(self, url: str, **options: Any) -> httpx.Response:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **options)

    async def post(self, url: str, **options: Any) -> httpx.Response:
        """``request("POST", url, ...)``: retried only with an ``idempotency_key``."""
        return await self.request("POST", url, **options)

    async def put(self, url: str, **options: Any) -> httpx.Response:
        """``request("PUT", url, ...)``."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: str, **options: Any) -> httpx.Response:
        """``request("PATCH", url, ...)``: retried only with an ``idempotency_key``."""
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str, **options: Any) -> httpx.Response:
        """``request("DELETE", url, ...)``."""
        return await self.request("DELETE", url, **options)
