"""``SagaRuntime`` (``svc.sagas``): starts, waits for, recovers and operates saga instances."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nativekit._telemetry.active import current_trace_id
from nativekit._telemetry.logging import get_logger
from nativekit.errors import ConfigError
from nativekit.saga._define.definition import Saga, seconds_of
from nativekit.saga._errors import LeaseLost, SagaNotFound, SagaStateError
from nativekit.saga._operator import actions as operations
from nativekit.saga._run.children import ChildRuns
from nativekit.saga._run.runner import Run
from nativekit.saga._run.state import Creating, Hooks, NotCreated, RunEnv
from nativekit.saga._run.telemetry import SagaMetrics
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus
from nativekit.saga._store.store import SagaStore

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from nativekit._transaction import TransactionFactory
    from nativekit.saga._run.commands import CommandDriver
from nativekit._supervisor import Supervisor

#: First poll of ``wait`` for a saga whose local run suspended on a command step; then
#: doubling up to 1 s. A reply consumed here wakes ``wait`` at once (``spawn``), so the
#: polls only notice a resumption by another replica: at 0.1 s nearly every saga of a
#: busy service paid a store read per command for nothing.
SUSPENDED_POLL = 0.5


@dataclass
class SagaHandle:
    """What ``sagas.start`` returns: the id, whether this call created it, and a way to wait."""

    saga_id: str
    name: str
    created: bool
    runtime: SagaRuntime

    async def wait(self, timeout: float | None = None) -> SagaRecord:  # noqa: ASYNC109
        """Wait until the saga is COMPLETED, COMPENSATED, FAILED or ABORTED."""
        return await self.runtime.wait(self.saga_id, timeout)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a future nobody awaits any more (no 'never retrieved')."""
    if not future.cancelled():
        future.exception()


class SagaRuntime(ChildRuns):
    """Runs the sagas of one service on a :class:`SagaStore`, with recovery across replicas.

    Args:
        service: service name (logs, metrics).
        store: where instances live.
        lease: seconds a runner's lease lasts; renewed every third of it.
        retention: seconds finished instances are kept.
        recovery_interval: seconds between recovery passes.
        backlog_warn: readiness warns when this many expired leases wait for recovery.
        metrics: metrics to record, or None.
        tracing: create spans per saga and step attempt.
        hooks: test seam called around step attempts.
        clock: time source for step timestamps.
        max_interruptions: times a step direction interrupted by a process stop is
            re-run before it fails (a step policy may override it).
        supervisor: restarts the recovery and renewal loops after an unexpected error.
        local_wake: resume sagas parked here on a timer due within minutes from this
            replica when it is due (recovery of any replica resumes them otherwise).
        transactions: gives the factory of the transactions steps get as ``ctx.db`` (None
            without a database backend); called once, when the first run needs it.
    """

    def __init__(
        self,
        service: str,
        store: SagaStore | Callable[[], SagaStore],
        *,
        lease: float = 30.0,
        retention: float = 7 * 86400.0,
        recovery_interval: float = 5.0,
        backlog_warn: int = 100,
        metrics: SagaMetrics | None = None,
        tracing: bool = True,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
        max_interruptions: int = 3,
        supervisor: Supervisor | None = None,
        local_wake: bool = True,
        transactions: Callable[[], TransactionFactory | None] | None = None,
    ) -> None:
        self.service = service
        self.supervisor = supervisor or Supervisor(service)
        self._store = store if not callable(store) else None
        self._store_factory = store if callable(store) else None
        self.lease = lease
        self.retention = retention
        self.recovery_interval = recovery_interval
        self.backlog_warn = backlog_warn
        self.replica = uuid.uuid4().hex[:8]
        self._tracing = tracing
        self._tracer: tuple[object, Tracer | None] = (None, None)  # (provider, its tracer)
        self._env_args: dict[str, Any] = dict(
            service=service,
            lease=lease,
            retention=retention,
            metrics=metrics,
            hooks=hooks,
            clock=clock,
            max_interruptions=max_interruptions,
            db_steps=set(),
        )
        self.metrics = metrics
        self._transactions = transactions
        ChildRuns.__init__(self)
        self._wakers = set()
        self.clock = clock
        self._settling = set()
        self.local_wake = local_wake
        self.runs: dict[str, tuple[Run, asyncio.Task[SagaRecord | None]]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.started = False
        #: Command/reply support, set when wired.
        self.commands: CommandDriver | None = None
        self._spawned: dict[str, asyncio.Future[None]] = {}

    @property
    def log(self) -> Any:
        """A logger bound with service and replica (bound late, after logging is configured)."""
        return get_logger(service=self.service, logger="nativekit.saga", replica=self.replica)

    # -- registry ---------------------------------------------------------------------

    @property
    def store(self) -> SagaStore:
        """The saga store (created on first use)."""
        if self._store is None:
            if self._store_factory is None:  # pragma: no cover - constructor guarantees one
                raise ConfigError("SagaRuntime has no store")
            self._store = self._store_factory()
        return self._store

    @property
    def env(self) -> RunEnv:
        """Settings shared by every run."""
        return RunEnv(
            store=self.store,
            tracer=self._current_tracer(),
            commands=self.commands,
            children=self,
            transactions=self._transaction_factory(),
            **self._env_args,
        )

    def _transaction_factory(self) -> TransactionFactory | None:
        if self._transactions is None:
            return None
        factory = self._transactions()
        self._transactions = lambda: factory
        return factory

    def _current_tracer(self) -> Tracer | None:
        """The tracer of the installed provider; None while none is (spans would be no-ops)."""
        if not self._tracing:
            return None
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            return None
        if self._tracer[0] is not provider:
            from nativekit._telemetry.tracing import get_tracer

            self._tracer = (provider, get_tracer())
        return self._tracer[1]

    # -- starting and waiting -----------------------------------------------------------

    async def start(
        self,
        saga: Saga[Any] | str,
        data: Any,
        *,
        saga_id: str | None = None,
        deadline: float | timedelta | None = None,
    ) -> SagaHandle:
        """Validate ``data``, persist a new instance and run it in the background.

        If ``saga_id`` exists already, nothing runs: the handle refers to the
        existing instance (``created`` is False). Raises :class:`SagaInputError`
        for invalid input, before anything is stored. ``deadline`` (seconds or a
        ``timedelta``) overrides the saga's own for this instance.
        """
        definition = self.resolve(saga)
        limit = seconds_of(deadline, "deadline of sagas.start()") or definition.deadline
        if not definition.steps:
            raise ConfigError(f"Saga {definition.name!r} has no steps; add one with @saga.step().")
        value = definition.validate_input(data)
        now = self._env_args["clock"]()
        return await self.launch(
            definition, value, saga_id=saga_id, deadline=None if limit is None else now + limit
        )

    async def launch(
        self,
        definition: Saga[Any],
        value: Any,
        *,
        saga_id: str | None,
        deadline: float | None,
        parent: str | None = None,
        parent_event: str | None = None,
    ) -> SagaHandle:
        """Store and run a new instance of ``definition`` with validated input ``value``
        (``deadline`` in epoch seconds; ``parent``: the saga of a child step)."""
        if saga_id is not None and saga_id in self.runs:  # running here: it exists
            running = self.runs[saga_id][0]
            creating = running.creating
            if creating is not None and not creating.done.done():
                # a concurrent start is storing it: answer once it is stored, so a
                # get() right after this call finds the instance
                await asyncio.shield(creating.done)
            return SagaHandle(saga_id, running.saga.name, False, self)
        now = self._env_args["clock"]()
        record = SagaRecord(
            saga_id=saga_id or uuid.uuid4().hex,
            name=definition.name,
            definition=definition.definition_hash,
            status=SagaStatus.RUNNING,
            input=definition.encode_input(value),
            created_at=now,
            updated_at=now,
            trace_id=current_trace_id(),
            deadline=deadline,
            parent=parent,
            parent_event=parent_event,
        )
        creating = Creating()
        run = self.spawn(definition, record, uuid.uuid4().hex, creating=creating)
        run.data = value
        try:
            # shielded: cancelling this call (a client gone) must not cancel the future the
            # run resolves once the instance is stored; the run goes on and finishes it
            stored, created = await asyncio.shield(creating.done)
        except asyncio.CancelledError:
            creating.done.add_done_callback(_consume)
            raise
        if created and self.metrics is not None:
            self.metrics.count_started(definition.name)
        return SagaHandle(stored.saga_id, stored.name, created, self)

    def spawn(
        self, saga: Saga[Any], record: SagaRecord, token: str, *, creating: Creating | None = None
    ) -> Run:
        """Run ``record`` (leased to ``token``) in the background from where it stands."""
        run = Run(self.env, saga, record, token)
        if creating is not None:
            run.creating = creating
        task = asyncio.create_task(self._drive(run), name=f"saga:{record.saga_id}")
        self.runs[record.saga_id] = (run, task)
        waiter = self._spawned.pop(record.saga_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # a waiting saga resumed here: wake wait()
        return run

    async def _drive(self, run: Run) -> SagaRecord | None:
        saga_id = run.record.saga_id
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            record = await run.drive()
            if run.suspended and self.local_wake:
                self.after_park(run)
            return record
        except (NotCreated, LeaseLost):
            return None
        except Exception as exc:
            self.log.error("saga.run.crashed", saga_id=saga_id, error=repr(exc), exc_info=True)
            return None
        finally:
            if run.creating is not None and not run.creating.done.done():
                run.creating.done.set_exception(
                    SagaStateError(f"saga {saga_id!r} stopped before it was stored")
                )
            if self.metrics is not None:
                self.metrics.in_flight.dec()
            current = self.runs.get(saga_id)
            if current is not None and current[0] is run:
                del self.runs[saga_id]

    async def wait(self, saga_id: str, timeout: float | None = None) -> SagaRecord:  # noqa: ASYNC109
        """Wait until the instance is COMPLETED, COMPENSATED, FAILED or ABORTED.

        Raises :class:`TimeoutError` after ``timeout`` seconds (None: no limit)
        and :class:`SagaNotFound` for an unknown id. Works for instances run by
        any replica (it polls the store when the run is not local).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.02
        while True:
            status: SagaStatus | None = None
            local = self.runs.get(saga_id)
            if local is not None:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                finished = await asyncio.wait({local[1]}, timeout=remaining)
                if finished[0]:
                    if not local[0].record.status.active:
                        return local[0].record
                    if local[0].suspended:  # waits for a command reply: its state is known
                        status = local[0].record.status
                        # a reply consumed here resumes it here and wakes this wait at once;
                        # the polls below only notice a resumption on another replica
                        delay = max(delay, SUSPENDED_POLL)
            if status is None:  # poll the status only; read the record once it is final
                status = await self.store.status(saga_id)
                if status is None:
                    raise SagaNotFound(f"no saga instance with id {saga_id!r}")
                if not status.active:
                    return await self.get(saga_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"saga {saga_id!r} is still {status.value} after {timeout:g}s")
            if saga_id not in self.runs:
                pause = delay if deadline is None else min(delay, deadline - time.monotonic())
                waiter = self._spawned.setdefault(
                    saga_id, asyncio.get_running_loop().create_future()
                )
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(waiter), max(0.0, pause))
                finally:  # a cancelled wait (a client gone) must not leave its future behind
                    self._spawned.pop(saga_id, None)
                delay = min(delay * 2, 1.0)

    async def get(self, saga_id: str) -> SagaRecord:
        """The instance with its step history; raises :class:`SagaNotFound`."""
        record = await self.store.get(saga_id)
        if record is None:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        return record

    async def list(
        self,
        *,
        status: SagaStatus | str | None = None,
        name: str | None = None,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Instances by time in their status, oldest first, one page at a time."""
        if not 1 <= limit <= 1000:
            raise ConfigError(f"limit must be between 1 and 1000, got {limit}.")
        return await self.store.list(
            status=SagaStatus(status) if status is not None else None,
            name=name,
            older_than=older_than,
            limit=limit,
            cursor=cursor,
        )

    # -- operator actions ---------------------------------------------------------------

    async def retry(self, saga_id: str) -> SagaRecord:
        """Resume a FAILED or ABORTED saga forward, with a fresh policy for its failed step.

        Refused once compensation has undone a step (use :meth:`compensate`).
        """
        return await operations.retry(self, saga_id)

    async def compensate(self, saga_id: str) -> SagaRecord:
        """Roll a saga back: cancel a RUNNING one, resume a FAILED or ABORTED one."""
        return await operations.compensate(self, saga_id)

    async def abort(self, saga_id: str, reason: str = "aborted by an operator") -> SagaRecord:
        """Stop a saga where it is; nothing runs for it afterwards (no compensation)."""
        return await operations.abort(self, saga_id, reason)
