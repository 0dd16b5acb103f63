"""The service's Kafka producers: one that sends at once, one that lingers under load.

A producer with a linger delays every record by it, also a publish that is alone in
flight; without one, a busy process publishing many events at once sends a few records
per request, and each small record batch costs the broker and every consumer. So a
service has two aiokafka producers when ``NATIVEKIT_KAFKA_LINGER_SECONDS`` > 0: a publish
goes out at once while fewer than :data:`LINGER_FROM` publishes are in flight, and
through the lingering producer, batched with the others, when more are, or when the
caller sends a batch (:data:`~nativekit.messaging._wire.broker.SENDING_MANY`, set by
the outbox relay): a batch's first records do not go out alone ahead of the rest.

Records of one key keep their order across the two: a key goes to the producer that
already has a record of that key in flight (``svc.publish`` returns after the ack, so
publishes awaited one after the other are ordered anyway).
"""

from __future__ import annotations

from typing import Any

import aiokafka

from nativekit.backends.kafka._client import kafka_client_options
from nativekit.messaging._wire.broker import SENDING_MANY, Headers
from nativekit.settings import Settings

#: Publishes in flight from which a new one goes through the lingering producer.
LINGER_FROM = 8


def producer_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the service's lingering ``AIOKafkaProducer``: acks=all,
    idempotence, linger (5 ms by default) and compression from the settings, plus the
    connection options (the producer that sends at once has ``linger_ms=0``)."""
    s = settings
    return {
        "acks": "all",
        "enable_idempotence": s.kafka.idempotent_producer,
        "linger_ms": round(s.kafka.linger_seconds * 1000),
        "compression_type": None if s.kafka.compression == "none" else s.kafka.compression,
        **kafka_client_options(s),
    }


class Producers:
    """The producer that sends at once and, with a linger set, the lingering one."""

    def __init__(self, settings: Settings) -> None:
        options = producer_options(settings)
        self.now: Any = aiokafka.AIOKafkaProducer(**{**options, "linger_ms": 0})
        self.lingering: Any = (
            aiokafka.AIOKafkaProducer(**options) if options["linger_ms"] > 0 else None
        )
        self.in_flight = 0
        #: key -> [the producer its records in flight went to, how many]
        self._keys: dict[bytes, list[Any]] = {}

    @property
    def client(self) -> Any:
        """The aiokafka client of the producer that sends at once (metadata requests)."""
        return self.now.client

    async def start(self) -> None:
        """Connect both (the first is closed again if the second cannot connect)."""
        await self.now.start()
        if self.lingering is not None:
            try:
                await self.lingering.start()
            except BaseException:
                await self.now.stop()
                raise

    async def stop(self) -> None:
        """Flush and close both."""
        try:
            await self.now.stop()
        finally:
            if self.lingering is not None:
                await self.lingering.stop()

    async def send_and_wait(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers | None
    ) -> Any:
        """Send through the producer the load picks; returns aiokafka's record metadata."""
        held = self._keys.get(key) if key is not None else None
        if held is not None:
            producer = held[0]
            held[1] += 1
        else:
            busy = self.lingering is not None and (
                self.in_flight >= LINGER_FROM or SENDING_MANY.get()
            )
            producer = self.lingering if busy else self.now
            if key is not None:
                held = self._keys[key] = [producer, 1]
        self.in_flight += 1
        try:
            return await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            self.in_flight -= 1
            if held is not None:
                held[1] -= 1
                if held[1] == 0 and key is not None:
                    del self._keys[key]
