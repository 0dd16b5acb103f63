"""The shop's Redis stores use redis-py directly: its connection errors and timeouts
become nativekit's ``BackendUnavailable``, so a route answers 503 (retry) and a
consumer waits the outage out instead of dead-lettering the message."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nativekit

T = TypeVar("T", bound=type)


def redis_outage_is_unavailable(cls: T) -> T:
    """Class decorator: every public ``async def`` of ``cls`` raises ``BackendUnavailable``
    when Redis cannot be reached or does not answer in time."""
    import redis.exceptions

    errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

    def wrap(func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def method(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except errors as exc:
                raise nativekit.BackendUnavailable(f"shop Redis store: {exc}") from exc

        return method

    for name, func in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(func):
            setattr(cls, name, wrap(func))
    return cls
