"""What operators see of a consumer: its group, partitions, positions, lag and last error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nativekit.messaging._consume.joining import JoinState
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._wire.broker import TopicPartition


@dataclass(frozen=True)
class PartitionStatus:
    """One assigned partition as last measured by the lag timer.

    Attributes:
        position: the first offset not yet finished (what the next commit would say).
        end: the broker's end offset; ``lag`` is ``end - position``.
    """

    topic: str
    partition: int
    position: int | None
    end: int | None

    @property
    def lag(self) -> int | None:
        """Records not yet finished (None until the first reading)."""
        if self.position is None or self.end is None:
            return None
        return max(0, self.end - self.position)


@dataclass(frozen=True)
class ConsumerStatus:
    """A consumer right now.

    Attributes:
        state: ``joining`` (no partitions yet), ``running``, ``failed`` (the join
            deadline passed) or ``stopped``.
        error: the last error of the fetch loop or the join, if the consumer has one now.
    """

    group: str
    handler: str
    topics: tuple[str, ...]
    dead_letter_topics: tuple[str, ...]
    state: str
    in_flight: int
    error: str | None
    partitions: list[PartitionStatus] = field(default_factory=list)

    @property
    def lag(self) -> int:
        """The sum of the measured partitions' lag."""
        return sum(p.lag or 0 for p in self.partitions)


def describe(
    options: ConsumerOptions,
    handler: str,
    join: JoinState,
    running: bool,
    assigned: Iterable[TopicPartition],
    readings: Mapping[TopicPartition, tuple[int, int]],
    in_flight: int,
    error: str | None,
) -> ConsumerStatus:
    """The :class:`ConsumerStatus` of a consumer from its parts."""
    if not running:
        state = "stopped"
    elif join.joined:
        state = "running"
    else:
        state = "failed" if join.overdue else "joining"
    partitions = [
        PartitionStatus(tp.topic, tp.partition, *readings.get(tp, (None, None)))
        for tp in sorted(assigned, key=lambda tp: (tp.topic, tp.partition))
    ]
    topics = tuple(options.topics)
    return ConsumerStatus(
        group=options.group,
        handler=handler,
        topics=topics,
        dead_letter_topics=tuple(dict.fromkeys(options.dlq_for(t) for t in topics)),
        state=state,
        in_flight=in_flight,
        error=error or join.error,
        partitions=partitions,
    )
