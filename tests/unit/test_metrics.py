"""Prometheus metrics per service."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from nativekit import HTTPError, Service, Settings
from nativekit.testing import serve


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def make_service() -> Service:
    svc = Service("order-service", settings=Settings(_env_file=None))

    @svc.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        if order_id == 0:
            raise HTTPError(404, "no such order")
        return {"id": order_id}

    return svc


async def test_requests_counted_by_route_template_and_status() -> None:
    """http_requests_total uses the route template, never the raw path."""
    async with serve(make_service()) as client:
        for order_id in (1, 2, 3, 0):
            await client.get(f"/orders/{order_id}")
        await client.get("/unknown/1")
        await client.get("/unknown/2")
        await client.get("/livez")
        text = (await client.get("/metrics")).text
    counts = samples(text, "http_requests_total")
    base = (("method", "GET"), ("route", "/orders/{order_id}"), ("service", "order-service"))
    assert counts[(*base, ("status", "200"))] == 3
    assert counts[(*base, ("status", "404"))] == 1
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("service", "order-service"))
    assert counts[(*unmatched, ("status", "404"))] == 2
    assert not any("/orders/1" in dict(k)["route"] for k in counts)
    assert not any(dict(k)["route"] == "/livez" for k in counts), "probes are excluded"


async def test_duration_histogram_and_process_collectors() -> None:
    """Durations are a histogram by route; process and GC collectors are present."""
    async with serve(make_service()) as client:
        await client.get("/orders/5")
        text = (await client.get("/metrics")).text
    counts = samples(text, "http_request_duration_seconds_count")
    key = (("method", "GET"), ("route", "/orders/{order_id}"), ("service", "order-service"))
    assert counts[key] == 1
    assert "process_cpu_seconds_total" in text
    assert "python_gc_objects_collected_total" in text
    # the scrape itself is the one request in flight
    assert samples(text, "http_requests_in_flight") == {(("service", "order-service"),): 1.0}


async def test_two_services_do_not_clash() -> None:
    """Each service has its own registry; the same metric names coexist in one process."""
    first, second = make_service(), Service("other", settings=Settings(_env_file=None))
    async with serve(first) as a, serve(second) as b:
        await a.get("/orders/1")
        text_a = (await a.get("/metrics")).text
        text_b = (await b.get("/metrics")).text
    assert 'service="order-service"' in text_a
    assert 'service="order-service"' not in text_b


async def test_metrics_can_be_disabled() -> None:
    """With metrics off there is no /metrics route."""
    svc = Service("quiet", settings=Settings(_env_file=None, telemetry={"metrics_enabled": False}))
    async with serve(svc) as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_unusual_methods_share_one_label() -> None:
    """Methods outside the standard set are labelled OTHER, keeping label sets bounded."""
    async with serve(make_service()) as client:
        await client.request("BREW", "/orders/1")
        text = (await client.get("/metrics")).text
    counts = samples(text, "http_requests_total")
    assert any(dict(k)["method"] == "OTHER" for k in counts)
