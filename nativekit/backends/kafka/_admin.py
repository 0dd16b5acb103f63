"""Operator access to Kafka (aiokafka): cluster metadata, topic retention, reading a topic.

Used by the ``nativekit`` command (``dlq``, ``check``); services never need it.
aiokafka errors are translated here, like in :mod:`nativekit.backends.kafka._broker`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiokafka
import aiokafka.errors as kerr
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from nativekit.backends.kafka._broker import UNAVAILABLE_ERRORS
from nativekit.backends.kafka._client import kafka_client_options
from nativekit.errors import BackendUnavailable
from nativekit.messaging._errors import MessagingError
from nativekit.messaging._wire.broker import Record
from nativekit.settings import Settings


class TopicNotFound(MessagingError, LookupError):
    """The topic does not exist on the cluster."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the cluster says about itself."""

    cluster_id: str | None
    brokers: list[str]
    controller_id: int | None
    #: What the broker answered to ApiVersions, e.g. "36 APIs, Produce v0-11, Fetch v0-17"
    #: (Kafka does not report its release over the protocol); None when unknown.
    api_versions: str | None = None


@dataclass(frozen=True)
class TopicRetention:
    """A topic's ``retention.ms`` in seconds: None when the broker did not report it,
    ``inf`` for unlimited (-1)."""

    topic: str
    seconds: float | None
    note: str | None = None


class KafkaAdmin:
    """A short-lived operator connection to the cluster of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: Any = None

    @property
    def servers(self) -> str:
        """The bootstrap servers, for messages."""
        return ",".join(self.settings.kafka.bootstrap_servers)

    def _unavailable(self, op: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Kafka at {self.servers} failed {op}: {type(exc).__name__}: {exc}. "
            "Is NATIVEKIT_KAFKA_URL right and the broker up?"
        )

    def _options(self) -> dict[str, Any]:
        options = kafka_client_options(self.settings)
        options.pop("connections_max_idle_ms", None)
        options["request_timeout_ms"] = int(
            max(self.settings.connect_timeout_seconds, 1.0) * 1000 * 2
        )
        return options

    async def start(self) -> None:
        """Connect (raises :class:`BackendUnavailable`)."""
        admin = AIOKafkaAdminClient(**self._options())
        try:
            await asyncio.wait_for(admin.start(), self.settings.connect_timeout_seconds * 2)
        except (TimeoutError, *UNAVAILABLE_ERRORS) as exc:
            await admin.close()
            raise self._unavailable("to connect", exc) from exc
        self._admin = admin

    async def aclose(self) -> None:
        """Close the connection."""
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()

    async def cluster(self) -> ClusterInfo:
        """Cluster id, brokers (``id@host:port``) and controller."""
        try:
            raw = await self._admin.describe_cluster()
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable("a metadata request", exc) from exc
        brokers = [f"{b['node_id']}@{b['host']}:{b['port']}" for b in raw.get("brokers", [])]
        return ClusterInfo(
            raw.get("cluster_id"), brokers, raw.get("controller_id"), self._api_versions()
        )

    def _api_versions(self) -> str | None:
        # aiokafka keeps each connection's ApiVersions answer but has no public accessor
        for conn in getattr(self._admin._client, "_conns", {}).values():
            versions = getattr(conn, "_versions", None)
            if isinstance(versions, dict) and 0 in versions and 1 in versions:
                produce, fetch = versions[0], versions[1]
                return (
                    f"{len(versions)} APIs, Produce v{produce[0]}-{produce[1]}, "
                    f"Fetch v{fetch[0]}-{fetch[1]}"
                )
        return None

    async def topics(self) -> list[str]:
        """Names of the topics, sorted."""
        try:
            return sorted(await self._admin.list_topics())
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable("to list topics", exc) from exc

    async def retention(self, topic: str) -> TopicRetention:
        """The topic's ``retention.ms``; brokers that cannot tell give ``seconds=None``.

        Every config is requested (no name filter): some Kafka-compatible brokers
        (Tansu) close the connection on a filtered DescribeConfigs request.
        """
        try:
            responses = await self._admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
        except UNAVAILABLE_ERRORS as exc:
            return TopicRetention(topic, None, f"DescribeConfigs failed: {type(exc).__name__}")
        except kerr.KafkaError as exc:
            return TopicRetention(topic, None, f"DescribeConfigs refused: {exc}")
        for response in responses:
            for error, _, _, name, entries in response.resources:
                if name != topic:
                    continue
                if error:
                    return TopicRetention(topic, None, f"DescribeConfigs error code {error}")
                for entry in entries:
                    if entry[0] == "retention.ms" and entry[1] is not None:
                        ms = int(entry[1])
                        return TopicRetention(topic, float("inf") if ms < 0 else ms / 1000)
        return TopicRetention(topic, None, "the broker did not report retention.ms")

    async def read(
        self, topic: str, *, limit: int, within: float = 10.0
    ) -> tuple[list[Record], int]:
        """Up to ``limit`` records of ``topic`` from its start, oldest first, and the
        number of records the topic holds.

        Raises :class:`TopicNotFound`, :class:`BackendUnavailable`.
        """
        consumer = aiokafka.AIOKafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="earliest", **self._options()
        )
        try:
            await consumer.start()
            return await _read(consumer, topic, limit, within)
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(f"to read {topic!r}", exc) from exc
        finally:
            await consumer.stop()


async def _read(consumer: Any, topic: str, limit: int, within: float) -> tuple[list[Record], int]:
    if topic not in await consumer.topics():  # also loads the topics' metadata
        raise TopicNotFound(f"topic {topic!r} does not exist")
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise TopicNotFound(f"topic {topic!r} does not exist")
    tps = [aiokafka.TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    first = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    total = sum(end[tp] - first[tp] for tp in tps)
    wanted = {}
    for tp in tps:
        if first[tp] < end[tp]:
            consumer.seek(tp, first[tp])
            wanted[tp] = end[tp]
    out: list[Record] = []
    deadline = time.monotonic() + within
    while wanted and len(out) < limit and time.monotonic() < deadline:
        batches = await consumer.getmany(*wanted, timeout_ms=200, max_records=limit - len(out))
        for tp, records in batches.items():
            out += [
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp)
                for r in records
                if r.offset < wanted[tp]
            ]
            if records and records[-1].offset + 1 >= wanted[tp]:
                del wanted[tp]
    out.sort(key=lambda r: (r.timestamp_ms or 0, r.partition, r.offset))
    return out[:limit], total
