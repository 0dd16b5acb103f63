"""Start and stop of a service's components, and the SIGTERM drain hook."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import IntEnum
from types import FrameType
from typing import Any, Protocol

from nativekit._telemetry.logging import get_logger

Hook = Callable[[], Awaitable[None]]


#: Seconds ``cancel_and_wait`` waits before cancelling a task that is still running again.
CANCEL_AGAIN_AFTER = 1.0


async def cancel_and_wait(task: asyncio.Task[Any], *, again_after: float | None = None) -> None:
    """Cancel a background ``task`` and wait until it ended.

    Its cancellation is expected and swallowed; a cancellation of the caller while it
    waits is not (``contextlib.suppress(CancelledError)`` would swallow both). A task
    still running ``again_after`` seconds (default :data:`CANCEL_AGAIN_AFTER`) after
    the cancellation is cancelled again, and so on: on Python 3.11 a cancellation can
    be lost (``asyncio.wait_for`` returns the inner result when both arrive at once,
    CPython gh-86296, and redis-py runs every command send through ``wait_for`` when a
    socket timeout is set), and a loop that lost it would otherwise never end.
    """
    await cancel_all([task], again_after=again_after)
    if not task.cancelled():
        task.result()  # the task's own error, if it ended with one


async def cancel_all(
    tasks: Collection[asyncio.Task[Any]], *, again_after: float | None = None
) -> None:
    """Cancel ``tasks`` and wait until every one ended, cancelling again those still
    running ``again_after`` seconds later (see :func:`cancel_and_wait`). Their own errors
    are not raised; a cancellation of the caller is."""
    again = CANCEL_AGAIN_AFTER if again_after is None else again_after
    pending = set(tasks)
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=again)
        for task in pending:
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit


class Component(Protocol):
    """Something a service starts on startup and stops on shutdown."""

    async def start(self) -> None:
        """Connect, spawn background tasks."""

    async def stop(self) -> None:
        """Drain, commit, close; must not raise for a component that never started."""


class Phase(IntEnum):
    """When an entry starts: phases in this order, entries of a phase as registered.

    Stopping runs the reverse order, so the application's own hooks stop after
    the consumers and sagas that may call them, and before the backends close.
    """

    BACKENDS = 0  #: shared clients, the cache
    APPLICATION = 1  #: ``@svc.on_startup`` / ``on_shutdown`` hooks and added components
    CONSUMERS = 2  #: Kafka consumers and command handlers
    SAGAS = 3  #: saga recovery and lease renewal
    RELAY = 4  #: the outbox relay and the saga reply consumer


@dataclass
class _Entry:
    name: str
    start: Hook | None
    stop: Hook | None
    phase: Phase


class Lifecycle:
    """Entries started phase by phase (in registration order within one), stopped in reverse."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._entries: list[_Entry] = []
        self._started: list[_Entry] = []
        self.log = get_logger(service=service, component="lifecycle")

    def add(
        self,
        name: str,
        *,
        start: Hook | None = None,
        stop: Hook | None = None,
        phase: Phase = Phase.APPLICATION,
    ) -> None:
        """Register start/stop hooks under ``name`` in ``phase``."""
        self._entries.append(_Entry(name, start, stop, phase))

    def add_component(
        self, name: str, component: Component, *, phase: Phase = Phase.APPLICATION
    ) -> None:
        """Register an object with ``start()``/``stop()``."""
        self.add(name, start=component.start, stop=component.stop, phase=phase)

    async def start(self) -> None:
        """Start every entry; on a failure stop what started and re-raise."""
        if self._started:
            raise RuntimeError(f"service {self.service!r} is already started")
        for entry in sorted(self._entries, key=lambda e: e.phase):
            try:
                if entry.start is not None:
                    await entry.start()
            except BaseException:
                self.log.error("service.component.start_failed", component=entry.name)
                await self.stop()
                raise
            self._started.append(entry)

    async def stop(self) -> None:
        """Stop started entries in reverse order; an error is logged, the rest still stop."""
        while self._started:
            entry = self._started.pop()
            if entry.stop is None:
                continue
            try:
                await entry.stop()
            except Exception as exc:
                self.log.error(
                    "service.component.stop_failed", component=entry.name, error=repr(exc)
                )


def install_drain_signal(on_drain: Callable[[], None], delay: float) -> Callable[[], None] | None:
    """On SIGTERM, call ``on_drain`` at once and hand the signal on after ``delay`` seconds.

    The handler in place (uvicorn's) is what closes the listener; delaying it
    lets readiness fail while the load balancer still routes here. Returns a
    function that puts the previous handler back (a service started again must
    not wrap its own wrapper), or None when no handler can be hooked (not the
    main thread, no server handler).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return None
    loop = asyncio.get_running_loop()
    handed_on = False

    def hand_on(signum: int, frame: FrameType | None) -> None:
        previous_handler: Any = previous
        previous_handler(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal handed_on
        on_drain()
        if handed_on:
            hand_on(signum, frame)
            return
        handed_on = True
        loop.call_soon_threadsafe(loop.call_later, delay, hand_on, signum, frame)

    def restore() -> None:
        in_main = threading.current_thread() is threading.main_thread()
        if in_main and signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    signal.signal(signal.SIGTERM, on_sigterm)
    return restore
