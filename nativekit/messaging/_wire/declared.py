"""Declared publishers: a topic with the event models sent to it.

``svc.publisher("shop.orders", OrderPlaced, OrderCancelled, key="order_id")``
returns a :class:`TopicPublisher`. Publishing through it checks the event is one
of the declared models and takes the message key from the named field; the
declaration is what the AsyncAPI document lists as the service's send operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from nativekit.errors import ConfigError
from nativekit.messaging._wire.publisher import Published

PublishFunc = Callable[..., Awaitable[Published]]


class TopicPublisher:
    """Publishes the declared event models to one topic (see ``Service.publisher``).

    Attributes:
        topic: the topic.
        events: the event models that may be published to it.
        key: the event field whose value is the message key (None: no default key).
        description: what the topic carries, for the AsyncAPI document.
    """

    def __init__(
        self,
        topic: str,
        events: Sequence[type[BaseModel]],
        *,
        publish: PublishFunc,
        key: str | None = None,
        description: str | None = None,
    ) -> None:
        if not events:
            raise ConfigError(f"publisher({topic!r}) needs at least one event model.")
        for event in events:
            if not (isinstance(event, type) and issubclass(event, BaseModel)):
                raise ConfigError(
                    f"publisher({topic!r}) takes pydantic model classes, got {event!r}."
                )
            if key is not None and key not in event.model_fields:
                raise ConfigError(
                    f"publisher({topic!r}, key={key!r}): {event.__name__} has no field {key!r}; "
                    f"its fields are {sorted(event.model_fields)}."
                )
        self.topic = topic
        self.events = tuple(events)
        self.key = key
        self.description = description
        self._publish = publish

    def check(self, event: BaseModel) -> None:
        """Raise ``TypeError`` unless ``event`` is one of the declared models."""
        if not isinstance(event, self.events):
            names = ", ".join(e.__name__ for e in self.events)
            raise TypeError(
                f"{type(event).__name__} is not declared for topic {self.topic!r} "
                f"(declared: {names}); add it to svc.publisher({self.topic!r}, ...)."
            )

    def key_of(self, event: BaseModel) -> str | None:
        """The message key of ``event``: its ``key`` field as text (None without one)."""
        if self.key is None:
            return None
        value: Any = getattr(event, self.key)
        return None if value is None else str(value)

    async def publish(
        self,
        event: BaseModel,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        message_id: str | None = None,
    ) -> Published:
        """Publish ``event`` to the topic; the key defaults to the declared field's value."""
        self.check(event)
        return await self._publish(
            self.topic,
            event,
            key=self.key_of(event) if key is None else key,
            headers=headers,
            message_id=message_id,
        )
