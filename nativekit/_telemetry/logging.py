"""structlog configuration: JSON lines or console, stdlib loggers routed through it.

Every line carries ``timestamp``, ``level``, ``service`` and ``event``; inside a
span also ``trace_id``/``span_id``; inside a request ``request_id``. Values
that look like credentials (authorization headers, cookies, passwords, URLs
with a password) are redacted before rendering.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
import structlog.tracebacks
from structlog.types import EventDict, Processor, WrappedLogger

from nativekit.settings import Settings

#: Per-request or per-message context (request_id, service) added to every line.
log_context: ContextVar[dict[str, Any] | None] = ContextVar("nativekit_log_context", default=None)

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "x-api-key",
    }
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@")
_configured: dict[str, Any] = {}
#: Lists receiving a copy of every event dict (see nativekit.testing.capture_logs).
captures: list[list[dict[str, Any]]] = []


class _StdoutLogger:
    """Writes each rendered line to the current ``sys.stdout`` and flushes it.

    Flushing per line keeps logs when the process dies by signal; looking up
    ``sys.stdout`` per call keeps output redirection (and pytest capture) working.
    """

    def msg(self, message: str) -> None:
        out = sys.stdout
        out.write(message + "\n")
        out.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


_STDOUT_LOGGER = _StdoutLogger()


def _stdout_logger_factory(*args: Any) -> _StdoutLogger:
    return _STDOUT_LOGGER


def get_logger(**context: Any) -> Any:
    """A structlog logger bound with ``context``, resolved lazily on first use.

    Lazy, so loggers created at import time (before :func:`configure_logging`)
    still use the configured processors. A ``logger`` key (structlog reserves
    that name) is logged as ``component``.
    """
    if "logger" in context:
        context["component"] = context.pop("logger")
    return structlog.get_logger(**context)


def _add_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    ctx = log_context.get()
    if ctx:
        for key, value in ctx.items():
            event.setdefault(key, value)
    default_service = _configured.get("service")
    if default_service is not None:
        event.setdefault("service", default_service)
    return event


# Keys nativekit itself puts on lines; never secrets, so redaction skips lowering them.
_PLAIN_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "service",
        "logger",
        "component",
        "request_id",
        "trace_id",
        "span_id",
        "method",
        "route",
        "path",
        "status",
        "duration_ms",
    }
)


def _merge_contextvars(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """structlog's ``merge_contextvars`` (its public processor)."""
    return structlog.contextvars.merge_contextvars(logger, method, event)


def _timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """ISO 8601 UTC timestamp, as ``TimeStamper(fmt="iso", utc=True)`` writes it."""
    event["timestamp"] = timestamp_text()
    return event


def timestamp_text() -> str:
    """Now as ``TimeStamper(fmt="iso", utc=True)`` writes it; the date and time up to the
    second are formatted once per second."""
    now = time.time()
    second = int(now)
    cached_second, prefix = _stamp_cache[0]
    if cached_second != second:
        prefix = datetime.datetime.fromtimestamp(second, tz=datetime.UTC).isoformat()[:19]
        _stamp_cache[0] = (second, prefix)
    micro = int((now - second) * 1_000_000)
    return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"


_stamp_cache: list[tuple[int, str]] = [(-1, "")]


def _add_trace(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    ids = trace_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, or None outside a valid one."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
    return None


def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Processor: mask credentials in keys and in URL-like string values."""
    _redact_mapping(event)
    return event


def _redact_mapping(mapping: MutableMapping[str, Any]) -> None:
    for key, value in mapping.items():
        if value is None:
            continue
        # the keys every line carries are never secret: skip lowering them
        if key not in _PLAIN_KEYS and key.lower() in _SECRET_KEYS:
            mapping[key] = "[REDACTED]"
        elif isinstance(value, str):
            if "@" in value and "://" in value:
                mapping[key] = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", value)
        elif isinstance(value, MutableMapping):
            _redact_mapping(value)


def _json_dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps`` for JSONRenderer, reusing one encoder per ``default`` function.

    ``json.dumps(obj, default=f)`` builds a new encoder on every call; the output
    of a reused one is the same.
    """
    default = kw.pop("default", None)
    if kw:
        return json.dumps(obj, default=default, **kw)
    encoder = _encoders.get(default)
    if encoder is None:
        encoder = _encoders[default] = json.JSONEncoder(default=default).encode
    return encoder(obj)


_encoders: dict[Any, Callable[[Any], str]] = {}


def _tee(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for sink in captures:
        sink.append(dict(event))
    return event


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level maps them


def _enrich(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """The shared processors in one call, same result in the same key order: structlog's
    context variables, :data:`log_context`, the level, the timestamp, the trace ids,
    redaction, the capture sinks (each step is the processor of that name above)."""
    event = structlog.contextvars.merge_contextvars(logger, method, event)
    _add_context(logger, method, event)
    event["level"] = _LEVEL_NAMES.get(method, method)
    _timestamp(logger, method, event)
    _add_trace(logger, method, event)
    _redact_mapping(event)
    if captures:
        _tee(logger, method, event)
    return event


def _shared_processors() -> list[Processor]:
    return [_enrich]


def configure_logging(settings: Settings, service: str, *, force: bool = False) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    if _configured and not force:
        return
    fmt = settings.resolved_log_format
    level = logging.getLevelName(settings.telemetry.log_level)
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
        exc_processors: list[Processor] = [
            # no locals: they may hold request bodies or secrets
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        exc_processors = []
    processors = [*_shared_processors(), *exc_processors, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stdout_logger_factory,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exc_processors,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "aiokafka", "redis"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
    # nativekit writes its own access line per request, with the route template.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True
    # the access line's shortcut checks the pipeline is still this one (_telemetry/access.py)
    _configured.update(service=service, format=fmt, level=level, processors=processors)
    for old, new in settings.deprecated_variables:
        get_logger(service=service).warning("settings.variable.deprecated", variable=old, use=new)


def reset_logging() -> None:
    """Forget the configuration so the next :func:`configure_logging` applies (tests)."""
    _configured.clear()
    structlog.reset_defaults()
