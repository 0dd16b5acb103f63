"""Helpers of :class:`RedisSagaStore`: error translation and the field encodings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.exceptions

from nativekit.backends.redis._client import UNAVAILABLE_ERRORS
from nativekit.errors import BackendUnavailable


def _unavailable(operation: str, exc: BaseException) -> BackendUnavailable:
    hint = " Is NATIVEKIT_REDIS_URL right and the server up?"
    return BackendUnavailable(
        f"Redis saga store failed {operation}: {exc}."
        + (hint if isinstance(exc, UNAVAILABLE_ERRORS) else "")
    )


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise _unavailable(operation, exc) from exc
    except redis.exceptions.RedisError as exc:
        raise _unavailable(operation, exc) from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _blob(fields: dict[str, str]) -> str:
    """Fields as one ``k\0v\0…`` argument (JSON and names never hold a NUL)."""
    if not fields:
        return ""
    parts: list[str] = []
    for key, value in fields.items():
        parts += (key, value.replace("\0", "\\0"))
    return "\0".join(parts) + "\0"


def _fields(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = [_text(v) for v in raw]
    return dict(zip(items[::2], items[1::2], strict=True))
