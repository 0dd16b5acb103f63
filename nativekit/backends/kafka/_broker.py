"""The Kafka broker (aiokafka). aiokafka errors are translated here and go no further."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

import aiokafka
import aiokafka.errors as kerr
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from nativekit.backends.kafka._client import kafka_client_options, start_or_close
from nativekit.backends.kafka._producer import Producers
from nativekit.errors import BackendUnavailable
from nativekit.messaging._errors import CommitFailed, MessagingError, PublishError
from nativekit.messaging._wire.broker import (
    Headers,
    RebalanceCallback,
    Record,
    Sent,
    TopicPartition,
)
from nativekit.settings import Settings

#: aiokafka errors that mean the cluster could not be reached (not a refusal).
UNAVAILABLE_ERRORS = (
    kerr.KafkaConnectionError,
    kerr.NoBrokersAvailable,
    kerr.KafkaTimeoutError,
    kerr.RequestTimedOutError,
    kerr.NodeNotReadyError,
    OSError,
)
_COMMIT_REJECTED = (
    kerr.CommitFailedError,
    kerr.IllegalGenerationError,
    kerr.RebalanceInProgressError,
    kerr.UnknownMemberIdError,
    kerr.IllegalStateError,
)
_TOPIC_EXISTS = kerr.TopicAlreadyExistsError.errno
#: A Record's fields of an aiokafka ConsumerRecord, in order.
_FIELDS = attrgetter("topic", "partition", "offset", "key", "value", "headers", "timestamp")


def _servers(settings: Settings) -> str:
    return ",".join(settings.kafka.bootstrap_servers)


def _unavailable(settings: Settings, op: str, exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        f"Kafka at {_servers(settings)} failed {op}: {type(exc).__name__}: {exc}. "
        "Is NATIVEKIT_KAFKA_URL right and the broker up?"
    )


class KafkaBroker:
    """Publishes with acks=all producers and creates aiokafka group consumers.

    Producer options come from the settings: ``kafka.idempotent_producer``,
    ``kafka.linger_seconds`` (a publish alone goes out at once, many in flight share
    lingering batches: :mod:`nativekit.backends.kafka._producer`), ``kafka.compression``;
    TLS and SASL through :func:`~nativekit.backends.kafka.kafka_client_options`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._starting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        #: Bumped by ``aclose``: a producer whose start it overlapped is not kept.
        self._closes = 0

    async def start(self) -> None:
        """Connect the producer (once: concurrent first publishes share one)."""
        if self._producer is not None:
            return
        loop = asyncio.get_running_loop()
        if self._starting is None or self._starting[0] is not loop:  # a lock binds to a loop
            self._starting = (loop, asyncio.Lock())
        async with self._starting[1]:
            if self._producer is None:
                await self._connect()

    async def _connect(self) -> None:
        s = self.settings
        closes = self._closes
        producer = Producers(s)
        await start_or_close(
            producer.start,
            producer.stop,
            lambda exc: _unavailable(s, "to connect the producer", exc),
        )
        if self._closes != closes:
            # aclose() (a shutdown) ran while this start was connecting and found nothing
            # to close: the producer must not outlive it.
            await producer.stop()
            raise BackendUnavailable(
                f"The Kafka producer for {_servers(s)} was closed (the service stopping) "
                "while it connected; nothing was published."
            )
        self._producer = producer

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers | None = None
    ) -> Sent:
        """Produce one record and wait for the acknowledgement of all in-sync replicas."""
        if self._producer is None:
            await self.start()
        try:
            meta = await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(self.settings, f"to publish to {topic!r}", exc) from exc
        except kerr.KafkaError as exc:
            raise PublishError(f"Kafka rejected a record for {topic!r}: {exc!r}") from exc
        return Sent(meta.topic, meta.partition, meta.offset)

    async def create_topics(self, topics: Mapping[str, int]) -> None:
        """Create missing topics (replication factor 1 on single-broker clusters)."""
        if not topics:
            return
        options = kafka_client_options(self.settings)
        options.pop("connections_max_idle_ms", None)
        admin = AIOKafkaAdminClient(**options)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, n, 1) for t, n in topics.items() if t not in existing]
            if missing:
                response = await admin.create_topics(missing)
                for name, code, *_ in response.topic_errors:
                    if code not in (0, _TOPIC_EXISTS):
                        raise MessagingError(
                            f"Kafka refused to create topic {name!r} (error code {code})."
                        )
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(self.settings, "to create topics", exc) from exc
        finally:
            await admin.close()

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        instance_id: str | None = None,
    ) -> KafkaGroupConsumer:
        """A group member with manual commits, reading from the committed offset."""
        return KafkaGroupConsumer(
            self.settings, list(topics), group, on_assigned, on_revoked, instance_id
        )

    async def ping(self) -> None:
        """Ask the cluster for metadata."""
        if self._producer is None:
            await self.start()
        try:
            await self._producer.client.fetch_all_metadata()
        except Exception as exc:
            raise _unavailable(self.settings, "a metadata request", exc) from exc

    async def aclose(self) -> None:
        """Flush and close the producer (one still connecting is closed once connected)."""
        self._closes += 1
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assigned: RebalanceCallback, on_revoked: RebalanceCallback) -> None:
        self._assigned = on_assigned
        self._revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._revoked({TopicPartition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._assigned({TopicPartition(tp.topic, tp.partition) for tp in assigned})


class KafkaGroupConsumer:
    """An aiokafka consumer in a group, behind the GroupConsumer protocol."""

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.group = group
        self._listener = _Listener(on_assigned, on_revoked)
        self.instance_id = instance_id
        self._consumer: Any = None
        self._turn = 0

    async def start(self) -> None:
        """Subscribe and join the group."""
        s = self.settings
        session_ms = int(s.consumer.session_timeout_seconds * 1000)
        options = kafka_client_options(s)
        # The broker may hold a JoinGroup request for the rebalance timeout (aiokafka's
        # default: the session timeout), and the request timeout covers it too.
        options["request_timeout_ms"] = max(options["request_timeout_ms"], session_ms + 5000)
        consumer = aiokafka.AIOKafkaConsumer(
            group_id=self.group,
            group_instance_id=self.instance_id,
            enable_auto_commit=False,
            auto_offset_reset=s.consumer.auto_offset_reset,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(3000, session_ms // 3)),
            max_poll_records=s.consumer.fetch_max_records,
            fetch_max_wait_ms=round(s.consumer.fetch_max_wait_seconds * 1000),
            **options,
        )
        consumer.subscribe(self.topics, listener=self._listener)
        await start_or_close(
            consumer.start,
            consumer.stop,
            lambda exc: _unavailable(s, f"to join group {self.group!r}", exc),
        )
        self._consumer = consumer

    async def fetch(self, *, wait: float, max_records: int) -> list[Record]:
        """Records fetched by aiokafka (waits up to ``wait`` seconds when none are buffered)."""
        try:
            batches = await self._fair_share(max_records)
            if not batches:
                batches = await self._consumer.getmany(
                    timeout_ms=int(wait * 1000), max_records=max_records
                )
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(self.settings, "to fetch", exc) from exc
        except kerr.KafkaError as exc:
            raise MessagingError(f"Kafka fetch failed: {exc!r}") from exc
        out: list[Record] = []
        # in C per record: the fields in one attrgetter, then tuple.__new__ (a NamedTuple's
        # own __new__ is a Python call)
        for records in batches.values():
            out += map(tuple.__new__, repeat(Record), map(_FIELDS, records))
        return out

    async def _fair_share(self, max_records: int) -> dict[Any, list[Any]]:
        """Buffered records, an equal share from every partition first.

        aiokafka's ``getmany(max_records=...)`` drains one partition's buffer before
        the next, so partitions reach the end of their log at different times; a
        fetch request for the exhausted ones is then held by the broker for
        ``fetch_max_wait_ms`` and, with one request per broker in flight, the other
        partitions wait for it too. Taking from all partitions evenly avoids that.
        """
        consumer = self._consumer
        parts = sorted(consumer.assignment())
        if len(parts) < 2:
            return {}
        self._turn = (self._turn + 1) % len(parts)
        parts = parts[self._turn :] + parts[: self._turn]
        share = -(-max_records // len(parts))
        left = max_records
        out: dict[Any, list[Any]] = {}
        for tp in parts:
            got = await consumer.getmany(tp, timeout_ms=0, max_records=min(share, left))
            for part, records in got.items():
                out[part] = records
                left -= len(records)
            if left <= 0:
                return out
        if out:  # fill up from partitions with more buffered than their share
            for part, records in (await consumer.getmany(timeout_ms=0, max_records=left)).items():
                out[part] = out.get(part, []) + records
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the next offsets to read."""
        try:
            await self._consumer.commit(
                {
                    aiokafka.TopicPartition(tp.topic, tp.partition): off
                    for tp, off in offsets.items()
                }
            )
        except _COMMIT_REJECTED as exc:
            raise CommitFailed(
                f"Kafka rejected the commit of group {self.group!r}: {exc!r}"
            ) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(self.settings, "to commit", exc) from exc
        except kerr.KafkaError as exc:
            raise CommitFailed(f"Kafka commit of group {self.group!r} failed: {exc!r}") from exc

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset."""
        try:
            value = await self._consumer.committed(aiokafka.TopicPartition(tp.topic, tp.partition))
        except kerr.KafkaError as exc:
            raise _unavailable(self.settings, "to read committed offsets", exc) from exc
        return int(value) if value is not None else None

    def assignment(self) -> set[TopicPartition]:
        """Partitions assigned now."""
        if self._consumer is None:
            return set()
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def highwater(self, tp: TopicPartition) -> int | None:
        """High watermark from the last fetch response."""
        if self._consumer is None:
            return None
        try:
            value = self._consumer.highwater(aiokafka.TopicPartition(tp.topic, tp.partition))
        except kerr.KafkaError:
            return None
        return int(value) if value is not None else None

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The partitions' end offsets (a ListOffsets request)."""
        try:
            ends = await self._consumer.end_offsets(
                [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in tps]
            )
        except (*UNAVAILABLE_ERRORS, kerr.KafkaError) as exc:
            raise _unavailable(self.settings, "to read end offsets", exc) from exc
        return {TopicPartition(tp.topic, tp.partition): int(off) for tp, off in ends.items()}

    async def stop(self) -> None:
        """Leave the group."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
