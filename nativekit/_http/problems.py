"""HTTP errors rendered as problem+json (RFC 9457)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, cast

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from nativekit._telemetry.logging import get_logger
from nativekit.errors import BackendUnavailable, HTTPError

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build a problem+json response."""
    # extra members never replace the standard ones: a client reads ``status`` as the status
    body: dict[str, Any] = dict(extra) if extra else {}
    body.update(type=type, title=title or HTTPStatus(status).phrase, status=status)
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    return Response(
        json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers) if headers else None,
    )


def validation_problem(errors: Sequence[Mapping[str, Any]], instance: str) -> Response:
    """422 listing each invalid field with its location and message."""
    return problem_response(
        422,
        title="Request validation failed",
        detail="; ".join(f"{e['loc_str']}: {e['msg']}" for e in errors),
        instance=instance,
        extra={"errors": [{k: v for k, v in e.items() if k != "loc_str"} for e in errors]},
    )


class RequestValidationError(HTTPError):
    """Raised by typed routes when path, query, header or body fail validation."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, title="Request validation failed")
        self.errors = errors


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Render :class:`HTTPError` and its subclasses."""
    if isinstance(exc, RequestValidationError):
        return validation_problem(exc.errors, request.url.path)
    exc = cast(HTTPError, exc)
    return problem_response(
        exc.status,
        title=exc.title,
        detail=exc.detail,
        type=exc.type,
        instance=request.url.path,
        extra=exc.extra,
        headers=exc.headers,
    )


async def handle_starlette_http_error(request: Request, exc: Exception) -> Response:
    """Render Starlette's own 404/405/413 as problem+json."""
    exc = cast(StarletteHTTPException, exc)
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
    return problem_response(
        exc.status_code, detail=detail, instance=request.url.path, headers=exc.headers
    )


async def handle_backend_unavailable(request: Request, exc: Exception) -> Response:
    """A backend (Redis, Kafka) a route needed did not answer: 503 with ``Retry-After``
    (the client may retry; with an idempotency key, safely), the error in the log only."""
    error = cast(BackendUnavailable, exc)
    get_logger(logger="nativekit.http").warning(
        "http.backend_unavailable", path=request.url.path, error=str(error)
    )
    return problem_response(
        503,
        detail="A backend this request needs is unavailable; retry later.",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    """Answer an unhandled exception with a generic 500; details go to the log only."""
    return problem_response(
        500,
        detail="The server could not complete the request; it has been logged.",
        instance=request.url.path,
    )
