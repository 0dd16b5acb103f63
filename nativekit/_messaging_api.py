"""The messaging methods of a service: publish, declare publishers, consume, answer commands."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from nativekit.messaging._consume.handler import HandlerFunc

if TYPE_CHECKING:
    from pydantic import BaseModel

    from nativekit.messaging import Published, TopicPublisher
    from nativekit.messaging._commands.handlers import CommandHandlers
    from nativekit.messaging._messaging import ConsumerKwargs, Messaging

H = TypeVar("H", bound=HandlerFunc)


class MessagingMethods:
    """Mixed into :class:`nativekit.Service`: its messaging, as methods of the service."""

    messaging: Messaging
    _commands: CommandHandlers

    async def publish(
        self,
        topic: str,
        event: BaseModel | bytes,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        message_id: str | None = None,
    ) -> Published:
        """Publish a pydantic model (as JSON) or bytes; returns once the broker acknowledged."""
        return await self.messaging.publish(
            topic, event, key=key, headers=headers, message_id=message_id
        )

    def publisher(
        self,
        topic: str,
        *events: type[BaseModel],
        key: str | None = None,
        description: str | None = None,
    ) -> TopicPublisher:
        """Declare that this service publishes ``events`` (models) to ``topic``.

        Returns a publisher whose ``publish(event)`` refuses other models and takes the
        message key from the ``key`` field; the AsyncAPI document lists the topic.
        """
        return self.messaging.declare_publisher(topic, events, key=key, description=description)

    def consumer(
        self, topic: str | Sequence[str], **options: Unpack[ConsumerKwargs]
    ) -> Callable[[H], H]:
        """Decorator: run ``async def handler(event: Model[, msg: Message])`` for each message
        of ``topic`` (a name or several); the options are those of ``ConsumerKwargs``:
        ``group``, ``retries``, ``non_retryable``, ``concurrency``, ``max_in_flight``,
        ``dedup_key``, ``idempotent``, ``dead_letter_topic``, ``retain``, ``event_types``."""
        return self.messaging.consumer(topic, **options)

    def command_handler(
        self, topic: str, *, concurrency: int = 16
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: answer commands of ``topic`` with ``async def h(cmd: Cmd) -> Reply``.

        Runs idempotently per the command's idempotency key (a duplicate gets the
        stored reply again); raise ``CommandRejected`` for a failure reply. Several
        handlers may share a topic: the command type picks one.
        """
        return self._commands.register(topic, concurrency=concurrency)
