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

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from nativekit._health import CheckResult
from nativekit._lifecycle import cancel_and_wait
from nativekit._telemetry.logging import get_logger
from nativekit.errors import BackendUnavailable
from nativekit.messaging._commands import handlers as h
from nativekit.messaging._consume.consumer import Consumer
from nativekit.messaging._consume.handler import inspect_handler
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._wire.envelope import Message
from nativekit.saga._define.command_steps import CommandStep, Outcome, spec_of
from nativekit.saga._errors import LeaseLost, SagaNotFound, SagaStateError, UnknownSaga
from nativekit.saga._run.commands import CommandDriver, encode_reply
from nativekit.saga._run.telemetry import CENSUS_INTERVAL, CommandMetrics
from nativekit.saga._store.model import SagaRecord, Waiting
from nativekit.saga._store.outbox import OutboxRelay

if TYPE_CHECKING:
    from nativekit._context import ServiceContext
    from nativekit.messaging._messaging import Messaging
    from nativekit.saga._run.runtime import SagaRuntime

#: What consuming a reply did: the ``outcome`` label of ``nativekit_saga_replies_total``.
ReplyOutcome = Literal["received", "late", "ignored"]


class SagaCommands:
    """Command/reply support of one service's sagas: relay, reply consumer, driver.

    Args:
        ctx: the service's context.
        runtime: the saga runtime whose command steps this serves.
        messaging: publishes relayed entries and runs the reply consumer.
    """

    def __init__(self, ctx: ServiceContext, runtime: SagaRuntime, messaging: Messaging) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.messaging = messaging
        s = ctx.settings
        self.reply_topic = s.saga.reply_topic or f"{ctx.name}.replies"
        self.metrics = CommandMetrics(ctx.metrics.registry, ctx.name)
        self.relay: OutboxRelay | None = None
        self._census: asyncio.Task[None] | None = None
        self.consumer: Consumer | None = None
        self.log = get_logger(service=ctx.name, component="saga-replies")
        self.driver = runtime.commands = CommandDriver(self.reply_topic, self._wake, self.metrics)
        ctx.health.add(
            "outbox",
            self.readiness,
            critical=False,
            component_type="component",
            active=lambda: self.relay is not None,
        )

    def _wake(self, saga_id: str) -> None:
        if self.relay is not None:
            self.relay.wake(saga_id)

    @property
    def needed(self) -> bool:
        """True when a registered saga has command steps."""
        sagas = [*self.runtime.sagas.values(), *self.runtime.legacy]
        return any(isinstance(step, CommandStep) for saga in sagas for step in saga.steps)

    async def start(self) -> None:
        """Start the relay and the reply consumer when a saga has command steps (or
        ``NATIVEKIT_SAGA_OUTBOX_RELAY`` is on, for sagas that only use ``outbox_publish``)."""
        s = self.ctx.settings
        needed = self.needed
        if not (needed or s.saga.outbox_relay):
            return
        outbox = self.runtime.store.outbox(
            consumer=f"{self.ctx.name}-{self.runtime.replica}",
            claim_after=s.saga.outbox_claim_after_seconds,
        )
        self.relay = OutboxRelay(
            outbox,
            self.messaging.publisher,
            service=self.ctx.name,
            poll_interval=s.saga.outbox_poll_interval_seconds,
            batch=s.saga.outbox_batch,
            metrics=self.metrics,
            supervisor=self.messaging.supervisor,
        )
        try:
            await self.relay.start()
            self._census = self.messaging.supervisor.spawn("outbox-census", self._count_backlog)
            if needed:
                await self._start_consumer()
        except BaseException:  # cancelled too: the lifecycle stops only what started
            await self.stop()
            raise

    async def _start_consumer(self) -> None:
        s = self.ctx.settings
        messaging = self.messaging
        options = ConsumerOptions(
            topics=(self.reply_topic,),
            group=f"{self.ctx.name}.replies",
            retries=s.consumer.retries,
            concurrency=64,
            max_in_flight=s.consumer.max_in_flight,
            fetch_max=s.consumer.fetch_max_records,
            idempotent=False,  # fencing by reply token makes a duplicate reply harmless
            drain_timeout=s.consumer.drain_timeout_seconds,
            commit_interval=s.consumer.commit_interval_seconds,
        )
        instance = s.consumer.group_instance_id
        self.consumer = Consumer(
            inspect_handler(self.on_reply),
            options,
            broker=messaging.broker,
            store=None,
            metrics=messaging.metrics,
            service=self.ctx.name,
            tracing=s.telemetry.tracing_enabled,
            supervisor=messaging.supervisor,
            join_timeout=s.consumer.join_timeout_seconds,
            lag_interval=s.consumer.lag_interval_seconds,
            topics_to_create={self.reply_topic: 1},
            # static like every other consumer: a replica restarted under the same name
            # takes the partition back instead of waiting out its old member's session
            group_instance_id=f"{instance}.replies" if instance else None,
        )
        name = f"consumer:{options.group}"  # the same name each start: added once
        self.ctx.health.add(name, self.consumer.check, component_type="component")
        self.ctx.health.add_startup(name, self.consumer.joining)
        self.driver.listening_since = self._listening_since
        await self.consumer.start()

    def _listening_since(self) -> float:
        """When the reply consumer got its partitions: from then on replies are heard
        here, and a reply deadline that passes is a real timeout (inf before that)."""
        consumer = self.consumer
        joined = consumer.join.joined_at if consumer is not None else None
        return math.inf if joined is None else joined

    async def stop(self) -> None:
        """Stop the reply consumer, then the relay (a second call does nothing)."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()
        # the census loops while a relay is set: unset it first, so the loop ends even
        # if the cancellation below is lost (see cancel_and_wait)
        relay, self.relay = self.relay, None
        if self._census is not None:
            census, self._census = self._census, None
            await cancel_and_wait(census)
        if relay is not None:
            await relay.stop()

    async def on_reply(self, payload: bytes, msg: Message) -> None:
        """Resume the saga this reply belongs to, or count the reply as late/ignored."""
        outcome = await apply_reply(self.runtime, payload, msg.header)
        self.metrics.replies.labels(self.ctx.name, outcome).inc()

    async def _count_backlog(self) -> None:
        """Keep the outbox gauges current between readiness probes (none outside Kubernetes)."""
        while self.relay is not None:
            with contextlib.suppress(BackendUnavailable):
                await self.sample_backlog(self.relay)
            await asyncio.sleep(CENSUS_INTERVAL)

    async def sample_backlog(self, relay: OutboxRelay) -> tuple[int, float]:
        """The outbox backlog and its oldest entry's age, also set on their gauges."""
        count, age = await relay.outbox.backlog()
        self.metrics.backlog.labels(self.ctx.name).set(count)
        self.metrics.oldest.labels(self.ctx.name).set(age)
        return count, age

    async def readiness(self) -> CheckResult | None:
        """Warn when the outbox backlog exceeds ``NATIVEKIT_SAGA_OUTBOX_BACKLOG_WARN``."""
        if self.relay is None:
            return None
        count, age = await self.sample_backlog(self.relay)
        limit = self.ctx.settings.saga.outbox_backlog_warn
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
) -> ReplyOutcome:
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
    status, error = header(h.REPLY_STATUS), header(h.REPLY_ERROR)
    reply = encode_reply(token, status == "ok", payload or b"null", error)
    new = uuid.uuid4().hex
    try:
        claimed = await _claim_reply(runtime, saga_id, wait, new, reply)
    except (UnknownSaga, SagaStateError):
        return "ignored"
    except (LeaseLost, SagaNotFound):
        return "late"
    if claimed is None:  # a group member's reply, stored: other members still wait
        return "received"
    saga = runtime.definition_of(claimed)
    step = saga.get_step(step_name)
    spec = spec_of(step, direction) if step is not None else None  # type: ignore[arg-type]
    outcome: Outcome | None = None
    # a group member's reply is stored with the saga (``reply:<step>``): the run reads it
    member = step is not None and step.group is not None and direction == "forward"
    if member:
        pass
    elif spec is not None and status == "ok":
        try:
            outcome = Outcome(True, spec.adapter.validate_json(payload or b"null"))
        except ValueError as exc:
            outcome = Outcome(False, error=f"reply does not fit {spec.reply}: {exc}")
    elif spec is not None:
        outcome = Outcome(False, error=error or "failure reply")
    local = runtime.runs.get(saga_id)
    # a local run of the old lease: fenced now anyway. A run still creating the saga (a
    # start() of an id that exists) finds it stored and ends on its own; a cancel would
    # fail that start() with "stopped before it was stored".
    if local is not None and local[0].creating is None:
        local[1].cancel()
    if before_resume is not None:
        before_resume(claimed)
    run = runtime.spawn(saga, claimed, new)
    if outcome is not None:
        run.reply = (token, outcome)
    elif not member:  # cannot happen for a matching wait; the run treats it as timed out
        return "ignored"
    return "received"


async def _claim_reply(
    runtime: SagaRuntime, saga_id: str, wait: Waiting, token: str, reply: str
) -> SagaRecord | None:
    """``claim_reply``, retried while the store is down (a Redis failover takes seconds):
    a reply given up on would only be heard again when its wait times out."""
    delay = 0.1
    while True:
        try:
            return await runtime.store.claim_reply(
                saga_id,
                wait,
                token,
                lease=runtime.lease,
                known=list(runtime.definitions),
                reply=reply,
            )
        except BackendUnavailable:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
