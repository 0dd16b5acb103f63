"""Publishing: encode, set nativekit headers and the trace context, wait for the ack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._wire import envelope as env
from nativekit.messaging._wire.broker import Broker

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


@dataclass(frozen=True, slots=True)
class Published:
    """Where a published message was stored, and its id."""

    topic: str
    partition: int
    offset: int
    message_id: str


def encode_key(key: str | bytes | None) -> bytes | None:
    """Record key bytes (str is UTF-8 encoded)."""
    return key.encode() if isinstance(key, str) else key


class Publisher:
    """Sends events through a broker; used by ``Service.publish`` and by consumers that reply."""

    def __init__(self, broker: Broker, metrics: MessagingMetrics, *, tracing: bool = True) -> None:
        self.broker = broker
        self.metrics = metrics
        self.tracing = tracing
        self._counters: dict[str, Any] = {}

    async def publish(
        self,
        topic: str,
        event: BaseModel | bytes,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        message_id: str | None = None,
    ) -> Published:
        """Publish ``event`` to ``topic``; returns after the broker acknowledged it.

        Args:
            topic: destination topic.
            event: a pydantic model (sent as JSON) or raw bytes.
            key: partitioning key; messages with one key keep their order.
            headers: extra headers; they override nativekit's of the same name (an
                outbox relay passes the ``traceparent`` stored with the row this way).
            message_id: a stable id (for example an outbox row id) instead of a new UUID,
                so a re-published message is recognised as a duplicate by consumers.

        Raises:
            BackendUnavailable: the broker did not answer.
            PublishError: the broker rejected the record.
        """
        value, content_type, event_type = env.encode(event)
        tracer = _tracer() if self.tracing else None
        if tracer is None:
            return await self._send(
                topic, value, key, content_type, event_type, headers, message_id
            )
        from opentelemetry.trace import SpanKind

        with tracer.start_as_current_span(
            f"{topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
            },
        ) as span:
            published = await self._send(
                topic, value, key, content_type, event_type, headers, message_id
            )
            span.set_attribute("messaging.message.id", published.message_id)
            span.set_attribute("messaging.destination.partition.id", str(published.partition))
            return published

    async def _send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None,
        content_type: str,
        event_type: str,
        extra: Mapping[str, str | bytes] | None,
        message_id: str | None,
    ) -> Published:
        message_id, headers = env.build_headers(
            content_type=content_type, event_type=event_type, message_id=message_id, extra=extra
        )
        sent = await self.broker.send(topic, value, key=encode_key(key), headers=headers)
        counter = self._counters.get(topic)
        if counter is None:
            counter = self._counters[topic] = self.metrics.published.labels(
                self.metrics.service, topic
            )
        counter.inc()
        return Published(sent.topic, sent.partition, sent.offset, message_id)


def _tracer() -> Tracer | None:
    from nativekit._telemetry.active import active_tracer

    return active_tracer()
