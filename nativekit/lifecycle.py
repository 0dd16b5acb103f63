"""Start and stop of a service's components, and the SIGTERM drain hook."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from nativekit.logging import get_logger

Hook = Callable[[], Awaitable[None]]


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a background ``task`` and wait until it ended.

    Its cancellation is expected and swallowed; a cancellation of the caller while it
    waits is not (``contextlib.suppress(CancelledError)`` would swallow both).
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class Component(Protocol):
    """Something a service starts on startup and stops on shutdown."""

    async def start(self) -> None:
        """Connect, spawn background tasks."""

    async def stop(self) -> None:
        """Drain, commit, close; must not raise for a component that never started."""


@dataclass
class _Entry:
    name: str
    start: Hook | None
    stop: Hook | None


class Lifecycle:
    """Components in registration order: started in order, stopped in reverse."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._entries: list[_Entry] = []
        self._started: list[_Entry] = []
        self.log = get_logger(service=service, component="lifecycle")

    def add(self, name: str, *, start: Hook | None = None, stop: Hook | None = None) -> None:
        """Register start/stop hooks under ``name``."""
        self._entries.append(_Entry(name, start, stop))

    def add_running(self, name: str, *, stop: Hook, start: Hook | None = None) -> None:
        """Register something already running (created after startup) so shutdown stops it;
        ``start`` runs only when the service starts again."""
        entry = _Entry(name, start, stop)
        self._entries.append(entry)
        self._started.append(entry)

    def add_component(self, name: str, component: Component) -> None:
        """Register an object with ``start()``/``stop()``."""
        self.add(name, start=component.start, stop=component.stop)

    async def start(self) -> None:
        """Start every entry; on a failure stop what started and re-raise."""
        for entry in self._entries:
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


def install_drain_signal(on_drain: Callable[[], None], delay: float) -> bool:
    """On SIGTERM, call ``on_drain`` at once and hand the signal on after ``delay`` seconds.

    The handler in place (uvicorn's) is what closes the listener; delaying it
    lets readiness fail while the load balancer still routes here. Returns
    False when no handler can be hooked (not the main thread, no server handler).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return False
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

    signal.signal(signal.SIGTERM, on_sigterm)
    return True
