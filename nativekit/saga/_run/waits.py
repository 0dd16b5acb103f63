"""Durable timers, external events and the saga deadline, on the run's side.

A step that sleeps or waits for an event parks the saga the way a command step
does: the wake-up time is persisted with the step marked ``waiting``, the lease
is set to run out at that time (or the saga's deadline, if sooner), and the run
ends. Whichever replica's recovery claims the expired lease re-runs the step;
its ``ctx.sleep`` now returns at once and its ``ctx.wait_for`` returns the
delivered payload (or raises :class:`EventTimeout`). ``svc.sagas.signal``
releases the lease of a saga that awaits the event, so it resumes at once.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from nativekit.errors import ConfigError
from nativekit.saga._define.child_steps import child_id
from nativekit.saga._define.step import _NAME, Direction, SagaContext
from nativekit.saga._errors import ChildSagaFailed, EventTimeout, SagaNotFound
from nativekit.saga._run.state import RunState, Suspended, Wake
from nativekit.saga._store.model import SagaStatus, StepStatus

#: Seconds a parent parked on a child waits before it looks at the child again (the
#: child's end normally wakes it at once; this covers a child that ended unheard).
CHILD_POLL = 60.0

#: Lease of a saga parked without any time limit (an event wait with no timeout and no
#: deadline): ten years, renewed by nobody; a signal releases it.
FOREVER = 10 * 365 * 86400.0


class DurableWaits(RunState):
    """``ctx.sleep``/``ctx.wait_for`` of a run, and its deadline."""

    def _timer_key(self, ctx: SagaContext[Any]) -> str:
        """``timer:<step>:<direction>:<n>``: the n-th wait of this step direction."""
        slot = (ctx.step, ctx.direction)
        n = self.ordinals.get(slot, 0) + 1
        self.ordinals[slot] = n
        return f"timer:{ctx.step}:{ctx.direction}:{n}"

    def _stored_time(self, key: str, at: float) -> float:
        """The wake-up time stored under ``key`` (``at`` is stored the first time)."""
        stored = self.record.timers.get(key)
        if stored is not None:
            return stored
        self.record.timers[key] = at
        self.pending.fields[key] = repr(at)
        return at

    async def sleep(self, ctx: SagaContext[Any], delay: float | timedelta | datetime) -> None:
        """Park the saga until the wake-up time, unless it passed."""
        now = self.env.clock()
        if isinstance(delay, datetime):
            at = delay.timestamp()
        else:
            at = now + (delay.total_seconds() if isinstance(delay, timedelta) else float(delay))
        if not math.isfinite(at):
            raise ConfigError(f"ctx.sleep() needs a finite time, got {delay!r}.")
        at = self._stored_time(self._timer_key(ctx), at)
        if at <= now:
            return
        self.waits[ctx.step] = Wake(at, [], ctx.direction)
        self.log.info("saga.step.sleeping", step=ctx.step, until=at)
        raise Suspended

    async def wait_for(
        self,
        ctx: SagaContext[Any],
        event: str,
        timeout: float | timedelta | None,  # noqa: ASYNC109
        type: Any,
    ) -> Any:
        """The event's payload; park the saga until it arrives or the timeout passes."""
        if not _NAME.match(event):
            raise ConfigError(
                f"Event name {event!r} is not valid; use letters, digits, '.', '_', '-'."
            )
        now = self.env.clock()
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        at = self._stored_time(self._timer_key(ctx), math.inf if seconds is None else now + seconds)
        raw = self.record.events.get(event)
        if raw is not None:
            return TypeAdapter(type).validate_json(raw)
        if at <= now:
            raise EventTimeout(f"event {event!r} did not arrive within {seconds:g}s")
        self.waits[ctx.step] = Wake(at, [event], ctx.direction)
        self.log.info("saga.step.awaiting", step=ctx.step, event_name=event, until=at)
        raise Suspended

    # -- child sagas --------------------------------------------------------------------

    async def child(self, ctx: SagaContext[Any], saga: Any, data: Any) -> dict[str, Any]:
        """Start (once) and wait for the child saga; its results, by step name."""
        children = self.env.children
        if children is None:
            raise ConfigError("child steps need a saga runtime (svc.sagas) to start the child")
        saga_id = child_id(ctx.saga_id, ctx.step)
        if saga_id not in self.record.children:
            self.record.children[saga_id] = ctx.step
            self.pending.fields[f"child:{saga_id}"] = ctx.step
        event = f"child.{ctx.step}"
        await children.start_child(
            saga, data, saga_id=saga_id, parent=ctx.saga_id, event=event, deadline=self.deadline()
        )
        record = await children.settle(saga_id)
        if record is None or record.status.active:
            # the child's end wakes this saga; the poll covers an end that went unheard
            self.waits[ctx.step] = Wake(self.env.clock() + CHILD_POLL, [event], ctx.direction)
            self.log.info("saga.step.awaiting_child", step=ctx.step, child=saga_id)
            raise Suspended
        if record.status is not SagaStatus.COMPLETED:
            raise ChildSagaFailed(
                f"child saga {saga_id!r} ended {record.status.value}: {record.error}"
            )
        return {name: json.loads(raw) for name, raw in record.results.items()}

    async def compensate_child(self, ctx: SagaContext[Any]) -> None:
        """Compensate the child this step started, if it completed; wait for its end."""
        children = self.env.children
        saga_id = child_id(ctx.saga_id, ctx.step)
        linked = saga_id in self.record.children
        if children is None or not (linked or self.record.step(ctx.step).uncertain):
            return  # never started: nothing to undo
        try:
            record = await children.compensate_child(saga_id)
        except SagaNotFound:
            if linked:
                raise
            return  # the attempt that died (unrecorded) never got to start it
        if record.status not in (SagaStatus.COMPENSATED, SagaStatus.ABORTED):
            raise ChildSagaFailed(
                f"child saga {saga_id!r} could not be compensated: it is "
                f"{record.status.value} ({record.error})"
            )

    # -- parking the run ----------------------------------------------------------------

    async def park(self) -> None:
        """Persist the waits of the steps that parked, lease until the first wake-up, end.

        Command members of a parallel group park here too: the commands built in this
        run are written with their reply waits, and a member still waiting names its
        ``reply:<step>`` among the fields that release the lease (a reply stored while
        this run went on resumes the saga at once).
        """
        now = self.env.clock()
        times = [wake.at for wake in self.waits.values()]
        release = []
        for name, (entries, wait) in self.sent.items():
            raw = wait.encode()
            self.record.waits[name] = raw
            self.pending.fields[f"wait:{name}"] = raw
            self.pending.outbox.extend(entries)
            times.append((wait.at or now) + wait.timeout)
        for name, wait in self.held.items():
            times.append((wait.at or now) + wait.timeout)
            release.append(f"reply:{name}")
        at = min(times)
        deadline = self.deadline()
        if deadline is not None:
            at = min(at, deadline)
        events = sorted({e for wake in self.waits.values() for e in wake.events})
        for name in self.waits:
            srec = self.record.step(name)
            srec.waiting = True
            self.mark(name, srec)
        self.record.awaiting = events
        self.pending.fields["awaiting"] = json.dumps(events) if events else ""
        self.pending.release_if_any = [f"event:{e}" for e in events] + release
        self.pending.lease = FOREVER if math.isinf(at) else max(0.0, at - now)
        waits, self.waits = self.waits, {}
        sent, self.sent, self.held = self.sent, {}, {}
        await self.flush()
        self.wake_at = at
        self.woken_by_event = bool(events)
        hooks = self.env.hooks
        commands = self.env.commands
        for name in sent:
            if hooks is not None:  # the command is persisted (not yet published)
                await hooks.after(self.record, name, "forward")
            if commands is not None:
                commands.count_sent(self, name, "forward")
        if hooks is not None:  # the park is persisted
            for name, wake in waits.items():
                await hooks.after(self.record, name, wake.direction)
        raise Suspended

    def unpark(self, name: str, direction: Direction) -> bool:
        """True when ``name`` was parked in ``direction`` (its attempt resumes; this is not
        an interruption). A stale mark (an operator sent the saga the other way) is cleared."""
        srec = self.record.step(name)
        if not srec.waiting:
            return False
        srec.waiting = False
        self.mark(name, srec)
        if self.record.awaiting:
            self.record.awaiting = []
            self.pending.fields["awaiting"] = ""
        if direction == "forward":
            return srec.status is StepStatus.RUNNING and srec.attempts > 0
        return srec.status is StepStatus.COMPENSATING and srec.compensation_attempts > 0

    # -- the deadline -------------------------------------------------------------------

    def deadline(self) -> float | None:
        """The saga's deadline while it still applies: not once a pivot step completed
        (the saga can then only go forward, so the deadline is waived)."""
        record = self.record
        if record.deadline is None:
            return None
        for name in record.order:
            step = self.saga.get_step(name)
            if step is not None and step.pivot:
                return None
        return record.deadline

    def past_deadline(self) -> bool:
        """True once the saga's deadline (if it applies) has passed."""
        deadline = self.deadline()
        return deadline is not None and self.env.clock() >= deadline

    def attempt_limit(self, timeout: float | None) -> tuple[float | None, bool]:
        """Seconds an attempt may take (its policy's timeout capped by the deadline), and
        whether the deadline is what limits it."""
        deadline = self.deadline()
        if deadline is None:
            return timeout, False
        left = max(0.001, deadline - self.env.clock())
        if timeout is None or left < timeout:
            return left, True
        return timeout, False
