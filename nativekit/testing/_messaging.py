"""Test seam for consumers: deliver messages to a service's handlers and assert outcomes.

::

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver("payments", PaymentReceived(order_id="o-1"))
        assert delivery.outcome == "processed"
        again = await harness.deliver("payments", b"not json")
        assert again.outcome == "dead_lettered"

The harness runs the service (lifespan hooks and consumers) on a private
:class:`~nativekit.messaging.MemoryBroker` and fresh in-memory dedup stores, so
tests do not need Kafka or Redis and do not see each other's messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import BaseModel

from nativekit.messaging import Message
from nativekit.messaging._consume.lanes import Item
from nativekit.messaging._consume.metrics import ConsumeOutcome
from nativekit.messaging._dedup import MemoryDedupStore
from nativekit.messaging._wire.memory import MemoryBroker

if TYPE_CHECKING:
    from nativekit._service import Service

__all__ = ["Delivery", "MessagingHarness"]


@dataclass(frozen=True)
class Delivery:
    """What one consumer group did with a delivered message."""

    topic: str
    partition: int
    offset: int
    group: str
    #: processed, duplicate, dead_lettered or skipped (another event type)
    outcome: ConsumeOutcome | None
    attempts: int
    error: str | None


class MessagingHarness:
    """Run ``service``'s consumers on an in-memory broker and deliver messages to them.

    Args:
        service: the service whose ``@svc.consumer`` handlers to run.
        partitions: partitions of topics created on first use.
        timeout: seconds :meth:`deliver` waits for the handlers.
        dedup_store: one store for every consumer (to pre-seed claims); by default
            each consumer gets a fresh one.
    """

    def __init__(
        self,
        service: Service,
        *,
        partitions: int = 1,
        timeout: float = 5.0,
        dedup_store: MemoryDedupStore | None = None,
    ) -> None:
        self.service = service
        self.broker = MemoryBroker(default_partitions=partitions)
        self.dedup_store = dedup_store
        self.stores: dict[str, MemoryDedupStore] = {}
        self.timeout = timeout
        self.deliveries: list[Delivery] = []
        self._waiting: dict[tuple[str, int, int], list[asyncio.Future[Delivery]]] = {}

    async def __aenter__(self) -> MessagingHarness:
        messaging = self.service.messaging
        messaging.use_broker(self.broker)
        messaging.use_dedup_store(
            lambda ns: self.stores.setdefault(ns, self.dedup_store or MemoryDedupStore())
        )
        for consumer in messaging.consumers:
            consumer.observers.append(self._observe(consumer.options.group))
        await self.service.startup(hook_sigterm=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.service.shutdown()

    def _observe(self, group: str) -> Callable[[Item], None]:
        def observer(item: Item) -> None:
            record = item.record
            delivery = Delivery(
                record.topic,
                record.partition,
                record.offset,
                group,
                item.outcome,
                item.attempts,
                item.error,
            )
            self.deliveries.append(delivery)
            for waiter in self._waiting.pop((record.topic, record.partition, record.offset), []):
                if not waiter.done():
                    waiter.set_result(delivery)

        return observer

    async def deliver(
        self,
        topic: str,
        event: BaseModel | bytes,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        message_id: str | None = None,
    ) -> Delivery:
        """Publish ``event`` and wait until a consumer of ``topic`` finished it.

        Pass the same ``message_id`` twice to deliver a duplicate, bytes that do not
        fit the handler's model to deliver a poison message.

        Raises:
            TimeoutError: no consumer finished the message in time (none subscribed,
                or the handler hangs).
        """
        waiter: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        published = await self.service.publish(
            topic, event, key=key, headers=headers, message_id=message_id
        )
        place = (published.topic, published.partition, published.offset)
        done = [d for d in self.deliveries if (d.topic, d.partition, d.offset) == place]
        if done:
            return done[0]
        self._waiting.setdefault(place, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no consumer finished the message at {topic}[{published.partition}]@"
                f"{published.offset} within {self.timeout:g}s"
            ) from None

    def dead_letters(self, topic: str) -> list[Message]:
        """Messages dead-lettered from ``topic`` (or on the dead-letter topic ``topic``)."""
        consumers = self.service.messaging.consumers
        dlqs = {t for c in consumers for t in map(c.options.dlq_for, c.options.topics)}
        if topic in dlqs:
            names = {topic}
        else:
            names = {c.options.dlq_for(topic) for c in consumers if topic in c.options.topics}
        records = [
            r for name in sorted(names or {f"{topic}.dlq"}) for r in self.broker.records(name)
        ]
        return [Message.from_record(r) for r in records]

    def published(self, topic: str) -> list[Message]:
        """Every message on ``topic`` (for asserting what handlers published)."""
        return [Message.from_record(r) for r in self.broker.records(topic)]
