"""Test seam for sagas: run one on memory backends, and the crash matrix.

``crash_matrix`` runs a saga once per "crash point": before and after every
step and every compensation, for the success path and for a failure injected
at each step. At the crash point the process is simulated to die (nothing
more is written, the lease stays held); a second replica then claims the
expired lease and recovers the saga. Every run must end COMPLETED or
COMPENSATED, and your participants' ledger must show each effect applied once
per idempotency key::

    report = await crash_matrix(place_order, {"order_id": "o-1"}, ledger=lambda: payments.applied)
    assert report.cases  # one entry per crash point
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nativekit.saga._define.definition import Saga
from nativekit.saga._define.step import Direction
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.model import SagaRecord, SagaStatus
from nativekit.testing._parking import keep_time

if TYPE_CHECKING:
    from nativekit.testing._command_network import CommandNetwork

__all__ = ["CrashCase", "CrashMatrixReport", "InjectedFailure", "crash_matrix", "run_saga"]

Ledger = Callable[[], Mapping[str, int] | Awaitable[Mapping[str, int]]]
_LEASE = 30.0


class InjectedFailure(Exception):
    """The failure ``crash_matrix`` injects into a step to drive the saga into compensation."""


class ManualClock:
    """A clock tests move forward by hand (to expire leases without waiting)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


async def run_saga(
    saga: Saga[Any],
    data: Any,
    *,
    saga_id: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> SagaRecord:
    """Run ``saga`` with ``data`` on a memory store until it ends; return the final record."""
    runtime = SagaRuntime("test", MemorySagaStore(), tracing=False)
    runtime.declare(saga)
    handle = await runtime.start(saga, data, saga_id=saga_id)
    return await handle.wait(timeout)


@dataclass
class CrashCase:
    """One run of the matrix: where it crashed and how it ended."""

    scenario: str
    crash_point: str
    saga_id: str
    status: SagaStatus


@dataclass
class CrashMatrixReport:
    """Every case the matrix ran."""

    cases: list[CrashCase] = field(default_factory=list)


class _Hooks:
    def __init__(self, crash_at: int | None, fail_step: str | None) -> None:
        self.crash_at = crash_at
        self.fail_step = fail_step
        self.points: list[str] = []
        self.crashed = asyncio.Event()

    def _point(self, where: str) -> None:
        index = len(self.points)
        self.points.append(where)
        if index == self.crash_at and not self.crashed.is_set():
            self.crashed.set()
            raise asyncio.CancelledError  # the process "dies" here: nothing more is written

    async def before(self, record: SagaRecord, step: str, direction: Direction) -> None:
        self._point(f"before {direction} {step}")
        if direction == "forward" and step == self.fail_step:
            raise InjectedFailure(f"injected failure of step {step!r}")

    async def after(self, record: SagaRecord, step: str, direction: Direction) -> None:
        self._point(f"after {direction} {step}")


async def _read(ledger: Ledger) -> Mapping[str, int]:
    counts = ledger()
    if inspect.isawaitable(counts):
        counts = await counts
    return counts


def _has_commands(saga: Saga[Any]) -> bool:
    from nativekit.saga._define.command_steps import CommandStep

    return any(isinstance(step, CommandStep) for step in saga.steps)


def _runtime(
    name: str,
    saga: Saga[Any],
    store: MemorySagaStore,
    hooks: _Hooks,
    clock: ManualClock,
    network: CommandNetwork | None,
) -> SagaRuntime:
    runtime = SagaRuntime(
        name, store, lease=_LEASE, tracing=False, hooks=hooks, clock=clock, local_wake=False
    )
    runtime.declare(saga)
    for step in saga.steps:  # the children a recovering replica must be able to run
        child = getattr(step, "child", None)
        if child is not None:
            runtime.declare(child)
    if network is not None:
        from nativekit.saga._run.commands import CommandDriver

        runtime.commands = CommandDriver("matrix.replies", lambda _saga_id: None)
    return runtime


async def _run_case(
    saga: Saga[Any],
    data: Any,
    saga_id: str,
    crash_at: int | None,
    fail_step: str | None,
    timeout: float,  # noqa: ASYNC109
    participants: Mapping[str, Any] | None = None,
    events: Mapping[str, Any] | None = None,
) -> tuple[SagaRecord, _Hooks, CommandNetwork | None]:
    clock = ManualClock()
    store = MemorySagaStore(clock=clock)
    hooks = _Hooks(crash_at, fail_step)
    network: CommandNetwork | None = None
    if participants is not None or _has_commands(saga):
        from nativekit.testing._command_network import CommandNetwork

        network = CommandNetwork(
            store,
            participants or {},
            on_reply=lambda _id, step, direction: hooks._point(f"reply {direction} {step}"),
        )
    first = _runtime("crash-a", saga, store, hooks, clock, network)
    if network is not None:
        network.start(first)
    handle = await first.start(saga, data, saga_id=saga_id)
    keeper = asyncio.ensure_future(
        keep_time(first, store, saga_id, clock, events or {}, hooks._point)
    )
    try:
        return await _crash_and_recover(
            saga,
            saga_id,
            handle.wait(timeout),
            first,
            store,
            hooks,
            clock,
            network,
            timeout,
            keeper,
            events,
        )
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


async def _crash_and_recover(
    saga: Saga[Any],
    saga_id: str,
    waiting: Awaitable[SagaRecord],
    first: SagaRuntime,
    store: MemorySagaStore,
    hooks: _Hooks,
    clock: ManualClock,
    network: CommandNetwork | None,
    timeout: float,  # noqa: ASYNC109
    keeper: asyncio.Future[None],
    events: Mapping[str, Any] | None,
) -> tuple[SagaRecord, _Hooks, CommandNetwork | None]:
    finished = asyncio.ensure_future(waiting)
    crashed = asyncio.ensure_future(hooks.crashed.wait())
    await asyncio.wait({finished, crashed}, return_when=asyncio.FIRST_COMPLETED)
    if not hooks.crashed.is_set():
        crashed.cancel()
        record = await finished
        if network is not None:
            await network.stop()
        return record, hooks, network
    finished.cancel()
    keeper.cancel()
    await asyncio.gather(finished, keeper, return_exceptions=True)
    if network is not None:  # the crashed process's replies are lost with it
        await network.stop()
    for _, task in list(first.runs.values()):
        task.cancel()
    await asyncio.gather(*(task for _, task in list(first.runs.values())), return_exceptions=True)
    current = await store.get(saga_id)
    if current is not None and not current.status.active:
        return current, hooks, network  # a reply finished it before the "process" died
    second = _runtime("crash-b", saga, store, hooks, clock, network)
    parked = current is not None and any(s.waiting for s in current.steps.values())
    if not parked:  # parked sagas are resumed by the second timekeeper (event or timer)
        clock.advance(_LEASE + 1)
        if await second.recover() < 1:  # the saga (and its children, if any)
            raise AssertionError(f"saga {saga_id}: recovery did not claim the crashed saga")
    if network is not None:
        network.start(second)
    keeper = asyncio.ensure_future(
        keep_time(second, store, saga_id, clock, events or {}, hooks._point)
    )
    try:
        return await second.wait(saga_id, timeout), hooks, network
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        if network is not None:
            await network.stop()


async def _check_effects(saga: Saga[Any], record: SagaRecord, ledger: Ledger, case: str) -> None:
    prefix = f"{record.saga_id}:"
    counts = {k: n for k, n in (await _read(ledger)).items() if k.startswith(prefix)}
    twice = {k: n for k, n in counts.items() if n != 1}
    if twice:
        raise AssertionError(f"{case}: effects not applied exactly once per key: {twice}")
    for step in saga.steps:
        forward, undo = f"{prefix}{step.name}:forward", f"{prefix}{step.name}:compensate"
        if record.status is SagaStatus.COMPLETED and undo in counts:
            raise AssertionError(f"{case}: COMPLETED but {undo} was applied")
        if (
            record.status is SagaStatus.COMPENSATED
            and step.compensation is not None
            and forward in counts
            and undo not in counts
        ):
            raise AssertionError(f"{case}: COMPENSATED but {forward} was never undone")


async def crash_matrix(
    saga: Saga[Any],
    data: Any,
    *,
    ledger: Ledger | None = None,
    fail_steps: bool = True,
    timeout: float = 10.0,  # noqa: ASYNC109
    participants: Mapping[str, Any] | None = None,
    events: Mapping[str, Any] | None = None,
) -> CrashMatrixReport:
    """Crash ``saga`` before and after every step and compensation; check each run converges.

    Args:
        saga: the saga under test (its steps call your participants or fakes of them).
        data: the saga input.
        ledger: returns how often each effect was applied, keyed by the
            idempotency key the step passed to the participant. Every key must
            count exactly 1; a COMPLETED run must have no compensation applied and
            a COMPENSATED run must have undone every applied forward effect.
        fail_steps: also run, for each step, a scenario where that step fails
            (an :class:`InjectedFailure`), crashing at every point of the compensation.
        timeout: seconds one run may take.
        participants: for command steps, the participant functions by command class
            name (``{"ReserveStock": on_reserve}``), run in process by a simulated
            broker that deduplicates by idempotency key like ``@svc.command_handler``.
            Crash points then include "after" a command was written (before it
            is published) and "reply" (after the saga was claimed for a reply,
            before it resumed). Without ``ledger``, the effects are counted from
            the participant calls.
        events: payloads of the external events steps wait for with ``ctx.wait_for``,
            by name; each is delivered (through the store, once) when the saga waits
            for it, with a crash point "signal <name>" right after. A saga parked on
            ``ctx.sleep`` (or waiting for an event not given here) is resumed by moving
            the manual clock to its wake-up time.

    Raises:
        AssertionError: naming the scenario and crash point of the first violation.
    """
    report = CrashMatrixReport()
    scenarios: list[str | None] = [None]
    if fail_steps:
        scenarios += [step.name for step in saga.steps]
    for n, fail_step in enumerate(scenarios):
        label = "success path" if fail_step is None else f"step {fail_step!r} fails"
        _, baseline, _ = await _run_case(
            saga, data, f"matrix-{n}-base", None, fail_step, timeout, participants, events
        )
        for point_index, point in enumerate(baseline.points):
            saga_id = f"matrix-{n}-{point_index}"
            case = f"{saga.name} ({label}), crash {point}"
            record, _, network = await _run_case(
                saga, data, saga_id, point_index, fail_step, timeout, participants, events
            )
            if record.status not in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
                raise AssertionError(
                    f"{case}: ended {record.status.value} ({record.error}), expected "
                    "COMPLETED or COMPENSATED"
                )
            if ledger is not None:
                await _check_effects(saga, record, ledger, case)
            elif network is not None:
                applied = dict(network.applied)
                await _check_effects(saga, record, lambda a=applied: a, case)  # type: ignore[misc]
            report.cases.append(CrashCase(label, point, saga_id, record.status))
    return report
