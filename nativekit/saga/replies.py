"""Orchestrator side of command steps: the reply consumer, resuming sagas, the relay.

A reply carries the correlation headers of the command it answers. It resumes
the saga only when the saga still waits for exactly that attempt (same step,
direction, attempt and reply token): one atomic step checks that and takes the
lease. Of a reply racing a timeout, a duplicate reply or an operator action,
only one run goes on: the first transition after the reply clears the wait, so
later copies are late, and a runner whose lease was taken before it wrote is
fenced (no step runs before its start is written).
Anything else is counted as ``late`` (the saga moved on) or ``ignored`` (unknown
saga, malformed reply) and dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nativekit.health import CheckResult
from nativekit.logging import get_logger
from nativekit.messaging import commands as h
from nativekit.messaging.envelope import Message
from nativekit.saga.commands import CommandDriver, CommandStep, Outcome, Waiting, spec_of
from nativekit.saga.errors import LeaseLost, SagaNotFound, SagaStateError
from nativekit.saga.model import SagaRecord
from nativekit.saga.outbox import MemoryOutbox, Outbox, OutboxRelay
from nativekit.saga.store import MemorySagaStore

if TYPE_CHECKING:
    from nativekit.saga.runtime import SagaRuntime
    from nativekit.service import Service

#: KEYS: record, leases. ARGV: id, new token, lease_ms, step, direction, attempt,
#: reply token, known definitions... Claims the saga only while it still waits for exactly
#: that attempt's reply; returns its fields, -1 (no such saga), 0 (it does not wait for
#: this reply: late) or -2 (a definition this service does not know).
_RESUME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local s = redis.call('HGET', KEYS[1], 'status')
if s ~= 'RUNNING' and s ~= 'COMPENSATING' then return 0 end
local raw = redis.call('HGET', KEYS[1], 'wait')
if not raw or raw == '' then return 0 end
local w = cjson.decode(raw)
if w.s ~= ARGV[4] or w.d ~= ARGV[5] or tostring(w.a) ~= ARGV[6] or w.t ~= ARGV[7] then
  return 0
end
local def = redis.call('HGET', KEYS[1], 'name') .. ':' .. redis.call('HGET', KEYS[1], 'def')
local known = false
for i = 8, #ARGV do if ARGV[i] == def then known = true end end
if not known then return -2 end
local t = redis.call('TIME')
local lease = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease', string.format('%d', lease))
redis.call('ZADD', KEYS[2], lease, ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


def _key(wait: Waiting) -> tuple[str, str, int, str]:
    return wait.step, wait.direction, wait.attempt, wait.token


class UnknownSaga(Exception):
    """The reply is for a saga this service does not have (or whose definition it lacks)."""


class CommandMetrics:
    """Counters of commands sent and replies received, outbox backlog and relay lag."""

    def __init__(self, registry: Any, service: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        from nativekit.metrics import LATENCY_BUCKETS

        self.service = service
        self.sent = Counter(
            "nativekit_saga_commands_sent_total",
            "Commands written to the outbox by saga command steps.",
            ["service", "saga", "step", "direction"],
            registry=registry,
        )
        self.replies = Counter(
            "nativekit_saga_replies_total",
            "Command replies consumed, by outcome: received (resumed a saga), late (the saga "
            "no longer waits for that attempt), ignored (unknown saga or malformed).",
            ["service", "outcome"],
            registry=registry,
        )
        self.backlog = Gauge(
            "nativekit_outbox_backlog",
            "Outbox entries written but not yet published and deleted.",
            ["service"],
            registry=registry,
        )
        self.oldest = Gauge(
            "nativekit_outbox_oldest_age_seconds",
            "Age of the oldest outbox entry not yet published.",
            ["service"],
            registry=registry,
        )
        self.relay_lag = Histogram(
            "nativekit_outbox_relay_lag_seconds",
            "Time from writing an outbox entry to the broker's acknowledgement of it.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


async def resume_claim(
    runtime: SagaRuntime, saga_id: str, wait: Waiting, *, token: str
) -> SagaRecord:
    """Lease a saga to ``token`` only while it still waits for ``wait`` (one atomic step).

    Raises :class:`UnknownSaga` when there is no such saga (or its definition is not
    registered here) and :class:`LeaseLost` when it no longer waits for that reply.
    """
    store = runtime.store
    if isinstance(store, MemorySagaStore):
        record = await store.get(saga_id)
        if record is None:
            raise UnknownSaga(saga_id)
        stored = Waiting.decode(record.wait)
        if not record.status.active or stored is None or _key(stored) != _key(wait):
            raise LeaseLost(f"saga {saga_id!r} no longer waits for that reply")
        runtime.definition_of(record)  # raises SagaStateError when unknown
        store._leases[saga_id] = (token, store.clock() + runtime.lease)
        return store._record(saga_id)
    from nativekit.saga.redis_store import RedisSagaStore, _fields

    if not isinstance(store, RedisSagaStore):  # pragma: no cover - only two stores exist
        raise TypeError(f"command steps need a memory or Redis saga store, got {store!r}")
    keys = [store._record_key(saga_id), f"{store._shard(saga_id)}:leases"]
    script = store.__dict__.get("_resume_script")
    if script is None:
        script = store.__dict__["_resume_script"] = store.client.register_script(_RESUME)
    args: list[str | int] = [saga_id, token, int(runtime.lease * 1000)]
    args += [wait.step, wait.direction, str(wait.attempt), wait.token, *runtime.definitions]
    async with store._gate:
        raw = await script(keys=keys, args=args)
    if raw == -1 or raw == -2:
        raise UnknownSaga(saga_id)
    if not raw:
        raise LeaseLost(f"saga {saga_id!r} no longer waits for that reply")
    return SagaRecord.from_fields(_fields(raw))


class SagaCommands:
    """Command/reply support of one service's sagas: relay, reply consumer, driver."""

    def __init__(self, svc: Service, runtime: SagaRuntime) -> None:
        self.svc = svc
        self.runtime = runtime
        s = svc.settings
        self.reply_topic = s.saga_reply_topic or f"{svc.name}.replies"
        self.metrics = CommandMetrics(svc.metrics.registry, svc.name)
        self.relay: OutboxRelay | None = None
        self.consumer: Any = None
        self.log = get_logger(service=svc.name, component="saga-replies")
        runtime.commands = CommandDriver(self.reply_topic, self._wake, self.metrics)

    def _wake(self, saga_id: str) -> None:
        if self.relay is not None:
            self.relay.wake(saga_id)

    @property
    def needed(self) -> bool:
        """True when a registered saga has command steps."""
        sagas = [*self.runtime.sagas.values(), *self.runtime._legacy]
        return any(isinstance(step, CommandStep) for saga in sagas for step in saga.steps)

    def _outbox(self) -> Outbox:
        store = self.runtime.store
        if isinstance(store, MemorySagaStore):
            return MemoryOutbox(store.outbox)
        from nativekit.saga.redis_outbox import RedisOutbox
        from nativekit.saga.redis_store import RedisSagaStore

        if not isinstance(store, RedisSagaStore):  # pragma: no cover
            raise TypeError(f"the outbox needs a memory or Redis saga store, got {store!r}")
        return RedisOutbox(
            store,
            consumer=f"{self.svc.name}-{self.runtime.replica}",
            claim_after=self.svc.settings.outbox_claim_after,
        )

    async def start(self) -> None:
        """Start the relay and the reply consumer when a saga has command steps (or
        ``NATIVEKIT_OUTBOX_RELAY`` is on, for sagas that only use ``outbox_publish``)."""
        s = self.svc.settings
        needed = self.needed
        if not (needed or s.outbox_relay):
            return
        self.svc.health.add("outbox", self.readiness, critical=False, component_type="component")
        messaging = self.svc.messaging
        # stop before messaging closes the broker, whichever was registered first
        self.svc.lifecycle.add("saga-commands-stop", stop=self.stop)
        self.relay = OutboxRelay(
            self._outbox(),
            messaging.publisher,
            service=self.svc.name,
            poll_interval=s.outbox_poll_interval,
            batch=s.outbox_batch,
            metrics=self.metrics,
            supervisor=messaging.supervisor,
        )
        try:
            await self.relay.start()
            if needed:
                await self._start_consumer()
        except BaseException:  # cancelled too: the lifecycle stops only what started
            await self.stop()
            raise

    async def _start_consumer(self) -> None:
        from nativekit.messaging.consumer import Consumer
        from nativekit.messaging.handler import inspect_handler
        from nativekit.messaging.pipeline import ConsumerOptions

        s = self.svc.settings
        messaging = self.svc.messaging
        options = ConsumerOptions(
            topics=(self.reply_topic,),
            group=f"{self.svc.name}.replies",
            retries=s.consumer_retries,
            concurrency=64,
            max_in_flight=s.consumer_max_in_flight,
            fetch_max=s.consumer_fetch_max_records,
            idempotent=False,  # fencing by reply token makes a duplicate reply harmless
            drain_timeout=s.consumer_drain_timeout,
            commit_interval=s.consumer_commit_interval,
        )
        self.consumer = Consumer(
            inspect_handler(self.on_reply),
            options,
            broker=messaging.broker,
            store=None,
            metrics=messaging.metrics,
            service=self.svc.name,
            tracing=s.tracing_enabled,
            supervisor=messaging.supervisor,
            join_timeout=s.consumer_join_timeout,
            lag_interval=s.consumer_lag_interval,
            topics_to_create={self.reply_topic: 1},
        )
        name = f"consumer:{options.group}"
        self.svc.health.add(name, self.consumer.check, component_type="component")
        self.svc.health.add_startup(name, self.consumer.joining)
        await self.consumer.start()

    async def stop(self) -> None:
        """Stop the reply consumer, then the relay (a second call does nothing)."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()
        if self.relay is not None:
            await self.relay.stop()

    async def on_reply(self, payload: bytes, msg: Message) -> None:
        """Resume the saga this reply belongs to, or count the reply as late/ignored."""
        outcome = await apply_reply(self.runtime, payload, msg.header)
        self.metrics.replies.labels(self.svc.name, outcome).inc()

    async def readiness(self) -> CheckResult | None:
        """Warn when the outbox backlog exceeds ``NATIVEKIT_OUTBOX_BACKLOG_WARN``."""
        if self.relay is None:
            return None
        count, age = await self.relay.outbox.backlog()
        self.metrics.backlog.labels(self.svc.name).set(count)
        self.metrics.oldest.labels(self.svc.name).set(age)
        limit = self.svc.settings.outbox_backlog_warn
        if count > limit:
            return CheckResult(
                "warn",
                f"{count} outbox entries wait to be published (more than {limit}); "
                f"the oldest for {age:.1f}s. Is Kafka reachable?",
                observed_value=count,
                observed_unit="entries",
            )
        return CheckResult("pass", None, observed_value=count, observed_unit="entries")


async def apply_reply(
    runtime: SagaRuntime,
    payload: bytes,
    header: Callable[[str], str | None],
    *,
    before_resume: Callable[[SagaRecord], None] | None = None,
) -> str:
    """Resume the saga a reply belongs to; returns ``received``, ``late`` or ``ignored``.

    ``header`` reads the reply's headers; ``before_resume`` (the crash-matrix seam)
    runs after the saga was claimed for the reply and before its run starts.
    """
    saga_id, step_name = header(h.SAGA_ID), header(h.SAGA_STEP)
    token, attempt = header(h.SAGA_REPLY_TOKEN), header(h.SAGA_ATTEMPT)
    direction = header(h.SAGA_DIRECTION)
    if not (saga_id and step_name and token and attempt and direction):
        return "ignored"
    try:
        wait = Waiting(step_name, direction, int(attempt), token, 0.0)  # timeout not compared
    except ValueError:
        return "ignored"
    new = uuid.uuid4().hex
    try:
        claimed = await resume_claim(runtime, saga_id, wait, token=new)
    except (UnknownSaga, SagaStateError):
        return "ignored"
    except (LeaseLost, SagaNotFound):
        return "late"
    saga = runtime.definition_of(claimed)
    step = saga.get_step(step_name)
    spec = spec_of(step, direction) if step is not None else None  # type: ignore[arg-type]
    outcome: Outcome | None = None
    if spec is not None and header(h.REPLY_STATUS) == "ok":
        try:
            outcome = Outcome(True, spec.adapter.validate_json(payload or b"null"))
        except ValueError as exc:
            outcome = Outcome(False, error=f"reply does not fit {spec.reply}: {exc}")
    elif spec is not None:
        outcome = Outcome(False, error=header(h.REPLY_ERROR) or "failure reply")
    if saga_id in runtime.runs:  # a local run of the old lease: fenced now anyway
        runtime.runs[saga_id][1].cancel()
    if before_resume is not None:
        before_resume(claimed)
    run = runtime._spawn(saga, claimed, new)
    if outcome is None:  # cannot happen for a matching wait; the run treats it as timed out
        return "ignored"
    run.reply = (token, outcome)
    return "received"


def attach_commands(svc: Service, runtime: SagaRuntime) -> SagaCommands:
    """Wire command steps, the reply consumer and the outbox relay into ``svc``."""
    commands = SagaCommands(svc, runtime)
    svc.lifecycle.add("saga-commands", start=commands.start, stop=commands.stop)
    svc.__dict__["_saga_commands"] = commands
    return commands
