"""The broker protocol: what consumers and publishers need from Kafka (or its stand-in).

Two implementations: :class:`~nativekit.messaging._wire.memory.MemoryBroker` (the
reference, in-process) and :class:`~nativekit.backends.kafka._broker.KafkaBroker`
(aiokafka). Only the Kafka module imports aiokafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import NamedTuple, Protocol

Headers = list[tuple[str, bytes]]

#: True while a caller sends a batch of records at once (the outbox relay with a read
#: of many entries): a broker may hold them for its linger so they share record
#: batches, rather than send the first ones alone (small batches cost every consumer).
SENDING_MANY: ContextVar[bool] = ContextVar("nativekit_sending_many", default=False)


class TopicPartition(NamedTuple):
    """One partition of a topic."""

    topic: str
    partition: int


class Record(NamedTuple):
    """A record fetched from a partition (a tuple: cheap to build per message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        """The record's topic-partition."""
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Sent:
    """Where the broker stored a published record."""

    topic: str
    partition: int
    offset: int


RebalanceCallback = Callable[[set[TopicPartition]], Awaitable[None]]


class GroupConsumer(Protocol):
    """A member of a consumer group: fetches records of its assigned partitions.

    ``on_revoked`` is awaited before partitions move to another member (commit
    there); ``on_assigned`` after new partitions arrived. Offsets are committed
    only by :meth:`commit` (no auto-commit).
    """

    async def start(self) -> None:
        """Join the group."""

    async def fetch(self, *, wait: float, max_records: int) -> list[Record]:
        """Records of assigned partitions in offset order per partition; [] after ``wait`` s."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp`` (None when nothing was committed)."""

    def assignment(self) -> set[TopicPartition]:
        """Partitions assigned to this member now."""

    def highwater(self, tp: TopicPartition) -> int | None:
        """Offset after the last record of ``tp`` as last seen (None when unknown)."""

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Offset after the last record of each of ``tps``, asked of the broker now."""

    async def stop(self) -> None:
        """Leave the group (without committing; the caller commits first)."""


class Broker(Protocol):
    """Publishes records and creates group consumers."""

    async def start(self) -> None:
        """Connect the producer."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers | None = None
    ) -> Sent:
        """Append a record and return once the broker acknowledged it (acks=all)."""

    async def create_topics(self, topics: Mapping[str, int]) -> None:
        """Create topics (name → partition count) that do not exist yet."""

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        instance_id: str | None = None,
    ) -> GroupConsumer:
        """A new (not yet started) member of ``group`` subscribed to ``topics``;
        ``instance_id`` makes it a static member (Kafka's ``group.instance.id``) where
        the broker supports it."""

    async def ping(self) -> None:
        """Raise BackendUnavailable when the broker does not answer."""

    async def aclose(self) -> None:
        """Close the producer and any connection."""
