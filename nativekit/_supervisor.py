"""Supervised background tasks: restarted after an unexpected error, logged and counted.

A long-running task of a capability (a consumer's fetch or commit loop, saga
recovery, the outbox relay) must not end silently: an error nobody expected
would leave the work it does undone while readiness still passes. A
:class:`Supervisor` runs each such task, and when one raises it logs
``background_task.restarted`` with the error, counts it in
``nativekit_background_task_restarts_total{service,task}`` and starts it again
after a backoff. A task that keeps failing (``CRASH_LOOP`` restarts in a row,
each within ``HEALTHY_RUN`` seconds of the previous start) fails readiness
through :meth:`Supervisor.check` until it ran that long without failing.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from nativekit._telemetry.logging import get_logger
from nativekit.errors import BackendUnavailable, NativekitError

#: Restarts in a row after which a task counts as crash-looping (readiness fails).
CRASH_LOOP = 3
#: Seconds a task must run without failing for its restarts to be forgiven.
HEALTHY_RUN = 30.0

_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def restarts_counter(registry: CollectorRegistry) -> Counter:
    """``nativekit_background_task_restarts_total`` on ``registry`` (one per registry)."""
    counter = _counters.get(registry)
    if counter is None:
        counter = _counters[registry] = Counter(
            "nativekit_background_task_restarts_total",
            "Background tasks restarted after an unexpected error, by task.",
            ["service", "task"],
            registry=registry,
        )
    return counter


@dataclass
class _Failures:
    count: int = 0
    last_error: str = ""
    last_at: float = 0.0


class Supervisor:
    """Runs background tasks of one service, restarting them after unexpected errors.

    Args:
        service: service name (logs, the ``service`` label).
        registry: where the restart counter lives; None counts only in :attr:`restarts`.
    """

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self._counter = restarts_counter(registry) if registry is not None else None
        self._failures: dict[str, _Failures] = {}
        #: Restarts per task since this supervisor was created.
        self.restarts: dict[str, int] = {}

    def spawn(
        self,
        task: str,
        run: Callable[[], Awaitable[None]],
        *,
        backoff: float = 0.1,
        backoff_max: float = 5.0,
    ) -> asyncio.Task[None]:
        """Run ``run()`` as the background task named ``task``; start it again (after
        ``backoff`` seconds, doubling up to ``backoff_max``) whenever it raises."""
        if self._counter is not None:  # from 0, so increase() sees the first restart
            self._counter.labels(self.service, task)
        return asyncio.create_task(self._supervise(task, run, backoff, backoff_max), name=task)

    async def _supervise(
        self, task: str, run: Callable[[], Awaitable[None]], backoff: float, backoff_max: float
    ) -> None:
        delay = backoff
        while True:
            started = time.monotonic()
            try:
                await run()
                return
            except Exception as exc:
                failures = self._failures.setdefault(task, _Failures())
                now = time.monotonic()
                if now - started >= HEALTHY_RUN:
                    failures.count, delay = 0, backoff
                failures.count += 1
                failures.last_error = f"{type(exc).__name__}: {exc}"
                failures.last_at = now
                self.restarts[task] = self.restarts.get(task, 0) + 1
                if self._counter is not None:
                    self._counter.labels(self.service, task).inc()
                get_logger(service=self.service, logger="nativekit._supervisor").error(
                    "background_task.restarted",
                    task=task,
                    error=failures.last_error,
                    in_a_row=failures.count,
                    delay_s=delay,
                    exc_info=not isinstance(exc, BackendUnavailable),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max)

    def crash_looping(self, prefix: str = "") -> str | None:
        """What the tasks (named ``prefix…``) failing again and again last raised, or None."""
        now = time.monotonic()
        looping = [
            f"{task} restarted {f.count} times in a row (last error: {f.last_error})"
            for task, f in self._failures.items()
            if task.startswith(prefix) and f.count >= CRASH_LOOP and now - f.last_at < HEALTHY_RUN
        ]
        return "; ".join(looping) or None

    def check(self, prefix: str = "") -> None:
        """Raise :class:`NativekitError` while a supervised task (named ``prefix…``) is
        crash-looping."""
        looping = self.crash_looping(prefix)
        if looping is not None:
            raise NativekitError(f"a background task keeps failing: {looping}")
