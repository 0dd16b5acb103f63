"""Test seam: what nativekit's own tests use, for your tests.

``serve(app)`` runs an ASGI app's lifespan (startup, then shutdown) around an
``httpx.AsyncClient`` talking to it in-process (requires ``httpx``);
``MessagingHarness`` delivers messages to consumers; ``run_saga`` and
``crash_matrix`` run sagas and inject crashes at step boundaries;
``CommandNetwork`` plays the relay, broker and participants of command steps.
``python -m nativekit.testing.servers -- CMD`` runs CMD with Redis and Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message

from nativekit.backends._select import shared_memory_broker
from nativekit.messaging import MemoryBroker
from nativekit.testing._command_network import CommandNetwork, Participant
from nativekit.testing._messaging import Delivery, MessagingHarness
from nativekit.testing._sagas import (
    CrashCase,
    CrashMatrixReport,
    InjectedFailure,
    ManualClock,
    crash_matrix,
    run_saga,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "capture_logs",
    "CommandNetwork",
    "crash_matrix",
    "CrashCase",
    "CrashMatrixReport",
    "Delivery",
    "InjectedFailure",
    "lifespan",
    "LifespanError",
    "ManualClock",
    "memory_broker",
    "MessagingHarness",
    "Participant",
    "run_saga",
    "serve",
]


class LifespanError(RuntimeError):
    """The app reported a failed startup or shutdown."""


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s lifespan protocol: startup on enter, shutdown on exit."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await to_app.get()

    async def send(message: Message) -> None:
        await from_app.put(message)

    task: asyncio.Task[None] = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    )
    await to_app.put({"type": "lifespan.startup"})
    reply = await _next(from_app, task)
    if reply["type"] != "lifespan.startup.complete":
        raise LifespanError(reply.get("message", "startup failed"))
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        reply = await _next(from_app, task)
        await task
        if reply["type"] != "lifespan.shutdown.complete":
            raise LifespanError(reply.get("message", "shutdown failed"))


async def _next(queue: asyncio.Queue[Message], task: asyncio.Task[Any]) -> Message:
    getter = asyncio.ensure_future(queue.get())
    done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    task.result()  # re-raises what the app raised
    raise LifespanError("the app returned from lifespan without answering")


@asynccontextmanager
async def serve(
    app: Any, *, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app`` (a Service, ServiceGroup or ASGI app) and yield a client for it."""
    import httpx

    asgi: ASGIApp = app.app if hasattr(app, "app") and hasattr(app, "routes") else app
    async with lifespan(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Collect the event dicts logged inside the block (after redaction, before rendering).

    nativekit's logging must be configured (it is once a Service's app is built).
    """
    from nativekit._telemetry.logging import captures

    sink: list[dict[str, Any]] = []
    captures.append(sink)
    try:
        yield sink
    finally:
        captures.remove(sink)


def memory_broker() -> MemoryBroker:
    """The process-wide broker of services on ``NATIVEKIT_KAFKA_URL=memory://``: read
    what they published (``records(topic)``), e.g. dead letters."""
    return shared_memory_broker()
