"""Command steps at run time: the driver the runner calls, and ``outbox_publish``.

The driver writes a command step's start, its command (an outbox entry) and the
reply it waits for in one atomic write, then ends the run (:class:`Suspended`);
a reply or the deadline resumes it (:mod:`nativekit.saga._commands.replies`).

A command member of a parallel group waits in its own field ``wait:<step>``: the
group's commands are written together when the group parks
(``DurableWaits.park``), the store keeps each member's reply (``reply:<step>``)
and resumes the saga once no member waits any more, or at the first deadline.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nativekit.errors import ConfigError
from nativekit.messaging._commands import handlers as h
from nativekit.saga._define.command_steps import CommandSpec, Outcome, spec_of
from nativekit.saga._define.step import Direction, SagaContext, Step
from nativekit.saga._errors import SagaStateError
from nativekit.saga._run.state import RunState, Suspended, current_run
from nativekit.saga._store.model import Waiting
from nativekit.saga._store.outbox import OutboxEntry

if TYPE_CHECKING:
    from nativekit.saga._run.telemetry import CommandMetrics


def outbox_publish(
    ctx: SagaContext[Any],
    topic: str,
    event: BaseModel,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Publish ``event`` atomically with the completion of the running step.

    The event is written to the outbox in the same write that records the step
    as completed, and published by the relay after that; if the attempt fails,
    the event is dropped with it. Call it from inside a step or compensation.
    Returns the message id the event will carry.
    """
    run = current_run.get()
    if run is None or run.record.saga_id != ctx.saga_id:
        raise SagaStateError("outbox_publish() must be called from inside a running saga step")
    entry = OutboxEntry.new(topic, event, key=key if key is not None else ctx.saga_id)
    entry.headers.update(headers or {})
    run.staged.setdefault(ctx.step, []).append(entry.encode())
    return entry.id


class CommandDriver:
    """What the runner calls for command steps (``RunEnv.commands``).

    Args:
        reply_topic: where participants send replies for this service.
        wake: called with the saga id after its outbox entries were written (wakes the
            local relay, which then reads that saga's shard first).
        metrics: counters, or None.
    """

    def __init__(
        self, reply_topic: str, wake: Callable[[str], None], metrics: CommandMetrics | None = None
    ) -> None:
        self.reply_topic = reply_topic
        self._wake = wake
        self.metrics = metrics
        #: Since when (epoch s) this replica hears replies: a wait written before that
        #: was not heard in full. The reply consumer's join sets it (see SagaCommands).
        self.listening_since: Callable[[], float] = lambda: 0.0

    def wake(self, saga_id: str) -> None:
        """Outbox entries of ``saga_id`` were just written."""
        self._wake(saga_id)

    def is_command(self, step: Step[Any, Any], direction: Direction) -> bool:
        """True when this direction of ``step`` sends a command."""
        return spec_of(step, direction) is not None

    def outcome(self, run: RunState, step: Step[Any, Any], direction: Direction) -> Outcome | None:
        """The ended wait of ``step`` in ``direction`` (its reply or its timeout), if any.

        Raises :class:`Suspended` for a group member whose reply has not come and whose
        deadline has not passed (it goes on waiting; ``run.held``).
        """
        if step.group is not None and direction == "forward":
            return self._member_outcome(run, step)
        wait = Waiting.decode(run.record.wait)
        if wait is None or wait.step != step.name or wait.direction != direction:
            return None
        run.record.wait = None
        run.pending.fields["wait"] = ""
        reply, run.reply = run.reply, None
        if reply is not None and reply[0] == wait.token:
            return reply[1]
        return self._timed_out(wait)

    def _timed_out(self, wait: Waiting) -> Outcome:
        return Outcome(
            False,
            timed_out=True,
            unheard=wait.at is not None and wait.at < self.listening_since(),
            error=f"no reply from the participant within {wait.timeout:g}s "
            f"(attempt {wait.attempt})",
        )

    def _member_outcome(self, run: RunState, step: Step[Any, Any]) -> Outcome | None:
        name, record = step.name, run.record
        raw = record.replies.pop(name, None)
        if raw is not None:  # the store emptied the wait when it stored the reply
            run.pending.fields[f"reply:{name}"] = ""
            record.waits.pop(name, None)
            spec = spec_of(step, "forward")
            return decode_reply(raw, spec) if spec is not None else None
        wait = Waiting.decode(record.waits.get(name))
        if wait is None:
            return None
        if wait.at is not None and wait.at + wait.timeout > run.env.clock():
            run.held[name] = wait
            raise Suspended
        del record.waits[name]
        run.pending.fields[f"wait:{name}"] = ""
        return self._timed_out(wait)

    def count_sent(self, run: RunState, step: str, direction: Direction) -> None:
        """A command of ``step`` was persisted."""
        if self.metrics is not None:
            labels = (self.metrics.service, run.saga.name, step, direction)
            self.metrics.sent.labels(*labels).inc()

    async def send(
        self, run: RunState, step: Step[Any, Any], direction: Direction, ctx: SagaContext[Any]
    ) -> None:
        """Build the command, write it with the step's start and the wait, then suspend."""
        spec = spec_of(step, direction)
        func = step.func if direction == "forward" else step.compensation
        if spec is None or func is None:  # pragma: no cover - guarded by is_command
            raise ConfigError("not a command step")
        tracer = run.env.tracer
        span_cm: Any = (
            tracer.start_as_current_span(
                f"saga.step {step.name}",
                attributes={
                    "saga.name": run.saga.name,
                    "saga.id": ctx.saga_id,
                    "saga.step": step.name,
                    "saga.direction": direction,
                    "saga.attempt": ctx.attempt,
                    "messaging.destination.name": spec.topic,
                },
            )
            if tracer is not None
            else contextlib.nullcontext()
        )
        with span_cm:
            command = await func(ctx)
            if not isinstance(command, BaseModel):
                raise TypeError(
                    f"command step {step.name!r} must return a pydantic model, got {command!r}"
                )
            entry = OutboxEntry.new(spec.topic, command, key=ctx.saga_id)  # carries the span
        token = uuid.uuid4().hex[:16]
        wait = Waiting(step.name, direction, ctx.attempt, token, spec.timeout, run.env.clock())
        entry.headers.update(
            {
                h.REPLY_TO: self.reply_topic,
                h.IDEMPOTENCY_KEY: ctx.idempotency_key,
                h.SAGA_ID: ctx.saga_id,
                h.SAGA_STEP: step.name,
                h.SAGA_DIRECTION: direction,
                h.SAGA_ATTEMPT: str(ctx.attempt),
                h.SAGA_REPLY_TOKEN: token,
            }
        )
        pending = run.pending
        run.mark(step.name, run.record.step(step.name))  # the attempt's start, if not written
        if step.group is not None and direction == "forward":
            # written with the other members' commands when the group parks: no reply can
            # come before every member's wait is stored
            run.sent[step.name] = ([*run.staged.pop(step.name, []), entry.encode()], wait)
            raise Suspended
        pending.outbox.extend(run.staged.pop(step.name, []))
        pending.outbox.append(entry.encode())
        pending.fields["wait"] = wait.encode()
        pending.lease = spec.timeout
        await run.flush()
        run.record.wait = wait.encode()
        hooks = run.env.hooks
        if hooks is not None:  # the command is persisted (not yet published)
            await hooks.after(run.record, step.name, direction)
        self.count_sent(run, step.name, direction)
        raise Suspended


def encode_reply(token: str, ok: bool, payload: bytes, error: str | None) -> str:
    """A reply to a group member as the store keeps it (``reply:<step>``)."""
    if ok:
        body = {"t": token, "ok": True, "p": payload.decode("utf-8", "replace")}
    else:
        body = {"t": token, "ok": False, "e": error or "failure reply"}
    return json.dumps(body, separators=(",", ":"))


def decode_reply(raw: str, spec: CommandSpec) -> Outcome:
    """The outcome of a stored member reply (validated against the step's reply model)."""
    body = json.loads(raw)
    if not body.get("ok"):
        return Outcome(False, error=body.get("e") or "failure reply")
    try:
        return Outcome(True, spec.adapter.validate_json(body.get("p") or "null"))
    except ValueError as exc:
        return Outcome(False, error=f"reply does not fit {spec.reply}: {exc}")
