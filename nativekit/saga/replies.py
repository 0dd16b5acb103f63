"""Orchestrator side of command steps: the reply consumer, resuming sagas, the relay.

A reply carries the correlation headers of the command it answers. It resumes
the saga only when the saga still waits for exactly that attempt (same step,
direction, attempt and reply token) and the lease is still the waiting one:
the claim checks the token in the same atomic step, so a reply racing a
timeout, a duplicate reply or an operator action resumes the saga at most once.
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
from nativekit.saga.errors import LeaseLost, SagaNotFound
from nativekit.saga.model import SagaRecord
from nativekit.saga.outbox import MemoryOutbox, Outbox, OutboxRelay
from nativekit.saga.store import MemorySagaStore, SagaStore

if TYPE_CHECKING:
    from nativekit.saga.runtime import SagaRuntime
    from nativekit.service import Service

#: KEYS: record, leases. ARGV: id, expected token, new token, lease_ms.
_RESUME = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
local s = redis.call('HGET', KEYS[1], 'status')
if s ~= 'RUNNING' and s ~= 'COMPENSATING' then return 0 end
local t = redis.call('TIME')
local lease = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'token', ARGV[3], 'lease', string.format('%d', lease))
redis.call('ZADD', KEYS[2], lease, ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


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
    store: SagaStore, saga_id: str, *, expect: str, token: str, lease: float
) -> SagaRecord:
    """Lease a waiting saga to ``token`` only if ``expect`` still holds it (atomic)."""
    if isinstance(store, MemorySagaStore):
        held = store._leases.get(saga_id)
        record = await store.get(saga_id)
        if held is None or held[0] != expect or record is None or not record.status.active:
            raise LeaseLost(f"saga {saga_id!r} no longer waits under that lease")
        store._leases[saga_id] = (token, store.clock() + lease)
        return store._record(saga_id)
    from nativekit.saga.redis_store import RedisSagaStore, _fields

    if not isinstance(store, RedisSagaStore):  # pragma: no cover - only two stores exist
        raise TypeError(f"command steps need a memory or Redis saga store, got {store!r}")
    keys = [store._record_key(saga_id), f"{store._shard(saga_id)}:leases"]
    script = store.__dict__.get("_resume_script")
    if script is None:
        script = store.__dict__["_resume_script"] = store.client.register_script(_RESUME)
    async with store._gate:
        raw = await script(keys=keys, args=[saga_id, expect, token, int(lease * 1000)])
    if not raw:
        raise LeaseLost(f"saga {saga_id!r} no longer waits under that lease")
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
        )
        await self.relay.start()
        if needed:
            await self._start_consumer()

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
        )
        self.consumer = Consumer(
            inspect_handler(self.on_reply),
            options,
            broker=messaging.broker,
            store=None,
            metrics=messaging.metrics,
            service=self.svc.name,
            tracing=s.tracing_enabled,
        )
        try:
            await messaging.broker.create_topics({self.reply_topic: 1})
        except Exception as exc:  # it may exist, or be created by an operator
            self.log.debug("saga.reply_topic.create_failed", error=repr(exc))
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
    if not (saga_id and step_name and token and attempt):
        return "ignored"
    record = await runtime.store.get(saga_id)
    if record is None:
        return "ignored"
    wait = Waiting.decode(record.wait)
    if (
        wait is None
        or not record.status.active
        or (wait.step, wait.direction, str(wait.attempt), wait.token)
        != (step_name, header(h.SAGA_DIRECTION), attempt, token)
    ):
        return "late"
    try:
        saga = runtime.definition_of(record)
    except Exception:
        return "ignored"
    step = saga.get_step(step_name)
    spec = spec_of(step, wait.direction) if step is not None else None  # type: ignore[arg-type]
    if spec is None:
        return "ignored"
    if header(h.REPLY_STATUS) == "ok":
        try:
            outcome = Outcome(True, spec.adapter.validate_json(payload or b"null"))
        except ValueError as exc:
            outcome = Outcome(False, error=f"reply does not fit {spec.reply}: {exc}")
    else:
        outcome = Outcome(False, error=header(h.REPLY_ERROR) or "failure reply")
    new = uuid.uuid4().hex
    try:
        claimed = await resume_claim(
            runtime.store, saga_id, expect=record.token or "", token=new, lease=runtime.lease
        )
    except (LeaseLost, SagaNotFound):
        return "late"
    if saga_id in runtime.runs:  # a local run of the old lease: fenced now anyway
        runtime.runs[saga_id][1].cancel()
    if before_resume is not None:
        before_resume(claimed)
    run = runtime._spawn(saga, claimed, new)
    run.reply = (token, outcome)
    return "received"


def attach_commands(svc: Service, runtime: SagaRuntime) -> SagaCommands:
    """Wire command steps, the reply consumer and the outbox relay into ``svc``."""
    commands = SagaCommands(svc, runtime)
    svc.lifecycle.add("saga-commands", start=commands.start, stop=commands.stop)
    svc.__dict__["_saga_commands"] = commands
    return commands
