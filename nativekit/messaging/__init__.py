"""Kafka messaging: typed publishers, idempotent consumers, retries and dead letters.

Use it through the service::

    @svc.consumer("payments.events", group="orders")
    async def on_payment(event: PaymentReceived, msg: Message) -> None: ...

    await svc.publish("orders.events", OrderPlaced(order_id="o-1"), key="o-1")

The broker is chosen by ``NATIVEKIT_KAFKA_URL`` (``memory://`` or ``kafka://…``),
the dedup store by ``NATIVEKIT_REDIS_URL``. Importing this package does not import
aiokafka or redis; their modules load when a backend is built.
"""

from __future__ import annotations

from nativekit.messaging._consume.consumer import Consumer
from nativekit.messaging._consume.metrics import ConsumeOutcome
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._dedup import (
    Claim,
    ClaimStatus,
    DedupStore,
    FinalState,
    MemoryDedupStore,
)
from nativekit.messaging._errors import CommitFailed, DecodeError, MessagingError, PublishError
from nativekit.messaging._messaging import ConsumerKwargs, Messaging
from nativekit.messaging._wire.broker import Broker, GroupConsumer, Record, Sent, TopicPartition
from nativekit.messaging._wire.declared import TopicPublisher
from nativekit.messaging._wire.envelope import Message
from nativekit.messaging._wire.memory import MemoryBroker
from nativekit.messaging._wire.publisher import Published, Publisher

__all__ = [
    "Broker",
    "Claim",
    "ClaimStatus",
    "CommitFailed",
    "ConsumeOutcome",
    "Consumer",
    "ConsumerKwargs",
    "ConsumerOptions",
    "DecodeError",
    "DedupStore",
    "FinalState",
    "GroupConsumer",
    "MemoryBroker",
    "MemoryDedupStore",
    "Message",
    "Messaging",
    "MessagingError",
    "Published",
    "Publisher",
    "PublishError",
    "Record",
    "Sent",
    "TopicPartition",
    "TopicPublisher",
]
