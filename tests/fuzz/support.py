"""Fuzz helpers: one event loop per module that hosts the service between examples."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, settings

from nativekit.testing import serve

T = TypeVar("T")

#: Bounded examples with a deadline, so the fuzz suite stays well under 30 s;
#: NATIVEKIT_FUZZ_EXAMPLES=2000 searches longer.
BOUNDED = settings(
    max_examples=int(os.environ.get("NATIVEKIT_FUZZ_EXAMPLES", "60")),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)


class Host:
    """Runs coroutines on one loop that stays alive between hypothesis examples."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.stack = AsyncExitStack()

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the host loop and return its result."""

        async def call() -> T:
            return await fn()

        return self.runner.run(call())

    def enter(self, cm: Any) -> Any:
        """Enter an async context manager that stays open until the host closes."""
        return self.run(lambda: self.stack.enter_async_context(cm))

    def close(self) -> None:
        """Leave every entered context and close the loop."""
        try:
            self.run(self.stack.aclose)
        finally:
            self.runner.close()


@contextmanager
def served(app: Any) -> Iterator[tuple[Host, httpx.AsyncClient]]:
    """``app`` started on a host loop, with an in-process client for it."""
    host = Host()
    try:
        client: httpx.AsyncClient = host.enter(serve(app))
        yield host, client
    finally:
        host.close()


def assert_problem(response: httpx.Response, *allowed: int) -> None:
    """``response`` is a success in ``allowed`` or a 4xx problem+json, never a 5xx."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code in allowed:
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), (
        response.headers.get("content-type"),
        response.text,
    )
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["title"] and isinstance(problem["title"], str)


def slash_redirect(response: httpx.Response, segment: str) -> bool:
    """Whether ``response`` is Starlette's redirect of a path whose segment ends in "/"
    (``%2F`` is decoded before routing, so it reads as a trailing slash)."""
    if not response.is_redirect:
        return False
    assert response.status_code == 307 and segment.endswith("/"), (response, segment)
    return True
