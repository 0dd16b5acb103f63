"""svc.http_client against real HTTP peers: retries, breaker, timeouts, tracing, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from peer_support import Peer, peer_server

import nativekit
from nativekit.client import AiohttpTransport, CircuitOpen, HTTPClient, PeerError
from nativekit.testing import lifespan
from nativekit.testing.servers import free_port


@pytest.fixture(params=["httpx", "aiohttp"], autouse=True)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs on httpx's own pool and on AiohttpTransport."""
    ENGINE[0] = request.param
    yield request.param
    ENGINE[0] = "httpx"


ENGINE = ["httpx"]


def http_client(svc: nativekit.Service, url: str, **options: Any) -> HTTPClient:
    """``svc.http_client`` on the engine under test."""
    if ENGINE[0] == "aiohttp" and "transport" not in options:
        options["transport"] = AiohttpTransport()
    return svc.http_client(url, **options)


@pytest.fixture
def peer() -> Iterator[Peer]:
    """A scripted peer service over real TCP."""
    with peer_server() as server:
        yield server


def make_service(tracing: bool = False) -> nativekit.Service:
    """A service whose clients are under test."""
    return nativekit.Service(
        "orders",
        settings=nativekit.Settings(_env_file=None, telemetry={"tracing_enabled": tracing}),
    )


def count(
    svc: nativekit.Service, status: str, method: str = "GET", peer: str = "payments"
) -> float:
    """http_client_requests_total for one label set."""
    labels = {"service": "orders", "peer": peer, "method": method, "status": status}
    return svc.metrics.registry.get_sample_value("http_client_requests_total", labels) or 0.0


async def test_get_is_retried_on_503_and_counted_per_attempt(peer: Peer) -> None:
    """A 503 then a 200: the caller sees the 200; both attempts are counted and timed."""
    svc = make_service()
    client = http_client(svc, peer.url, peer="payments", backoff=0.01)
    peer.then(503, {"detail": "busy"}).then(200, {"id": "p1"})
    async with lifespan(svc):
        response = await client.get("/payments/p1")
    assert response.status_code == 200 and response.json() == {"id": "p1"}
    assert [s.method for s in peer.seen] == ["GET", "GET"]
    assert count(svc, "503") == 1 and count(svc, "200") == 1
    duration = svc.metrics.registry.get_sample_value(
        "http_client_request_duration_seconds_count",
        {"service": "orders", "peer": "payments", "method": "GET"},
    )
    assert duration == 2


async def test_post_is_not_retried_without_an_idempotency_key(peer: Peer) -> None:
    """A POST that got a 503 is returned as is: sending it again could charge twice."""
    svc = make_service()
    client = http_client(svc, peer.url, peer="payments", backoff=0.01)
    peer.then(503).then(200)
    async with lifespan(svc):
        response = await client.post("/payments", json={"amount": 5})
    assert response.status_code == 503
    assert len(peer.seen) == 1


async def test_post_with_an_idempotency_key_is_retried_with_the_key(peer: Peer) -> None:
    """With idempotency_key the POST is safe to repeat: retried, the key sent each time."""
    svc = make_service()
    client = http_client(svc, peer.url, peer="payments", backoff=0.01)
    peer.then(502).then(429, headers={"Retry-After": "0"}).then(201, {"id": "p1"})
    async with lifespan(svc):
        response = await client.post("/payments", json={"amount": 5}, idempotency_key="o1:charge")
    assert response.status_code == 201
    assert [s.headers["Idempotency-Key"] for s in peer.seen] == ["o1:charge"] * 3
    assert all(s.body == b'{"amount":5}' for s in peer.seen)


async def test_retries_stop_at_the_budget_and_return_the_last_answer(peer: Peer) -> None:
    """retries=2: three attempts, then the last 503 is the answer."""
    svc = make_service()
    client = http_client(svc, peer.url, peer="payments", backoff=0.01, retries=2,
                             breaker_failures=10)  # fmt: skip
    peer.default = (503, {}, None, 0.0)
    async with lifespan(svc):
        assert (await client.get("/x")).status_code == 503
        assert len(peer.seen) == 3
        assert (await client.get("/x", retries=0)).status_code == 503
        assert len(peer.seen) == 4


async def test_nothing_listening_is_a_peer_error_naming_the_peer() -> None:
    """Connection refused (a closed port) ends, after the retries, as PeerError."""
    svc = make_service()
    url = f"http://127.0.0.1:{free_port()}"
    client = http_client(svc, url, peer="inventory", backoff=0.01, retries=1)
    async with lifespan(svc):
        with pytest.raises(PeerError) as caught:
            await client.get("/inventory/products/mug")
    error = caught.value
    assert error.peer == "inventory" and error.method == "GET"
    assert error.url == f"{url}/inventory/products/mug"
    assert str(error).startswith(f"inventory did not answer GET {url}/inventory/products/mug")
    assert "after 2 attempts" in str(error)
    assert isinstance(error, ConnectionError)
    assert error.uncertain  # no answer: a saga step failing with it is compensated
    assert count(svc, "error", peer="inventory") == 2


async def test_per_call_timeout(peer: Peer) -> None:
    """timeout= bounds one call: a slow peer is a PeerError (ReadTimeout) in about that time."""
    svc = make_service()
    client = http_client(svc, peer.url, peer="payments", timeout=30)
    peer.then(200, delay=2.0)
    async with lifespan(svc):
        started = time.monotonic()
        with pytest.raises(PeerError, match="ReadTimeout"):
            await client.get("/slow", timeout=0.2, retries=0)
        assert time.monotonic() - started < 1.5


async def test_circuit_breaker_opens_fails_fast_and_closes_after_a_good_trial(peer: Peer) -> None:
    """3 failures open the breaker: calls fail at once unsent; after the reset one trial goes
    out, and its success closes the breaker again."""
    svc = make_service()
    client = http_client(
        svc, peer.url, peer="payments", retries=0, breaker_failures=3, breaker_reset_seconds=30
    )
    now = [100.0]
    client.breaker().clock = lambda: now[0]
    peer.default = (503, {}, None, 0.0)
    async with lifespan(svc):
        for _ in range(3):
            assert (await client.get("/x")).status_code == 503
        with pytest.raises(
            CircuitOpen, match="payments is failing: its circuit breaker is open"
        ) as open_:
            await client.get("/x")
        assert len(peer.seen) == 3  # the refused call was not sent
        assert not open_.value.uncertain  # nothing sent: certainly not applied
        assert count(svc, "circuit_open") == 1
        opened = {"service": "orders", "peer": "payments"}
        assert (
            svc.metrics.registry.get_sample_value("http_client_circuit_opened_total", opened) == 1
        )
        now[0] += 31
        peer.default = (200, {}, {"ok": True}, 0.0)
        assert (await client.get("/x")).status_code == 200  # the trial
        assert client.breaker().state == "closed"
        assert (await client.get("/x")).status_code == 200


async def test_a_failed_trial_reopens_the_breaker(peer: Peer) -> None:
    """Half-open: the trial fails, the breaker opens again for another reset period."""
    svc = make_service()
    client = http_client(svc, peer.url, retries=0, breaker_failures=1, breaker_reset_seconds=10)
    now = [0.0]
    client.breaker().clock = lambda: now[0]
    peer.default = (502, {}, None, 0.0)
    async with lifespan(svc):
        await client.get("/x")
        now[0] += 11
        assert (await client.get("/x")).status_code == 502  # the trial
        with pytest.raises(CircuitOpen):
            await client.get("/x")
    assert len(peer.seen) == 2


async def test_breakers_are_per_host(peer: Peer) -> None:
    """A dead host's open breaker does not stop calls to another host by absolute URL."""
    svc = make_service()
    dead = f"http://127.0.0.1:{free_port()}"
    client = http_client(svc, dead, retries=0, breaker_failures=1)
    async with lifespan(svc):
        with pytest.raises(PeerError):
            await client.get("/x")
        with pytest.raises(CircuitOpen):
            await client.get("/x")
        assert (await client.get(f"{peer.url}/y")).status_code == 200


async def test_trace_context_reaches_the_peer(peer: Peer, spans: InMemorySpanExporter) -> None:
    """Inside a span, the peer receives a traceparent of the same trace; a client span
    records the call."""
    svc = make_service(tracing=True)
    client = http_client(svc, peer.url, peer="payments")
    tracer = trace.get_tracer("test")
    async with lifespan(svc):
        with tracer.start_as_current_span("saga.step") as parent:
            await client.get("/payments/p1")
    trace_id = format(parent.get_span_context().trace_id, "032x")
    traceparent = peer.seen[0].headers["traceparent"]
    assert traceparent.split("-")[1] == trace_id
    client_span = next(s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CLIENT)
    assert client_span.parent is not None
    assert client_span.parent.span_id == parent.get_span_context().span_id
    assert format(client_span.context.span_id, "016x") == traceparent.split("-")[2]
    assert client_span.attributes is not None
    assert client_span.attributes["http.response.status_code"] == 200
    assert client_span.attributes["peer.service"] == "payments"


async def test_trace_context_is_sent_with_tracing_spans_off(peer: Peer) -> None:
    """NATIVEKIT_TELEMETRY_TRACING_ENABLED=false: no client span, the caller's context still
    travels."""
    svc = make_service(tracing=False)
    client = http_client(svc, peer.url)
    async with lifespan(svc):
        with trace.get_tracer("test").start_as_current_span("step") as parent:
            await client.get("/x")
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert peer.seen[0].headers["traceparent"].split("-")[1] == trace_id


async def test_clients_close_on_shutdown_and_reopen_on_the_next_start(peer: Peer) -> None:
    """Stopping the service closes the pool; a service started again calls again."""
    svc = make_service()
    client = http_client(svc, peer.url, headers={"Authorization": "Bearer t"})
    async with lifespan(svc):
        await client.get("/x")
        pool = client._client
        assert pool is not None and not pool.is_closed
    assert pool.is_closed
    async with lifespan(svc):
        assert (await client.get("/x")).status_code == 200
    assert [s.headers["Authorization"] for s in peer.seen] == ["Bearer t", "Bearer t"]


async def test_mock_transport_is_the_test_seam() -> None:
    """transport=httpx.MockTransport(handler) stands in for a peer in unit tests."""
    svc = make_service()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"sku": request.url.path.rsplit("/", 1)[1]})

    client = http_client(svc, "http://inventory", transport=httpx.MockTransport(handler))
    async with lifespan(svc):
        response = await client.get("/products/mug", params={"fields": "price"})
    assert response.json() == {"sku": "mug"}
    assert str(calls[0].url) == "http://inventory/products/mug?fields=price"
    assert count(svc, "200", peer="inventory") == 1


async def test_concurrent_calls_share_the_pool(peer: Peer) -> None:
    """Many concurrent calls through one client all succeed (pooled connections)."""
    svc = make_service()
    client = http_client(svc, peer.url, max_connections=4)
    async with lifespan(svc):
        answers = await asyncio.gather(*(client.get(f"/x/{n}") for n in range(20)))
    assert [a.status_code for a in answers] == [200] * 20


def idle_for(seconds: float) -> dict[str, Any]:
    """Client options that reuse an idle connection for ``seconds``, on the engine under test."""
    if ENGINE[0] == "aiohttp":
        return {"transport": AiohttpTransport(keepalive_seconds=seconds)}
    return {"keepalive_seconds": seconds}


async def test_a_connection_idle_past_keepalive_is_not_reused(peer: Peer) -> None:
    """Calls close together share a connection; after the keep-alive time a new one opens,
    so a call is not sent on a connection the peer's idle timeout is closing."""
    svc = make_service()
    client = http_client(svc, peer.url, **idle_for(0.3))
    async with lifespan(svc):
        await client.get("/a")
        await client.get("/b")
        await asyncio.sleep(0.8)
        await client.get("/c")
    first, second, third = (seen.client_port for seen in peer.seen)
    assert first == second
    assert third != first


async def test_the_default_keepalive_is_below_uvicorns_idle_timeout(peer: Peer) -> None:
    """By default an idle connection is dropped before uvicorn's 5 s idle timeout would."""
    svc = make_service()
    client = http_client(svc, peer.url)
    async with lifespan(svc):
        await client.get("/a")
        await asyncio.sleep(2.5)
        await client.get("/b")
    first, second = (seen.client_port for seen in peer.seen)
    assert first != second
