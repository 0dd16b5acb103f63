"""Exceptions raised by nativekit.

The hierarchy::

    NativekitError
    ├── ConfigError (ValueError)            wrong settings or wrong use of a decorator
    ├── BackendUnavailable (ConnectionError) Redis/Kafka unreachable or timing out
    └── HTTPError                          an HTTP error a handler raises on purpose

Components add their own subclasses of ``NativekitError`` next to their code.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any


class NativekitError(Exception):
    """Root of every exception nativekit raises."""


class ConfigError(NativekitError, ValueError):
    """Settings or a decorator were used wrongly; the message says what to fix."""


class BackendUnavailable(NativekitError, ConnectionError):
    """A backend (Redis, Kafka) could not be reached or did not answer in time."""


class HTTPError(NativekitError):
    """Raise from a route handler to answer with a problem+json error.

    Args:
        status: HTTP status code (4xx or 5xx).
        detail: human-readable explanation specific to this occurrence.
        title: short summary of the problem type; defaults to the status phrase.
        type: URI identifying the problem type; defaults to ``about:blank``.
        extra: additional members of the problem object.
        headers: response headers to add (for example ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ConfigError(f"HTTPError status must be 4xx or 5xx, got {status}.")
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = type
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(f"{status} {self.title}" + (f": {detail}" if detail else ""))
