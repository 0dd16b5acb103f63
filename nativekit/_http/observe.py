"""One ASGI middleware for request telemetry: metrics, a server span, the access log.

Doing the three in one pass keeps the per-request cost low (the stock OTel
middleware alone costs about two thirds of a bare Starlette's throughput). It
sits outside Starlette's error middleware, so an unhandled exception is logged
here exactly once, with the trace id, and never reaches the server's logger.
"""

from __future__ import annotations

import time
from random import getrandbits
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nativekit._health import PROBE_PATHS
from nativekit._telemetry.access import AccessLog
from nativekit._telemetry.logging import get_logger, log_context
from nativekit._telemetry.metrics import UNMATCHED_ROUTE, Metrics

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

_REQUEST_ID = b"x-request-id"
_TRACEPARENT = b"traceparent"


def route_template(scope: Scope, root_path: str) -> str | None:
    """The template of the route that matched, including any mount prefix."""
    route = scope.get("route")
    if route is None:
        return None
    path: str = getattr(route, "path", "")
    prefix = scope.get("root_path", "")[len(root_path) :]
    return prefix + path if prefix else path


class TelemetryMiddleware:
    """Metrics, tracing and access logging for HTTP requests."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        metrics: Metrics | None,
        tracer: Tracer | None,
        access_log: bool,
        skip_paths: frozenset[str] = PROBE_PATHS,
    ) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.tracer = tracer
        self.access_log = access_log
        self.skip_paths = skip_paths
        self.log = get_logger(component="http")
        self._bound_log: Any = None  # self.log resolved at the first request, after configuration
        self._access = AccessLog(service)
        if tracer is not None:
            from opentelemetry import context, trace

            from nativekit._telemetry.lean import sampler_reads_attributes
            from nativekit._telemetry.propagation import extract_traceparent

            self._context = context
            self._extract = extract_traceparent
            self._trace = trace
            self._server_kind = trace.SpanKind.SERVER
            self._error_status = trace.Status(trace.StatusCode.ERROR)
            #: (method, route template) -> span name, made once per route
            self._span_names: dict[tuple[str, str], str] = {}
            #: the request's method, path and scheme are given at the span's start only
            #: to a sampler that may read them; others get them with the rest at its end
            self._attributes_at_start = sampler_reads_attributes(tracer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, traceparent = _read_headers(scope["headers"])
        if request_id is None:
            request_id = _new_request_id()
        log_token = log_context.set({"request_id": request_id, "service": self.service})
        span = otel_token = None
        if self.tracer is not None:
            span, otel_token = self._start_span(scope, traceparent)
        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight.inc()
        status = 500
        response_started = False
        request_id_header = (_REQUEST_ID, request_id.encode("latin-1"))

        async def send_with_status(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        root_path = scope.get("root_path", "")
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:  # logged here once; the response is already sent
            error = exc
            status = 500
            if not response_started:
                await _send_500(send)
        finally:
            method: str = scope["method"]
            template = route_template(scope, root_path)
            duration = time.perf_counter() - started
            if metrics is not None:
                metrics.in_flight.dec()
                metrics.observe_request(method, template or UNMATCHED_ROUTE, status, duration)
            if error is not None:
                self.log.error(
                    "http.request.failed",
                    method=method,
                    route=template,
                    path=scope["path"],
                    exc_info=error,
                )
            if self.access_log:
                self._log_access(
                    method,
                    template or UNMATCHED_ROUTE,
                    scope["path"],
                    status,
                    duration,
                    request_id,
                    None if span is None else span.get_span_context(),
                )
            if span is not None:
                self._end_span(span, otel_token, scope, template, status, error)
            log_context.reset(log_token)

    def _log_access(
        self,
        method: str,
        route: str,
        path: str,
        status: int,
        duration: float,
        request_id: str,
        span_context: Any,
    ) -> None:
        duration_ms = round(duration * 1000, 3)
        if self._access.write(method, route, path, status, duration_ms, request_id, span_context):
            return
        log = self._bound_log
        if log is None:
            # the lazy proxy re-binds on every call; bind once, when first needed
            log = self._bound_log = self.log.bind()
        log.info(
            "http.request",
            method=method,
            route=route,
            path=path,
            status=status,
            duration_ms=duration_ms,
        )

    def _start_span(self, scope: Scope, traceparent: str | None) -> tuple[Any, Any]:
        parent = self._extract(traceparent) if traceparent is not None else None
        tracer: Tracer = self.tracer  # type: ignore[assignment]  # only called with a tracer
        attributes = None
        if self._attributes_at_start:  # the sampler may read them
            attributes = {
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            }
        span = tracer.start_span(
            scope["method"], context=parent, kind=self._server_kind, attributes=attributes
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def _end_span(
        self,
        span: Any,
        token: Any,
        scope: Scope,
        template: str | None,
        status: int,
        error: BaseException | None,
    ) -> None:
        if span.is_recording():  # a non-recording span keeps nothing: build nothing for it
            method: str = scope["method"]
            # one call, one lock: the SDK locks the span once per set_attribute(s)
            if self._attributes_at_start:
                attributes: dict[str, Any] = {"http.response.status_code": status}
            else:
                attributes = {
                    "http.request.method": method,
                    "url.path": scope["path"],
                    "url.scheme": scope.get("scheme", "http"),
                    "http.response.status_code": status,
                }
            if template is not None:
                names = self._span_names.get((method, template))
                if names is None:
                    if len(self._span_names) > 1000:  # methods are whatever clients send
                        self._span_names.clear()
                    names = self._span_names[(method, template)] = f"{method} {template}"
                span.update_name(names)
                attributes["http.route"] = template
            span.set_attributes(attributes)
            if error is not None:
                span.record_exception(error)
            if status >= 500:
                span.set_status(self._error_status)
            span.end()
        self._context.detach(token)


def _read_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    request_id = traceparent = None
    for key, value in headers:
        if key == _REQUEST_ID:
            request_id = value.decode("latin-1")[:128]
        elif key == _TRACEPARENT:
            traceparent = value.decode("latin-1")
    return request_id, traceparent


def _new_request_id() -> str:
    """16 hex digits; ``random`` is reseeded in forked workers, so ids stay unique."""
    return f"{getrandbits(64):016x}"


async def _send_500(send: Send) -> None:
    body = (
        b'{"type":"about:blank","title":"Internal Server Error","status":500,'
        b'"detail":"The server could not complete the request; it has been logged."}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
