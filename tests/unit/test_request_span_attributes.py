"""The request span's attributes: all present once the request ends, whatever the sampler;
given at the start only to a sampler that may read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nativekit._http.observe import TelemetryMiddleware
from nativekit._telemetry.lean import LeanTracerProvider

ROUTE = "/items/{item_id:int}"


class SeenAtStart(SpanProcessor):
    """Remembers the attributes each span had when it started."""

    def __init__(self) -> None:
        self.at_start: list[dict[str, Any]] = []

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        self.at_start.append(dict(span.attributes or {}))

    def on_end(self, span: ReadableSpan) -> None:
        return None


class MethodSampler(Sampler):
    """Keeps GET requests only: a sampler that reads the start attributes."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def should_sample(
        self,
        parent_context: context_api.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        self.seen.append(dict(attributes or {}))
        keep = (attributes or {}).get("http.request.method") == "GET"
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "MethodSampler"


async def _item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]})


async def _requests(sampler: Sampler, *paths: str) -> tuple[list[ReadableSpan], SeenAtStart]:
    provider = LeanTracerProvider(sampler=sampler)
    seen = SeenAtStart()
    finished = InMemorySpanExporter()
    provider.add_span_processor(seen)
    provider.add_span_processor(SimpleSpanProcessor(finished))
    app = TelemetryMiddleware(
        Starlette(routes=[Route(ROUTE, _item)]),
        service="attrs",
        metrics=None,
        tracer=provider.get_tracer("nativekit"),
        access_log=False,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in paths:
            await client.get(path)
    return list(finished.get_finished_spans()), seen


@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, ParentBasedTraceIdRatio(1.0)], ids=["always_on", "parentbased_ratio"]
)
async def test_every_attribute_is_on_the_ended_span(sampler: Sampler) -> None:
    """Method, path, scheme, route and status are on the span once the request ended,
    named after the route; a 404 has no route attribute and keeps the method as name."""
    spans, _ = await _requests(sampler, "/items/3", "/nowhere")
    found, missing = spans
    assert found.name == "GET /items/{item_id:int}"
    assert found.kind is trace.SpanKind.SERVER
    assert dict(found.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/items/3",
        "url.scheme": "http",
        "http.route": ROUTE,
        "http.response.status_code": 200,
    }
    assert missing.name == "GET"
    assert dict(missing.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/nowhere",
        "url.scheme": "http",
        "http.response.status_code": 404,
    }


@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, ParentBasedTraceIdRatio(1.0)], ids=["always_on", "parentbased_ratio"]
)
async def test_samplers_that_ignore_attributes_start_spans_without_them(sampler: Sampler) -> None:
    """With a sampler that decides on ids and flags alone a processor's on_start sees no
    http attributes: they are set in one call when the request ends."""
    _, seen = await _requests(sampler, "/items/3")
    assert seen.at_start == [{}]


async def test_a_sampler_that_reads_attributes_gets_them_at_the_start() -> None:
    """A user sampler is given method, path and scheme when the span starts (and a
    processor's on_start sees them); the ended span has them all, once."""
    sampler = MethodSampler()
    spans, seen = await _requests(sampler, "/items/3")
    at_start = {"http.request.method": "GET", "url.path": "/items/3", "url.scheme": "http"}
    assert sampler.seen == [at_start]
    assert seen.at_start == [at_start]
    (span,) = spans
    assert dict(span.attributes or {}) == {
        **at_start,
        "http.route": ROUTE,
        "http.response.status_code": 200,
    }
