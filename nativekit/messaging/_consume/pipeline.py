"""Handling one message: wait out a busy claim, decode, call with retries, dead-letter."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any

from nativekit._transaction import NO_TRANSACTION
from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.handler import HandlerSpec
from nativekit.messaging._consume.lanes import Item
from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._dedup import Claim, ClaimStatus, DedupStore, FinalState
from nativekit.messaging._errors import DecodeError
from nativekit.messaging._wire import envelope as env
from nativekit.messaging._wire.broker import Broker, Record
from nativekit.messaging._wire.envelope import Message

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, Tracer

    from nativekit._transaction import TransactionFactory

#: Seconds between attempts of a message whose handler found a backend unavailable.
OUTAGE_RETRY = 1.0


class Runner:
    """Runs the handler of one consumer for one message at a time (per caller)."""

    def __init__(
        self,
        spec: HandlerSpec,
        options: ConsumerOptions,
        *,
        broker: Broker,
        store: DedupStore | None,
        metrics: MessagingMetrics,
        log: Any,
        tracer: Tracer | None,
        owned: dict[str, Item],
        stopping: Callable[[], bool],
        finished: list[Item],
        wake: Callable[[], None],
        on_abandoned: Callable[[Item], None],
        namespace: str | None = None,
        transactions: Callable[[], TransactionFactory | None] | None = None,
    ) -> None:
        self.spec = spec
        #: The scope of the dedup keys (``<group>:<handler>``, or the service name for the
        #: default group): written on dead letters so a replay clears the right mark.
        self.namespace = namespace or f"{options.group}:{spec.name}"
        self.transactions = transactions
        self.options = options
        self.broker = broker
        self.store = store
        self.metrics = metrics
        self.log = log
        self.tracer = tracer
        self.owned = owned
        self.stopping = stopping
        #: Handled items go here (their DONE/DEAD marks are flushed in bulk); ``wake``
        #: is called when the first one lands in the empty list, to start a flush.
        self.finished = finished
        self.wake = wake
        self.on_abandoned = on_abandoned
        self.debug = False  # per-message debug lines only when DEBUG is on (they cost µs)

    async def work(self, items: deque[Item]) -> None:
        """Handle a run of items from the head of a lane's queue, in order.

        This is the one handling path of a message: wait out a claim another worker
        holds (or skip a duplicate), decode, call the handler with retries and
        backoff, dead-letter, inside a span when tracing. It runs inline: a message
        whose first attempt succeeds costs no coroutine but the handler's own.
        """
        spec = self.spec
        decode = spec.decode
        bare = spec.msg_param is None and spec.tx_param is None  # the event alone
        func = spec.func
        claimed = ClaimStatus.CLAIMED
        finished, tracer = self.finished, self.tracer
        for _ in range(64):
            if not items:
                return
            item = items.popleft()
            scope: Any = None
            try:
                claim = item.claim
                # else a duplicate, settled with nothing to write
                if claim is None or claim.status is claimed or await self._settle_claim(item):
                    span: Any = None
                    if tracer is not None:
                        scope = self._span(item, tracer)
                        span = scope.__enter__()
                    try:
                        event = decode(item.record)
                    except DecodeError as exc:
                        await self._dead_letter(item, exc)
                        item.state = FinalState.DEAD
                    else:
                        attempt = 1
                        while True:
                            item.attempts = attempt
                            started = perf_counter()
                            try:
                                how = "plain"
                                if bare:
                                    await func(event)
                                elif spec.tx_param is None:
                                    await spec.call(event, self._message(item, attempt))
                                else:
                                    how = await self._transactional(item, event, attempt)
                            except Exception as exc:
                                if await self._failed(item, exc, started):
                                    # an outage of Redis or Kafka is not the message's fault
                                    attempt += not isinstance(exc, BackendUnavailable)
                                    continue
                                item.state = FinalState.DEAD
                            else:
                                item.elapsed = perf_counter() - started
                                item.outcome = "duplicate" if how == "lost" else "processed"
                                # else DONE committed with the handler's transaction, or
                                # the message's lease was lost (its new owner marks it)
                                item.state = FinalState.DONE if how == "plain" else None
                                if self.debug:
                                    self.log.debug(
                                        "message.handled", **self._context(item), attempt=attempt
                                    )
                            break
                    if scope is not None:
                        span.set_attribute("nativekit.outcome", item.outcome)
                        scope, close = None, scope
                        close.__exit__(None, None, None)
            except BaseException as exc:
                if scope is not None:
                    scope.__exit__(type(exc), exc, exc.__traceback__)
                self.on_abandoned(item)
                if not isinstance(exc, Exception):  # cancelled: the consumer is stopping
                    raise
                self.log.error("message.abandoned", offset=item.record.offset, error=repr(exc))
                continue
            if not finished:
                self.wake()
            finished.append(item)

    async def _transactional(self, item: Item, event: Any, attempt: int) -> str:
        """Call a handler taking a ``Transaction``; if it used it, write the DONE mark in
        that transaction and commit. Returns ``"marked"`` when the mark went out with the
        commit, ``"lost"`` when another worker owns the message now (rolled back), else
        ``"plain"`` (the DONE mark is written with the batch, as for other handlers)."""
        factory = self.transactions() if self.transactions is not None else None
        msg = self._message(item, attempt) if self.spec.msg_param is not None else None
        if factory is None:
            await self.spec.call(event, msg, NO_TRANSACTION)
            return "plain"
        scope = factory()
        try:
            await self.spec.call(event, msg, scope)
            if not scope.begun:
                return "plain"
            claim, store = item.claim, self.store
            if claim is not None and claim.status is ClaimStatus.CLAIMED and store is not None:
                with scope.joined():
                    [held] = await store.finish_many(
                        [claim], retain=self.options.retain, state=FinalState.DONE
                    )
                if not held:  # another worker took the message over: its run counts
                    self.log.warning("consumer.lease_lost", keys=[item.key], count=1)
                    return "lost"
                await scope.commit()
                return "marked"
            await scope.commit()
            return "plain"
        finally:
            await scope.close()

    async def _settle_claim(self, item: Item) -> bool:
        """Not claimed by this batch: wait out a busy claim; False for a duplicate."""
        claim = item.claim
        if claim is not None and claim.status is ClaimStatus.BUSY:
            claim = item.claim = await self._wait_for_claim(item)
        if claim is not None and claim.status is not ClaimStatus.CLAIMED:
            item.outcome = "duplicate"
            item.state = None
            if self.debug:
                self.log.debug("message.duplicate", **self._context(item))
            return False
        return True

    def _span(self, item: Item, tracer: Tracer) -> Any:
        """The ``<topic> process`` span of ``item`` (not entered), continuing its trace."""
        record = item.record
        return tracer.start_as_current_span(
            f"{record.topic} process",
            context=_extract(record),
            kind=_consumer_kind(),
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": self.options.group,
                "messaging.message.id": item.key,
            },
        )

    async def _wait_for_claim(self, item: Item) -> Claim:
        """Another worker holds the key: wait until it finishes or its lease runs out."""
        store = self.store
        if store is None:
            return Claim(item.key, ClaimStatus.CLAIMED)
        delay = 0.02
        while True:
            other = self.owned.get(item.key)
            if other is not None and other is not item:
                taken = other.claim
                if taken is not None and item.lane.queued_behind(item, other):
                    # A later copy in this queue won the claim (batches' claims can answer
                    # out of order): waiting for it would wait for ourselves. Take its claim.
                    item.claim, other.claim = taken, Claim(item.key, ClaimStatus.BUSY)
                    self.owned[item.key] = item
                    return taken
                await other.wait()
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, max(self.options.lease / 4, 0.05))
            try:
                claim = (await store.claim_many([item.key], lease=self.options.lease))[0]
            except BackendUnavailable:
                self.metrics.dedup_errors.labels(
                    self.metrics.service, self.options.group, "claim"
                ).inc()
                if self.stopping():
                    raise
                continue
            if claim.status is not ClaimStatus.BUSY:
                if claim.status is ClaimStatus.CLAIMED:
                    self.owned[item.key] = item
                return claim

    async def _failed(self, item: Item, exc: Exception, started: float) -> bool:
        """Count a failed attempt; back off and return True to try again, or dead-letter
        the message and return False."""
        record = item.record
        self.metrics.observe(record.topic, self.options.group, perf_counter() - started)
        if isinstance(exc, BackendUnavailable) and not isinstance(exc, self.options.non_retryable):
            # A backend the handler needs is down: the message is not at fault and is not
            # dead-lettered for it; it waits (uncommitted) until the backend is back, or is
            # left for the next run of the group when the consumer stops meanwhile.
            if self.stopping():
                raise exc
            self.metrics.count(record.topic, self.options.group, "retried")
            self.log.warning(
                "message.backend_unavailable", **self._context(item), attempt=item.attempts,
                delay_s=OUTAGE_RETRY, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            await asyncio.sleep(OUTAGE_RETRY)
            return True
        if isinstance(exc, self.options.non_retryable) or item.attempts > self.options.retries:
            await self._dead_letter(item, exc)
            return False
        self.metrics.count(record.topic, self.options.group, "retried")
        delay = min(self.options.backoff * 2 ** (item.attempts - 1), self.options.backoff_max)
        self.log.warning(
            "message.retrying",
            **self._context(item),
            attempt=item.attempts,
            delay_s=round(delay, 3),
            error=f"{type(exc).__name__}: {exc}",
        )
        await asyncio.sleep(delay)
        return True

    async def _dead_letter(self, item: Item, exc: BaseException) -> None:
        """Publish the record to the dead-letter topic with the reason (retried until acked)."""
        record = item.record
        item.outcome = "dead_lettered"
        item.error = f"{type(exc).__name__}: {exc}"
        topic = self.options.dlq_for(record.topic)
        headers = [
            *(h for h in record.headers if not h[0].startswith(env.DLQ_PREFIX)),
            (env.DLQ_TOPIC, record.topic.encode()),
            (env.DLQ_PARTITION, str(record.partition).encode()),
            (env.DLQ_OFFSET, str(record.offset).encode()),
            (env.DLQ_GROUP, self.options.group.encode()),
            (env.DLQ_ERROR_TYPE, type(exc).__name__.encode()),
            (env.DLQ_ERROR, str(exc)[:2000].encode("utf-8", "replace")),
            (env.DLQ_ATTEMPTS, str(item.attempts).encode()),
            (env.DLQ_TIME, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
            (env.DLQ_HANDLER, self.spec.name.encode()),
        ]
        if self.store is not None:  # where replay clears the DEAD mark
            headers.append((env.DLQ_DEDUP_KEY, item.key.encode("utf-8", "replace")))
            headers.append((env.DLQ_DEDUP_RETENTION, f"{self.options.retain:g}".encode()))
            headers.append((env.DLQ_DEDUP_NAMESPACE, self.namespace.encode()))
        delay = 0.1
        while True:
            try:
                await self.broker.send(topic, record.value or b"", key=record.key, headers=headers)
                break
            except Exception as send_error:
                if self.stopping():
                    raise
                self.log.error(
                    "message.dead_letter_failed",
                    **self._context(item),
                    dead_letter_topic=topic,
                    error=repr(send_error),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.log.error(
            "message.dead_lettered",
            **self._context(item),
            dead_letter_topic=topic,
            attempts=item.attempts,
            error=item.error,
        )

    def _message(self, item: Item, attempt: int) -> Message:
        msg = Message.from_record(item.record)
        return _with(msg, attempt, item.claim.token if item.claim else 0)

    def _context(self, item: Item) -> dict[str, Any]:
        return {
            "topic": item.record.topic,
            "partition": item.record.partition,
            "offset": item.record.offset,
            "group": self.options.group,
            "message_id": item.key,
            "handler": self.spec.name,
        }


def _with(msg: Message, attempt: int, token: int) -> Message:
    return Message(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        msg.value,
        msg.headers,
        msg.timestamp_ms,
        attempt,
        token,
    )


def _extract(record: Record) -> Context | None:
    from nativekit._telemetry.propagation import extract_headers

    return extract_headers(record.headers)


def _consumer_kind() -> SpanKind:
    from opentelemetry.trace import SpanKind

    return SpanKind.CONSUMER
