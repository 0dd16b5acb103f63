"""The code samples of the documentation run."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nativekit.testing import capture_logs, serve


async def test_http_errors_example() -> None:
    """Query lists, headers, custom errors and the mounted app behave as the page says."""
    from docs.examples.http_errors import svc

    async with serve(svc) as client:
        r = await client.get("/products?tag=a&tag=b", headers={"X-Tenant": "acme"})
        assert r.json() == {"limit": 10, "tags": ["a", "b"], "tenant": "acme"}
        too_many = await client.get("/products?limit=500")
        assert too_many.status_code == 400 and too_many.json()["title"] == "Limit too large"
        assert (await client.get("/legacy/ping")).text == "legacy ok"


async def test_health_checks_example() -> None:
    """The example's checks appear in /readyz; a long queue warns without failing."""
    from docs.examples import health_checks

    async with serve(health_checks.svc) as client:
        body = (await client.get("/readyz")).json()
        assert set(body["checks"]) == {"payment-gateway", "retry-queue"}
        health_checks.QUEUE.extend(["p"] * 101)
        health_checks.svc.health.cache_ttl = 0
        warned = await client.get("/readyz")
        health_checks.QUEUE.clear()
    assert warned.status_code == 200 and warned.json()["status"] == "warn"


async def test_combined_example() -> None:
    """Both services answer from one app."""
    from docs.examples.combined import app

    async with serve(app) as client:
        assert (await client.get("/orders/o1")).json() == {"order_id": "o1"}
        assert (await client.get("/payments/p1")).json() == {"payment_id": "p1"}


async def test_spans_example(spans: InMemorySpanExporter) -> None:
    """The custom span is a child of the request span and the log line carries its trace."""
    from docs.examples.spans import svc

    with capture_logs() as logs:
        async with serve(svc) as client:
            await client.get("/prices/mug")
    names = {s.name for s in spans.get_finished_spans()}
    assert {"GET /prices/{sku}", "pricing.rules"} <= names
    line = next(e for e in logs if e["event"] == "price.computed")
    assert len(line["trace_id"]) == 32


def test_configuration_example() -> None:
    """The configuration sample builds an app with the given settings."""
    from docs.examples.configuration import svc

    assert svc.settings.http.shutdown_grace_seconds == 20 and svc.settings.redis.url.startswith("redis://")


def test_snippet_includes_point_at_existing_files() -> None:
    """Every page includes its samples with valid snippet syntax naming a file that exists."""
    import re
    from pathlib import Path

    root = Path(__file__).parents[2]
    include = re.compile(r'^--8<-- "([^"]+)"$')
    for page in (root / "docs").glob("*.md"):
        for line in page.read_text().splitlines():
            if line.startswith("--8"):
                match = include.match(line)
                assert match, f"{page.name}: malformed include {line!r}"
                assert (root / match.group(1)).is_file(), f"{page.name}: {line}"


async def test_gc_tuning_example() -> None:
    """Importing the example tunes the collector as the page says; restore_gc undoes it."""
    import gc
    import runpy
    from pathlib import Path

    import nativekit

    nativekit.restore_gc()
    before = gc.get_threshold()
    try:
        example = runpy.run_path(str(Path(__file__).parents[2] / "docs/examples/gc_tuning.py"))
        assert gc.get_threshold()[0] == max(before[0], 10_000)
        assert gc.get_freeze_count() > 0
        async with serve(example["svc"]) as client:
            assert (await client.get("/orders/o1")).json() == {"order_id": "o1"}
    finally:
        nativekit.restore_gc()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_api_docs_example() -> None:
    """The page's service serves both documents as the page describes them."""
    from openapi_spec_validator import validate

    from docs.examples.api_docs import svc
    from tests.apidocs.test_asyncapi import check

    async with serve(svc) as client:
        opened = await client.post("/tickets", json={"title": "Printer on fire"},
                                   headers={"Idempotency-Key": "k1"})  # fmt: skip
        openapi = (await client.get("/openapi.json")).json()
        asyncapi = (await client.get("/asyncapi.json")).json()
        page = await client.get("/docs")
    assert opened.status_code == 201 and opened.json()["priority"] == 3
    validate(openapi)
    post = openapi["paths"]["/tickets"]["post"]
    assert post["summary"] == "Open a ticket." and post["tags"] == ["tickets"]
    assert sorted(post["responses"]) == ["201", "400", "409", "413", "415", "422", "500"]
    assert openapi["paths"]["/v0/tickets"]["get"]["deprecated"] is True
    limit = openapi["paths"]["/tickets"]["get"]["parameters"][0]["schema"]
    assert limit == {"type": "integer", "minimum": 1, "maximum": 5, "default": 1}
    check(asyncapi)
    assert set(asyncapi["operations"]) == {
        "support.send.support.tickets", "support.on_escalation",
        "support.on_escalation.dead-letter",
    }  # fmt: skip
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
