"""The apps of benchmarks/http_overhead.py: one JSON endpoint, ``GET /items/{id}``, many ways.

Each factory returns an ASGI app for ``uvicorn --factory``. Every variant answers
``{"id": <id>, "name": "item-<id>", "price": 9.99}`` with status 200; a
non-integer id is a 4xx in all but the raw ASGI app. ``nativekit-jwt`` answers
only requests carrying the RS256 token of :func:`jwt_headers` (see ``HEADERS``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _item(item_id: int) -> dict[str, Any]:
    return {"id": item_id, "name": f"item-{item_id}", "price": 9.99}


# -- 1. raw ASGI ----------------------------------------------------------------------


def raw_asgi() -> ASGIApp:
    """A hand-written ASGI callable: the ceiling for any framework."""
    prefix = "/items/"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        status, body = 404, b'{"detail":"Not Found"}'
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            status = 200
            body = json.dumps(_item(int(path[len(prefix) :])), separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


# -- 2. bare Starlette ------------------------------------------------------------------


async def _starlette_item(request: Request) -> JSONResponse:
    return JSONResponse(_item(request.path_params["item_id"]))


def _starlette_routes() -> list[Route]:
    return [Route("/items/{item_id:int}", _starlette_item, methods=["GET"])]


def starlette_bare() -> ASGIApp:
    """Starlette with one route and no middleware: the reference of every ratio."""
    return Starlette(routes=_starlette_routes())


# -- 3. FastAPI ---------------------------------------------------------------------------


def fastapi_app() -> ASGIApp:
    """FastAPI with a typed path parameter, the closest peer to nativekit's typed routes."""
    from fastapi import FastAPI

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        return _item(item_id)

    return app


# -- 4. Starlette + prometheus-client + stock OTel ASGI middleware ----------------------


class PrometheusMiddleware:
    """A hand-wired prometheus-client middleware, as a user would write it."""

    def __init__(self, app: ASGIApp) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.app = app
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "Requests.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Latency.",
            ["method", "route"],
            registry=self.registry,
        )
        self.in_flight = Gauge("http_requests_in_flight", "In flight.", registry=self.registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", "<unmatched>")
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.duration.labels(scope["method"], template).observe(time.perf_counter() - started)


def starlette_prometheus_otel() -> ASGIApp:
    """Starlette with prometheus-client and the stock OTel ASGI middleware: recorded SDK
    spans (``ALWAYS_ON``: the server span plus its receive/send spans), no exporter."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(sampler=ALWAYS_ON)  # recording, no exporter
    app: ASGIApp = PrometheusMiddleware(Starlette(routes=_starlette_routes()))
    return OpenTelemetryMiddleware(app, tracer_provider=provider)


# -- 5./6. nativekit ------------------------------------------------------------------------


def _nativekit(*, tracing: bool, access_log: bool) -> ASGIApp:
    import nativekit

    settings = nativekit.Settings(
        environment="production",
        telemetry={"log_format": "json", "metrics_enabled": True, "tracing_enabled": tracing},
        http={"access_log": access_log},
    )
    svc = nativekit.Service("bench", settings=settings)

    @svc.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        return _item(item_id)

    app = svc.app
    nativekit.tune_gc()  # as a service process under load opts in (docs/performance.md)
    return app


def nativekit_metrics() -> ASGIApp:
    """nativekit with request metrics only (tracing and access log off)."""
    return _nativekit(tracing=False, access_log=False)


# -- 5b. nativekit with a JWT-protected route ---------------------------------------------

_JWT_AUDIENCE = "bench-api"


def _jwt_files() -> tuple[Path, Path]:
    """(private key PEM, JWKS) of the benchmark's issuer, made once per machine in TMPDIR."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "nativekit-bench-jwt"
    pem, jwks = folder / "key.pem", folder / "jwks.json"
    if not pem.exists() or not jwks.exists():
        import jwt

        folder.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public = jwt.get_algorithm_by_name("RS256").to_jwk(key.public_key(), as_dict=True)
        jwks.write_text(json.dumps({"keys": [{**public, "kid": "bench", "alg": "RS256"}]}))
    return pem, jwks


def jwt_headers() -> dict[str, str]:
    """The Authorization header of a valid RS256 token (one hour) for ``nativekit-jwt``."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    pem, _ = _jwt_files()
    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    now = int(time.time())
    claims = {"sub": "bench", "aud": _JWT_AUDIENCE, "exp": now + 3600, "scope": "items:read"}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def nativekit_jwt() -> ASGIApp:
    """nativekit-metrics with the route requiring an RS256 JWT with a scope (keys cached)."""
    import nativekit

    _, jwks = _jwt_files()
    settings = nativekit.Settings(
        environment="production",
        telemetry={"log_format": "json", "metrics_enabled": True, "tracing_enabled": False},
        http={"access_log": False},
        auth={"jwks_url": jwks.as_uri(), "audience": [_JWT_AUDIENCE]},
    )
    svc = nativekit.Service("bench", settings=settings)

    @svc.get("/items/{item_id}", scopes=["items:read"])
    async def read_item(item_id: int) -> dict[str, Any]:
        return _item(item_id)

    app = svc.app
    nativekit.tune_gc()
    return app


def nativekit_full() -> ASGIApp:
    """nativekit full stack with the default ``none`` exporter: metrics, a *non-recording*
    span per request (trace and span ids and the sampler's flags, the trace context made
    current and sent on; no name, attributes or timing kept, nothing exported), and the
    JSON access line with the trace and span ids."""
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    os.environ.setdefault("OTEL_TRACES_SAMPLER", "always_on")
    return _nativekit(tracing=True, access_log=True)


def _exporting(sampler: str, ratio: str | None) -> ASGIApp:
    endpoint = os.environ.get("BENCH_OTLP_ENDPOINT")
    if not endpoint:
        raise RuntimeError(
            "BENCH_OTLP_ENDPOINT is not set: http_overhead.py runs the OTLP receiver and sets it"
        )
    os.environ["OTEL_TRACES_EXPORTER"] = "otlp"
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    os.environ["OTEL_TRACES_SAMPLER"] = sampler
    if ratio is not None:
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = ratio
    return _nativekit(tracing=True, access_log=True)


def nativekit_full_exporting() -> ASGIApp:
    """nativekit full stack exporting every span: metrics, a *recorded* SDK span per request
    (``always_on``; SERVER kind, named ``GET /items/{item_id}``, method, path, scheme, route
    and status attributes) handed to the SDK's batch span processor and sent by nativekit's
    OTLP/HTTP exporter (protobuf) to the benchmark's local receiver, and the JSON access
    line."""
    return _exporting("always_on", None)


def nativekit_full_sampled() -> ASGIApp:
    """As ``nativekit-full-exporting`` at ``parentbased_traceidratio`` 0.1: about one request
    in ten gets a recorded, exported span (built by the SDK); the others a non-recording
    span (ids and the sampler's flags only) that nativekit's tracer builds without the SDK,
    as with the ``none`` exporter."""
    return _exporting("parentbased_traceidratio", "0.1")


#: Benchmark name -> factory, in the order of the report.
APPS = {
    "raw-asgi": raw_asgi,
    "starlette": starlette_bare,
    "fastapi": fastapi_app,
    "starlette+prom+otel": starlette_prometheus_otel,
    "nativekit-metrics": nativekit_metrics,
    "nativekit-jwt": nativekit_jwt,
    "nativekit-full": nativekit_full,
    "nativekit-full-sampled": nativekit_full_sampled,
    "nativekit-full-exporting": nativekit_full_exporting,
}


# -- reference and breakdown variants (not in the default run unless listed in APPS) -----


def raw_asgi_sdk_span() -> ASGIApp:
    """Raw ASGI plus one recording SDK span per request: the floor of any traced stack."""
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("bench")
    inner = raw_asgi()
    kind = trace.SpanKind.SERVER

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        span = tracer.start_span(
            "GET",
            kind=kind,
            attributes={
                "http.request.method": "GET",
                "url.path": scope["path"],
                "url.scheme": "http",
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            await inner(scope, receive, send)
        finally:
            span.update_name("GET /items/{item_id}")
            span.set_attributes(
                {"http.route": "/items/{item_id}", "http.response.status_code": 200}
            )
            span.end()
            context.detach(token)

    return app


def nativekit_tracing_only() -> ASGIApp:
    """nativekit with metrics and tracing, no access log (breakdown)."""
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    os.environ.setdefault("OTEL_TRACES_SAMPLER", "always_on")
    return _nativekit(tracing=True, access_log=False)


def nativekit_access_log_only() -> ASGIApp:
    """nativekit with metrics and the JSON access log, no tracing (breakdown)."""
    return _nativekit(tracing=False, access_log=True)


APPS["raw-asgi+sdk-span"] = raw_asgi_sdk_span

#: Optional variants, run with ``--apps``: what tracing, the access log and auth each cost.
EXTRA_APPS = {
    "nativekit-tracing": nativekit_tracing_only,
    "nativekit-access-log": nativekit_access_log_only,
}

#: Request headers an app needs (made in the benchmark process, sent by wrk).
HEADERS: dict[str, Callable[[], dict[str, str]]] = {"nativekit-jwt": jwt_headers}
