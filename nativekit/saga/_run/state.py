"""The state of one saga run: its environment, what it persists, how it is created.

The rule that makes crashes harmless: a change is written (fenced by the
lease token) before the next side effect starts. Changes that fall between two
side effects are coalesced into one write, so a step costs one round trip:
"step N completed" and "step N+1 started" are the same write.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nativekit._telemetry.logging import get_logger
from nativekit.errors import BackendUnavailable
from nativekit.saga._define.definition import Saga
from nativekit.saga._define.step import Direction, SagaContext, Step
from nativekit.saga._errors import SagaStoreUnavailable
from nativekit.saga._run.telemetry import SagaMetrics
from nativekit.saga._store.model import (
    SagaRecord,
    StepRecord,
    Transition,
    Waiting,
)
from nativekit.saga._store.store import SagaStore

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from nativekit._transaction import TransactionFactory, TransactionScope
    from nativekit.saga._define.command_steps import Outcome


class Hooks(Protocol):
    """Called around every step attempt; the test seam injects crashes and failures here."""

    async def before(self, record: SagaRecord, step: str, direction: Direction) -> None:
        """After the attempt's start is persisted, before the step function runs."""

    async def after(self, record: SagaRecord, step: str, direction: Direction) -> None:
        """After the step function returned, before its completion is persisted."""


class NotCreated(Exception):
    """The saga id existed already when this run tried to create it: the run does nothing."""


@dataclass
class RunEnv:
    """What every run of a runtime shares."""

    store: SagaStore
    service: str
    lease: float
    retention: float
    metrics: SagaMetrics | None
    tracer: Tracer | None
    hooks: Hooks | None = None
    clock: Callable[[], float] = time.time
    #: Interruptions of one step direction re-run before it fails (policy may override).
    max_interruptions: int = 3
    #: Command/reply steps, None when unused.
    commands: CommandSteps | None = None
    #: Starting and compensating child sagas (the runtime), None when unavailable.
    children: Children | None = None
    #: Makes the transaction a step gets as ``ctx.db`` (None without a database backend).
    transactions: TransactionFactory | None = None
    #: (saga, step, direction) whose last attempt used ``ctx.db`` through its statement
    #: methods: the write of such a step's start may also begin its transaction (shared by
    #: the runs of a runtime).
    db_steps: set[tuple[str, str, str]] = field(default_factory=set)


class Children(Protocol):
    """What a run asks of the runtime for child steps (``nativekit.saga._run.children``)."""

    async def start_child(
        self, saga: Any, data: Any, *, saga_id: str, parent: str, event: str, deadline: float | None
    ) -> None:
        """Start the child ``saga_id`` (nothing happens if it exists)."""

    async def settle(self, saga_id: str) -> SagaRecord | None:
        """Wait while the child runs in this process; its record once it ended, else None."""

    async def compensate_child(self, saga_id: str) -> SagaRecord:
        """Compensate a COMPLETED child (or let a compensating one finish); its end record."""

    async def notify_parent(self, record: SagaRecord) -> None:
        """A child ended: wake its parent (best effort; the parent also polls)."""


class CommandSteps(Protocol):
    """What a run asks of command/reply support (``nativekit.saga._run.commands``)."""

    def is_command(self, step: Step[Any, Any], direction: Direction) -> bool:
        """True when this direction of ``step`` sends a command instead of calling code."""

    def outcome(self, run: RunState, step: Step[Any, Any], direction: Direction) -> Outcome | None:
        """The reply (or deadline) the run was resumed with for this attempt, if any."""

    async def send(
        self, run: RunState, step: Step[Any, Any], direction: Direction, ctx: SagaContext[Any]
    ) -> None:
        """Persist the attempt with its command and the reply it waits for; raise Suspended."""

    def wake(self, saga_id: str) -> None:
        """Outbox entries of ``saga_id`` were just written."""

    def count_sent(self, run: RunState, step: str, direction: Direction) -> None:
        """A command of ``step`` was persisted (metrics)."""


@dataclass
class Wake:
    """Why one step of a run is parked: until when, and for which events."""

    at: float = math.inf
    events: list[str] = field(default_factory=list)
    direction: Direction = "forward"


class Suspended(BaseException):
    """The run ends here: a command step waits for its reply, or a step sleeps or waits for
    an event (its state persisted)."""


#: The run whose step is executing (``outbox_publish`` stages there).
current_run: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "nativekit_saga_run", default=None
)


def describe(exc: BaseException) -> str:
    """An error as stored with the step: ``Type: message``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RunState:
    """One runner's ownership of one saga instance: its record, lease token and pending
    changes (the runner adds attempts and driving on top)."""

    def __init__(self, env: RunEnv, saga: Saga[Any], record: SagaRecord, token: str) -> None:
        self.env = env
        self.saga = saga
        self.record = record
        self.token = token
        self.pending = Transition()
        self._log: Any = None
        #: The validated input (set by ``sagas.start``, else decoded from the record).
        self.data: Any = None
        self._results: dict[str, Any] | None = None
        #: Set by ``sagas.start``: the first flush creates the instance and resolves it.
        self.creating: Creating | None = None
        #: The command reply this run was resumed with: (reply token, outcome).
        self.reply: tuple[str, Outcome] | None = None
        #: Outbox entries staged by the executing attempt of each step, written when it
        #: completes (by step name: members of a parallel group run at once).
        self.staged: dict[str, list[str]] = {}
        #: Per (step, direction): an attempt of this run may have taken effect (it timed
        #: out, or raised an exception marked ``uncertain``), so the step stays uncertain.
        self.unknown: dict[tuple[str, str], bool] = {}
        #: The run ended because a command step now waits for its reply (state persisted).
        self.suspended = False
        #: Steps parked by ``ctx.sleep``/``ctx.wait_for`` during this run, not yet written.
        self.waits: dict[str, Wake] = {}
        #: Command members of a parallel group: commands built in this run (outbox entries
        #: and the reply wait, written when the group parks), and waits already stored
        #: that go on (no reply yet, deadline not passed).
        self.sent: dict[str, tuple[list[str], Waiting]] = {}
        self.held: dict[str, Waiting] = {}
        #: Count of durable waits reached per (step, direction) in the current attempt.
        self.ordinals: dict[tuple[str, str], int] = {}
        #: When the parked run wakes (epoch s), and whether an event may wake it sooner.
        self.wake_at: float | None = None
        self.woken_by_event = False
        #: The transaction of the last step run alone that used ``ctx.db``, still open: its
        #: completion is pending and the next write carries it, then commits (so "step N
        #: completed" and "step N+1 started" are one write here too).
        self.open_scope: TransactionScope | None = None
        #: Set before the write of a step's start: that write, ending ``open_scope``, also
        #: begins the step's transaction (``chained``, taken by the step's attempt).
        self.chain_next = False
        self.chained: TransactionScope | None = None
        #: Writes of one run never overlap (members of a group flush concurrently).
        self._writing = asyncio.Lock()
        #: Set once a write failed: the run ends, and no other member may act on it.
        self._broken: BaseException | None = None

    @property
    def log(self) -> Any:
        """Logger bound with service, saga and saga_id (bound on first use)."""
        if self._log is None:
            self._log = get_logger(
                service=self.env.service,
                logger="nativekit.saga",
                saga=self.saga.name,
                saga_id=self.record.saga_id,
            )
        return self._log

    # -- persistence ----------------------------------------------------------------

    async def flush(self) -> None:
        """Persist the pending changes (fenced by the lease token).

        Members of a parallel group flush concurrently: a flush that waited for the
        write in progress finds its changes taken by it when it staged them before that
        write began, and writes nothing more (that write is its write, and its failure
        is this flush's failure too).
        """
        staged = self.pending
        async with self._writing:
            if self.pending is staged:
                await self._flush()
            elif self._broken is not None:
                raise self._broken

    async def commit_with(self, scope: TransactionScope, stage: Callable[[], None]) -> None:
        """Stage a step's completion (``stage``) and write it in the step's transaction
        ``scope``, committed before another write of the run starts: a member of a group
        whose start that write took goes on only once it is committed."""
        async with self._writing:
            stage()
            try:
                with scope.joined():
                    await self._flush()
                await scope.commit()
            except BaseException as exc:
                self._broken = exc
                raise

    async def _flush(self) -> None:
        change, self.pending = self.pending, Transition()
        try:
            await self._write(change)
        except BaseException as exc:
            # the changes are gone with this write: a flush waiting for it must not go on
            self._broken = exc
            raise

    async def _write(self, change: Transition) -> None:
        chain, self.chain_next = self.chain_next, False
        if self.creating is not None:
            await self._create(self.creating)
            return
        scope, self.open_scope = self.open_scope, None
        if not change and scope is None:
            return
        record = self.record
        if scope is not None and chain:
            scope.chain()
        try:
            with scope.joined() if scope is not None else contextlib.nullcontext():
                await self.env.store.write(
                    record.saga_id,
                    self.token,
                    change,
                    current=record.status,
                    name=record.name,
                    definition=record.definition,
                    lease=self.env.lease,
                    retention=self.env.retention,
                )
            if scope is not None:
                await scope.commit()
                self.chained = scope.following()
        except BackendUnavailable as exc:  # e.g. a Redis failover: resumed after the lease
            raise SagaStoreUnavailable(str(exc)) from exc
        finally:
            if scope is not None:
                await scope.close()  # rolls back unless committed
        if change.status is not None:
            record.status = change.status
        if change.outbox and self.env.commands is not None:
            self.env.commands.wake(self.record.saga_id)

    async def _create(self, creating: Creating) -> None:
        try:
            stored, created = await self.env.store.create(
                self.record, token=self.token, lease=self.env.lease
            )
        except Exception as exc:
            self.creating = None
            creating.done.set_exception(exc)
            raise NotCreated from exc
        self.creating = None
        creating.done.set_result((stored, created))
        if not created:
            raise NotCreated
        self.log.info("saga.started")

    def wants_chain(self, step: Step[Any, Any], direction: Direction) -> bool:
        """Whether the write of ``step``'s start should begin its transaction: run alone,
        calling code that used ``ctx.db``'s statement methods in its last attempt."""
        return (
            step.group is None
            and self.env.transactions is not None
            and (self.saga.name, step.name, direction) in self.env.db_steps
        )

    def learn(self, step: Step[Any, Any], direction: Direction, scope: TransactionScope) -> None:
        """Remember whether this attempt of ``step`` used ``ctx.db``'s statement methods."""
        key = (self.saga.name, step.name, direction)
        if scope.statements_only:
            self.env.db_steps.add(key)
        else:
            self.env.db_steps.discard(key)

    async def drop_chained(self) -> None:
        """Roll back a transaction begun for a step that did not take it."""
        chained, self.chained = self.chained, None
        if chained is not None:
            await chained.close()

    def mark(self, name: str, step: StepRecord) -> None:
        """Stage ``step``'s record for the next write."""
        self.pending.fields[f"step:{name}"] = step.to_json()

    def _input(self) -> Any:
        if self.data is None:
            self.data = self.saga.validate_input(self.record.input)
        return self.data

    def _decoded_results(self) -> dict[str, Any]:
        if self._results is None:
            self._results = {}
            for name, raw in self.record.results.items():
                step = self.saga.get_step(name)
                self._results[name] = step.decode_result(raw) if step else json.loads(raw)
        return dict(self._results)


class Creating:
    """Turns a run's first flush into the atomic create of the instance."""

    def __init__(self) -> None:
        self.done: asyncio.Future[tuple[SagaRecord, bool]] = (
            asyncio.get_running_loop().create_future()
        )
