"""Messaging of one service: the broker, the publisher and the consumers, as one component."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict, TypeVar, Unpack

from pydantic import BaseModel

from nativekit._supervisor import Supervisor
from nativekit.errors import ConfigError
from nativekit.messaging._consume.consumer import Consumer
from nativekit.messaging._consume.handler import HandlerFunc, inspect_handler
from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._dedup import DedupStore
from nativekit.messaging._wire.broker import Broker
from nativekit.messaging._wire.declared import TopicPublisher
from nativekit.messaging._wire.envelope import Message
from nativekit.messaging._wire.publisher import Published, Publisher

if TYPE_CHECKING:
    from nativekit._context import ServiceContext
    from nativekit._transaction import TransactionFactory

H = TypeVar("H", bound=HandlerFunc)


class ConsumerKwargs(TypedDict, total=False):
    """Options of ``Service.consumer`` besides the topic.

    Attributes:
        group: consumer group; default ``<service>.<handler name>`` (one group per
            consumer; ``NATIVEKIT_CONSUMER_GROUP_DEFAULT=service`` names it after the
            service, as before).
        retries: handler retries before dead-lettering (``NATIVEKIT_CONSUMER_RETRIES``).
        non_retryable: exception types dead-lettered at the first failure.
        concurrency: messages handled at once per partition; order is kept per key.
        max_in_flight: fetched but unfinished messages (``NATIVEKIT_CONSUMER_MAX_IN_FLIGHT``).
        dedup_key: derive the idempotency key from the message instead of its id.
        idempotent: False turns deduplication off (at-least-once handling).
        dead_letter_topic: where failed messages go; default ``<topic>.dlq``.
        retain: seconds DONE marks are kept (``NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS``).
        event_types: the event types (model classes or names) the handler takes; a
            record whose ``event-type`` header names another type is committed without
            being claimed or handled, and counted as ``skipped``. Default: every record.
    """

    group: str | None
    retries: int | None
    non_retryable: Sequence[type[BaseException]]
    concurrency: int
    max_in_flight: int | None
    dedup_key: Callable[[Message], str] | None
    idempotent: bool
    dead_letter_topic: str | None
    retain: float | None
    event_types: Sequence[type[BaseModel] | str] | None


def _short(handler: str) -> str:
    """A handler's name without the ``<locals>`` path of a function defined in another."""
    return handler.rpartition("<locals>.")[2]


def _type_names(types: Sequence[type[BaseModel] | str] | None) -> frozenset[str] | None:
    """The ``event-type`` header values of ``event_types`` (a model's class name)."""
    if types is None:
        return None
    if isinstance(types, str | type):
        types = [types]
    names = set()
    for t in types:
        if isinstance(t, type) and issubclass(t, BaseModel):
            names.add(t.__name__)
        elif isinstance(t, str) and t:
            names.add(t)
        else:
            raise ConfigError(
                f"event_types takes pydantic model classes or event type names, got {t!r}."
            )
    if not names:
        raise ConfigError("event_types is empty: the consumer would skip every message.")
    return frozenset(names)


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class Messaging:
    """Publisher and consumers of a service.

    Args:
        ctx: the service's context (settings, metrics, health).
        broker: builds the broker the settings choose (called on first use).
        dedup_store: builds the dedup store of a consumer: ``(namespace, retain)``.
        transactions: gives the factory of handlers' transactions (None without a database).
    """

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        broker: Callable[[], Broker],
        dedup_store: Callable[[str, float], DedupStore],
        transactions: Callable[[], TransactionFactory | None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.metrics = MessagingMetrics(ctx.name, ctx.metrics.registry)
        self.supervisor = Supervisor(ctx.name, ctx.metrics.registry)
        self.consumers: list[Consumer] = []
        #: Topics declared with ``publisher()``, for the AsyncAPI document.
        self.publishers: list[TopicPublisher] = []
        self._broker_factory = broker
        self._dedup_factory = dedup_store
        self.transactions = transactions
        self._broker: Broker | None = None
        self._store_factory: Callable[[str], DedupStore] | None = None
        self._publisher: Publisher | None = None
        self._started = False

    # -- backends ---------------------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """The broker chosen by ``NATIVEKIT_KAFKA_URL`` (or set with :meth:`use_broker`)."""
        if self._broker is None:
            self._broker = self._broker_factory()
        return self._broker

    def use_broker(self, broker: Broker) -> None:
        """Use ``broker`` instead of the one the settings choose (before startup)."""
        if self._started:
            raise ConfigError("use_broker() must be called before the service starts.")
        self._broker = broker
        self._publisher = None
        for consumer in self.consumers:
            consumer.use_backends(broker=broker)

    def use_dedup_store(self, factory: Callable[[str], DedupStore]) -> None:
        """Build dedup stores with ``factory(namespace)`` (before the service starts)."""
        if self._started:
            raise ConfigError("use_dedup_store() must be called before the service starts.")
        self._store_factory = factory
        for consumer in self.consumers:
            if consumer.options.idempotent:
                consumer.use_backends(store=factory(consumer.name))

    def _store(self, namespace: str, retain: float) -> DedupStore:
        if self._store_factory is not None:
            return self._store_factory(namespace)
        return self._dedup_factory(namespace, retain)

    @property
    def publisher(self) -> Publisher:
        """The publisher (shared by ``Service.publish`` and reply-sending handlers)."""
        if self._publisher is None:
            self._publisher = Publisher(
                self.broker, self.metrics, tracing=self.settings.telemetry.tracing_enabled
            )
        return self._publisher

    # -- API ---------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        event: BaseModel | bytes,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        message_id: str | None = None,
    ) -> Published:
        """Publish ``event`` (see :meth:`Publisher.publish`)."""
        return await self.publisher.publish(
            topic, event, key=key, headers=headers, message_id=message_id
        )

    def declare_publisher(
        self,
        topic: str,
        events: Sequence[type[BaseModel]],
        *,
        key: str | None = None,
        description: str | None = None,
    ) -> TopicPublisher:
        """A publisher of ``events`` to ``topic`` (see ``Service.publisher``)."""
        if not _TOPIC.match(topic):
            raise ConfigError(
                f"{topic!r} is not a valid topic name; use 1-249 letters, digits, '.', '_', '-'."
            )
        declared = TopicPublisher(
            topic, events, publish=self.publish, key=key, description=description
        )
        self.publishers.append(declared)
        return declared

    def consumer(
        self, topic: str | Sequence[str], **kwargs: Unpack[ConsumerKwargs]
    ) -> Callable[[H], H]:
        """Decorator registering a consumer (see ``Service.consumer``)."""
        unknown = set(kwargs) - set(ConsumerKwargs.__annotations__)
        if unknown:
            raise ConfigError(
                f"consumer() got unknown option(s) {sorted(unknown)}; "
                f"expected some of {sorted(ConsumerKwargs.__annotations__)}."
            )
        topics = (topic,) if isinstance(topic, str) else tuple(topic)
        group = kwargs.get("group")
        retries = kwargs.get("retries")
        concurrency = kwargs.get("concurrency", 1)
        dead_letter_topic = kwargs.get("dead_letter_topic")
        retain = kwargs.get("retain")
        idempotent = kwargs.get("idempotent", True)
        event_types = _type_names(kwargs.get("event_types"))
        for name in (*topics, *([dead_letter_topic] if dead_letter_topic else [])):
            if not _TOPIC.match(name):
                raise ConfigError(
                    f"{name!r} is not a valid topic name; use 1-249 letters, digits, '.', '_', '-'."
                )
        if concurrency < 1:
            raise ConfigError(f"consumer concurrency must be >= 1, got {concurrency}.")
        s = self.settings
        retain = s.consumer.dedup_retention_seconds if retain is None else retain
        if retain < s.consumer.redelivery_horizon_seconds:
            raise ConfigError(
                f"Dedup retention {retain:g}s is shorter than "
                "NATIVEKIT_CONSUMER_REDELIVERY_HORIZON_SECONDS="
                f"{s.consumer.redelivery_horizon_seconds:g}s: a message redelivered after its "
                "DONE mark expired "
                "would run twice. Raise the retention or lower the horizon."
            )

        def decorator(func: H) -> H:
            if self._started:
                raise ConfigError("Consumers must be declared before the service starts.")
            spec = inspect_handler(func)
            options = ConsumerOptions(
                topics=topics,
                group=group or self._default_group(spec.name),
                retries=s.consumer.retries if retries is None else retries,
                backoff=s.consumer.retry_backoff_seconds,
                backoff_max=s.consumer.retry_backoff_max_seconds,
                non_retryable=tuple(kwargs.get("non_retryable", ())),
                concurrency=concurrency,
                max_in_flight=kwargs.get("max_in_flight") or s.consumer.max_in_flight,
                fetch_max=s.consumer.fetch_max_records,
                dedup_key=kwargs.get("dedup_key"),
                idempotent=idempotent,
                dead_letter_topic=dead_letter_topic,
                lease=s.consumer.dedup_lease_seconds,
                retain=retain,
                drain_timeout=s.consumer.drain_timeout_seconds,
                commit_interval=s.consumer.commit_interval_seconds,
                event_types=event_types,
            )
            # DONE marks stay where they were before groups became one per consumer
            namespace = f"{group or self.ctx.name}:{spec.name}"
            instance = s.consumer.group_instance_id
            consumer = Consumer(
                spec,
                options,
                broker=self.broker,
                store=self._store(namespace, retain) if idempotent else None,
                metrics=self.metrics,
                service=self.ctx.name,
                tracing=self.settings.telemetry.tracing_enabled,
                namespace=namespace,
                supervisor=self.supervisor,
                join_timeout=s.consumer.join_timeout_seconds,
                lag_interval=s.consumer.lag_interval_seconds,
                group_instance_id=f"{instance}.{_short(spec.name)}" if instance else None,
                transactions=self.transactions,
            )
            self.add_consumer(consumer, check=f"consumer:{namespace}")
            return func

        return decorator

    def _default_group(self, handler: str) -> str:
        if self.settings.consumer.group_default == "service":
            return self.ctx.name
        return f"{self.ctx.name}.{_short(handler)}"

    # -- lifecycle ---------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer, *, check: str) -> None:
        """Run ``consumer`` with the others (its readiness check named ``check``)."""
        if self._started:
            raise ConfigError("Consumers must be declared before the service starts.")
        self.consumers.append(consumer)
        self.ctx.health.add(check, consumer.check, component_type="component")
        self.ctx.health.add_startup(check, consumer.joining)

    async def start(self) -> None:
        """Start every consumer; they join their groups in the background, and the
        producer connects on the first publish, so startup never waits for the broker.

        On a failure, cancellation included, what started is stopped before the error
        goes on: the lifecycle stops only components whose start returned.
        """
        self._started = True
        try:
            for consumer in self.consumers:
                await consumer.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop consumers (drain and commit), then close the broker if one was built."""
        for consumer in reversed(self.consumers):
            try:
                await consumer.stop()
            except Exception as exc:
                self.ctx.log.error("consumer.stop_failed", consumer=consumer.name, error=repr(exc))
        self._started = False
        if self._broker is not None:
            await self._broker.aclose()
