"""The OTLP/HTTP (protobuf) span exporter nativekit installs for ``OTEL_TRACES_EXPORTER=otlp``.

It reads the standard variables as the SDK's ``OTLPSpanExporter`` does
(``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``,
``..._COMPRESSION`` ``none`` or ``gzip``), encodes a batch with
:mod:`nativekit._telemetry.otlp_encode` (a quarter of the SDK encoder's CPU per
span) and POSTs it over one kept-alive connection, retrying 429, 502, 503 and 504
answers and connection errors with exponential back-off within the timeout.
Configuration it does not cover (TLS client certificates or a custom CA, ``deflate``,
a credential provider) selects the SDK's exporter instead: :func:`otlp_exporter`.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from nativekit._telemetry.otlp_encode import encode_spans

__all__ = ["LeanOTLPSpanExporter", "otlp_exporter"]

_log = logging.getLogger(__name__)
_RETRY = frozenset({429, 502, 503, 504})
#: variables only the SDK's exporter honours: any of them set selects it
_SDK_ONLY = (
    "CERTIFICATE",
    "CLIENT_KEY",
    "CLIENT_CERTIFICATE",
)


def _env(name: str) -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``, else ''."""
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{name}")
        or ""
    ).strip()


def otlp_exporter() -> SpanExporter:
    """nativekit's lean exporter, or the SDK's when the configuration needs it."""
    sdk_only = [n for n in _SDK_ONLY if _env(n)]
    compression = _env("COMPRESSION").lower() or "none"
    if (
        sdk_only
        or compression not in ("none", "gzip")
        or os.environ.get("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER")
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )

        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint:
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
        endpoint = f"{base.removesuffix('/')}/v1/traces"
    try:
        timeout = float(_env("TIMEOUT") or 10)
    except ValueError:
        _log.warning("invalid OTLP timeout %r: using 10 seconds", _env("TIMEOUT"))
        timeout = 10.0
    headers = parse_env_headers(_env("HEADERS"), liberal=True)
    return LeanOTLPSpanExporter(
        endpoint, headers=headers, timeout=timeout, gzip_body=compression == "gzip"
    )


class LeanOTLPSpanExporter(SpanExporter):
    """Exports spans as OTLP/HTTP protobuf to ``endpoint`` (``http`` or ``https``)."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        gzip_body: bool = False,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"OTLP endpoint {endpoint!r} is not an http(s) URL")
        self.endpoint = endpoint
        self.timeout = timeout
        self.gzip_body = gzip_body
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._headers = {
            **{k.lower(): v for k, v in (headers or {}).items()},
            "content-type": "application/x-protobuf",
            "user-agent": "nativekit-otlp",
        }
        if gzip_body:
            self._headers["content-encoding"] = "gzip"
        self._connection: http.client.HTTPConnection | None = None
        self._shutdown = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        """Encode and send one batch; SUCCESS once the receiver answered 2xx."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            body = encode_spans(spans)
        except Exception:  # a span we cannot encode must not stop the export thread
            _log.exception("otlp.encode.failed")
            return SpanExportResult.FAILURE
        if self.gzip_body:
            body = gzip.compress(body)
        deadline = time.monotonic() + self.timeout
        delay = 1.0
        while True:
            status, reason = self._post(body, deadline)
            if 200 <= status < 300:
                return SpanExportResult.SUCCESS
            retryable = status == 0 or status in _RETRY
            if not retryable or self._shutdown or time.monotonic() + delay > deadline:
                _log.warning(
                    "otlp.export.failed endpoint=%s status=%s reason=%s spans=%d",
                    self.endpoint, status, reason, len(spans),
                )  # fmt: skip
                return SpanExportResult.FAILURE
            time.sleep(delay)
            delay *= 2

    def _post(self, body: bytes, deadline: float) -> tuple[int, str]:
        """(status, reason) of one POST; status 0 when the connection failed."""
        timeout = max(0.1, deadline - time.monotonic())
        try:
            connection = self._connection
            if connection is None:
                factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                connection = self._connection = factory(self._host, self._port, timeout=timeout)
            else:
                connection.timeout = timeout
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
            connection.request("POST", self._path, body=body, headers=self._headers)
            response = connection.getresponse()
            response.read()
            return response.status, response.reason
        except (OSError, http.client.HTTPException) as exc:
            self._close()
            return 0, str(exc) or type(exc).__name__

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def shutdown(self) -> None:
        """Close the connection; later exports fail."""
        self._shutdown = True
        self._close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here (the batch processor buffers)."""
        return True
