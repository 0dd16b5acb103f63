"""Recovery and lease renewal: the background loops of a saga runtime, and its readiness.

Every replica claims sagas whose lease expired (their runner died or handed them
over) and continues them; it renews the leases of its own runs, and cancels a run
whose saga another runner took. Both loops are supervised: an unexpected error is
logged, counted and the loop restarted.

Startup never waits on an unreachable store: when the definitions cannot be checked
within ``DEFINITIONS_TIMEOUT`` the check goes on in the background, the loops start
once it passed, and ``sagas:definitions`` fails ``/readyz`` and ``/startupz`` until
then (or for good, with the reason, when live instances need a missing definition).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from nativekit._health import CheckResult, Status
from nativekit._supervisor import Supervisor
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.saga._define.definition import Saga
from nativekit.saga._run.registry import SagaRegistry
from nativekit.saga._run.runner import Run
from nativekit.saga._run.telemetry import CENSUS_INTERVAL, SagaMetrics
from nativekit.saga._store.model import SagaRecord, Transition
from nativekit.saga._store.store import SagaStore, definition_key

#: Sagas one recovery pass claims at most.
RECOVERY_BATCH = 100
#: Seconds startup waits for the store to check definitions before going on without it.
DEFINITIONS_TIMEOUT = 0.5


class RecoveryLoops(SagaRegistry):
    """The recovery and renewal loops of a runtime (``SagaRuntime`` sets the state)."""

    service: str
    lease: float
    recovery_interval: float
    backlog_warn: int
    supervisor: Supervisor
    metrics: SagaMetrics | None
    runs: dict[str, tuple[Run, asyncio.Task[SagaRecord | None]]]
    started: bool
    _loops: list[asyncio.Task[None]]
    _stopping: asyncio.Event
    #: None once the definitions were checked, else why they were not (yet)
    _unchecked: str | None = None
    _checking: asyncio.Task[None] | None = None

    @property
    def store(self) -> SagaStore:
        """Where the instances live."""
        raise NotImplementedError

    @property
    def log(self) -> Any:
        """The runtime's logger."""
        raise NotImplementedError

    def spawn(self, saga: Saga[Any], record: SagaRecord, token: str) -> Run:
        """Run ``record`` in the background from where it stands."""
        raise NotImplementedError

    async def stop_wakers(self) -> None:
        """Cancel pending local wake-ups of parked sagas."""

    def declare(self, saga: Saga[Any], *, legacy: bool = False) -> None:
        """Register ``saga`` (see :meth:`SagaRegistry.declare`); the first saga declared
        after startup starts the recovery and renewal loops."""
        super().declare(saga, legacy=legacy)
        if not legacy and self.started and not self._loops and self._checking is None:
            self._start_loops()

    @property
    def in_use(self) -> bool:
        """True once a saga is registered (a service without sagas runs no saga loops)."""
        return bool(self.sagas or self._legacy)

    async def startup(self) -> None:
        """Check definitions against live instances, then start recovery and renewal loops;
        with the store unreachable, both happen in the background (see the module doc)."""
        self._check_steps()
        self.started = True
        self._stopping = asyncio.Event()
        self._unchecked = None
        if not self.in_use:
            return
        try:
            await asyncio.wait_for(self.check_definitions(self.store), DEFINITIONS_TIMEOUT)
        except (BackendUnavailable, TimeoutError) as exc:
            self._unchecked = f"waiting for the saga store to check definitions ({exc!r})"
            self.log.warning("saga.definitions.deferred", error=repr(exc))
            self._checking = self.supervisor.spawn("saga-definitions", self._check_later)
            return
        self._start_loops()

    async def _check_later(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                await self.check_definitions(self.store)
            except BackendUnavailable as exc:
                self._unchecked = f"waiting for the saga store to check definitions ({exc!r})"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 2.0)
                continue
            except ConfigError as exc:  # the process is serving: it stays unready, saying why
                self._unchecked = str(exc)
                self.log.error("saga.definitions.refused", error=str(exc))
                return
            self._unchecked = None
            self.log.info("saga.definitions.checked")
            self._start_loops()
            return

    def definitions_check(self) -> CheckResult | None:
        """For ``/startupz``: None once the definitions were checked, else why not."""
        if self._unchecked is None:
            return None
        return CheckResult("fail", self._unchecked)

    async def definitions_readiness(self) -> CheckResult:
        """Readiness check: fails until the definitions were checked against the store."""
        return self.definitions_check() or CheckResult()

    def _start_loops(self) -> None:
        self._loops = [
            self._supervise("saga-recovery", self.recovery_interval, self.recover),
            self._supervise("saga-renewal", self.lease / 3, self.renew),
            self._supervise("saga-census", CENSUS_INTERVAL, self.census),
        ]
        self.log.info("saga.runtime.started", sagas=sorted(self.sagas))

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop the loops, let runs finish for ``grace`` seconds, then hand the rest over."""
        self.started = False
        # loops finish their pass: cancelling one mid-call would leak its Redis connection
        self._stopping.set()
        if self._checking is not None:
            checking, self._checking = self._checking, None
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=5)
            for loop in pending:
                loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        await self.stop_wakers()
        tasks = [task for _, task in self.runs.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        leftover = list(self.runs.values())
        for _, task in leftover:
            task.cancel()
        await asyncio.gather(*(t for _, t in leftover), return_exceptions=True)
        for run, _ in leftover:
            await self._release(run)
        self.log.info("saga.runtime.stopped", handed_over=len(leftover))

    async def _release(self, run: Run) -> None:

        if run.creating is not None:
            # Cancelled before its create returned, and start() was told it was not
            # stored: a flush now would create it, leased to this stopping runner.
            return
        try:
            run.pending = Transition(release=True)
            await run.flush()
        except Exception as exc:  # the lease then expires on its own
            self.log.warning("saga.release.failed", saga_id=run.record.saga_id, error=repr(exc))

    def _supervise(
        self, task: str, interval: float, action: Callable[[], Any]
    ) -> asyncio.Task[None]:
        return self.supervisor.spawn(
            task,
            lambda: self._every(interval, action),
            backoff=min(interval, 1.0),
            backoff_max=interval,
        )

    async def _every(self, interval: float, action: Callable[[], Any]) -> None:
        """Run ``action`` every ``interval`` seconds until stopping; an error other than
        an unreachable store ends the loop (its supervisor restarts it)."""
        while not self._stopping.is_set():
            try:
                await action()
            except BackendUnavailable as exc:
                self.log.warning("saga.background.failed", action=action.__name__, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def recover(self) -> int:
        """Claim instances whose lease expired and continue them; returns how many."""
        records = await self.store.claim_expired(
            list(self.definitions),
            lambda: uuid.uuid4().hex,
            lease=self.lease,
            limit=RECOVERY_BATCH,
        )
        definitions = self.definitions
        for record in records:
            local = self.runs.get(record.saga_id)
            # our own run lost its lease: it is fenced now. A run still creating the saga
            # (a start() of an id that exists) finds it stored and ends on its own; a
            # cancel would fail that start() with "stopped before it was stored".
            if local is not None and local[0].creating is None:
                local[1].cancel()
            saga = definitions[definition_key(record.name, record.definition)]
            self.log.info("saga.recovered", saga=record.name, saga_id=record.saga_id)
            if self.metrics is not None:
                self.metrics.recovered.labels(self.service, record.name).inc()
            self.spawn(saga, record, record.token or "")
        return len(records)

    async def renew(self) -> None:
        """Extend the leases of local runs; a run whose saga another runner took is cancelled."""
        runs = [(run, task) for run, task in self.runs.values() if run.creating is None]
        if not runs:
            return
        renewed = await self.store.renew(
            [(run.record.saga_id, run.token) for run, _ in runs], lease=self.lease
        )
        for (run, task), ok in zip(runs, renewed, strict=True):
            if ok or task.done():
                continue
            # refused: the run may just have finished (its lease released) - check the owner
            stored = await self.store.get(run.record.saga_id)
            if stored is not None and stored.status.active and stored.token != run.token:
                self.log.warning("saga.lease.lost", saga_id=run.record.saga_id)
                task.cancel()

    async def census(self) -> None:
        """Set ``nativekit_sagas_stored`` from the store's counts of unfinished instances
        (and create the counters of sagas declared since, at 0)."""
        if self.metrics is None or not self.sagas:
            return
        for saga in self.sagas.values():
            self.metrics.declare(saga.name, [step.name for step in saga.steps])
        stored = self.metrics.stored
        for (name, status), count in (await self.store.counts(list(self.sagas))).items():
            stored.labels(self.service, name, status.value).set(count)

    async def readiness(self) -> CheckResult:
        """Readiness check: warn when the recovery backlog exceeds ``backlog_warn``, fail
        while the recovery or renewal loop keeps failing."""
        self.supervisor.check("saga-")
        backlog = await self.store.backlog()
        status: Status = "warn" if backlog > self.backlog_warn else "pass"
        output = (
            f"{backlog} saga(s) wait for recovery (more than {self.backlog_warn})"
            if status == "warn"
            else None
        )
        return CheckResult(status, output, observed_value=backlog, observed_unit="sagas")
