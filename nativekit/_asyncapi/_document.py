"""The AsyncAPI 3.0 document of one service or of several served together.

Every topic is a channel (its id is the topic); every handler, declared
publisher and saga command step an operation. Messages are shared components:
the payload is the pydantic model's JSON Schema (one ``components/schemas``
entry per model, as in the OpenAPI document) and the headers are the envelope
nativekit writes (``_headers``).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter

from nativekit._asyncapi import _headers
from nativekit._http.openapi._schemas import SchemaSet
from nativekit.saga._define.command_steps import CommandSpec, CommandStep

if TYPE_CHECKING:
    from nativekit.messaging._commands.handlers import CommandHandlers
    from nativekit.messaging._consume.consumer import Consumer
    from nativekit.messaging._messaging import Messaging
    from nativekit.saga._run.runtime import SagaRuntime

ASYNCAPI_VERSION = "3.0.0"
_KAFKA = "0.5.0"  # the Kafka bindings version
#: Consumers that run command handlers are described by the handlers themselves.
_COMMAND_CONSUMER = "commands:"


@dataclass(frozen=True)
class MessagingSource:
    """What one service sends and receives."""

    name: str
    messaging: Messaging
    commands: CommandHandlers
    sagas: SagaRuntime
    reply_topic: str


def _summary(obj: Any) -> str | None:
    doc = inspect.getdoc(obj)
    return " ".join(doc.split("\n\n")[0].split()) if doc else None


class _Document:
    def __init__(self) -> None:
        self.schemas = SchemaSet()
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self._kinds: dict[str, str] = {}
        self._adapters: dict[type[BaseModel], TypeAdapter[Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}

    def channel(self, topic: str | None, *, cid: str | None = None, about: str = "") -> str:
        cid = cid or str(topic)
        if cid not in self.channels:
            channel: dict[str, Any] = {"address": topic, "messages": {}}
            if about:
                channel["description"] = about
            self.channels[cid] = channel
        return cid

    def message(self, model: type[BaseModel] | None, kind: str, key: str | None) -> str:
        """The id of the component message of ``model`` with headers of ``kind``."""
        name = model.__name__ if model is not None else "Bytes"
        mid = name if self._kinds.get(name, kind) == kind else f"{name}.{kind}"
        if mid in self.messages:
            return mid
        self._kinds.setdefault(name, kind)
        message: dict[str, Any] = {"name": name, "title": name}
        if model is not None:
            adapter = self._adapters.setdefault(model, TypeAdapter(model))
            summary = _summary(model)
            if summary:
                message["summary"] = summary
            message["contentType"] = "application/json"
            message["payload"] = self.schemas.add(adapter, "serialization")
        else:
            message["contentType"] = "application/octet-stream"
            message["payload"] = {"type": "string", "description": "Raw bytes."}
        message["headers"] = _headers.headers(kind, name if model is not None else None)
        if key:
            message["bindings"] = {
                "kafka": {"key": {"type": "string", "description": key}, "bindingVersion": _KAFKA}
            }
        self.messages[mid] = message
        return mid

    def dead_letter(self) -> str:
        if "DeadLetter" not in self.messages:
            self.messages["DeadLetter"] = {
                "name": "DeadLetter",
                "title": "DeadLetter",
                "summary": "A message its consumer gave up on: the original key and payload "
                "with the reason in headers (see `nativekit dlq`).",
                "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
                "payload": {"description": "The original payload, unchanged."},
            }
        return "DeadLetter"

    def on(self, cid: str, mid: str) -> dict[str, str]:
        """Put message ``mid`` on channel ``cid``; a reference to it there."""
        self.channels[cid]["messages"][mid] = {"$ref": f"#/components/messages/{mid}"}
        return {"$ref": f"#/channels/{cid}/messages/{mid}"}

    def operation(
        self, oid: str, action: str, cid: str, mids: Sequence[str], **more: Any
    ) -> dict[str, Any]:
        base = oid
        n = 2
        while oid in self.operations:
            oid, n = f"{base}.{n}", n + 1
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [self.on(cid, mid) for mid in mids],
            **{k: v for k, v in more.items() if v is not None},
        }
        self.operations[oid] = operation
        return operation


def build_asyncapi(
    sources: Sequence[MessagingSource], *, title: str, version: str
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``sources`` (one per service, in order)."""
    doc = _Document()
    for source in sources:
        _publishers(doc, source)
        _consumers(doc, source)
        _command_handlers(doc, source)
        _command_steps(doc, source)
    channels = doc.schemas.resolve(doc.channels)
    messages = doc.schemas.resolve(doc.messages)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Topics, messages and their headers. Every message carries the "
            "envelope headers (EventHeaders); saga commands and replies carry more.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": doc.operations,
        "components": {
            "messages": messages,
            "schemas": {**doc.schemas.components, **_headers.SCHEMAS},
        },
    }


def _publishers(doc: _Document, source: MessagingSource) -> None:
    for declared in source.messaging.publishers:
        cid = doc.channel(declared.topic, about=declared.description or "")
        key = f"the event's {declared.key}" if declared.key else None
        mids = [doc.message(event, "EventHeaders", key) for event in declared.events]
        doc.operation(
            f"{source.name}.send.{declared.topic}",
            "send",
            cid,
            mids,
            summary=declared.description,
        )


def _consumers(doc: _Document, source: MessagingSource) -> None:
    for consumer in source.messaging.consumers:
        if consumer.spec.name.startswith(_COMMAND_CONSUMER):
            _dead_letters(doc, source, consumer, consumer.spec.name)
            continue
        spec, options = consumer.spec, consumer.options
        models = list(spec.models.values())
        if options.event_types is not None:
            models = [m for m in models if m.__name__ in options.event_types] or models
        handler = spec.name.rpartition("<locals>.")[2]
        for topic in options.topics:
            cid = doc.channel(topic)
            mids = [doc.message(m, "EventHeaders", None) for m in models] or [
                doc.message(None, "EventHeaders", None)
            ]
            doc.operation(
                f"{source.name}.{handler}",
                "receive",
                cid,
                mids,
                summary=_summary(spec.func),
                bindings={"kafka": _group(options.group)},
            )
        _dead_letters(doc, source, consumer, handler)


def _group(group: str) -> dict[str, Any]:
    return {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": _KAFKA}


def _dead_letters(doc: _Document, source: MessagingSource, consumer: Consumer, name: str) -> None:
    for topic in consumer.options.topics:
        dlq = consumer.options.dlq_for(topic)
        cid = doc.channel(dlq, about=f"Dead letters of {topic}.")
        doc.operation(
            f"{source.name}.{name}.dead-letter".replace(":", "."),
            "send",
            cid,
            [doc.dead_letter()],
            summary=f"Messages of {topic} the handler gave up on.",
        )


def _command_handlers(doc: _Document, source: MessagingSource) -> None:
    for topic, entry in source.commands.topics.items():
        cid = doc.channel(topic)
        replies = doc.channel(
            None,
            cid=f"{topic}.reply-to",
            about=f"Replies to the commands of {topic}: the topic each command's "
            "reply-to header names.",
        )
        for handler in entry.handlers.values():
            command = doc.message(handler.command, "CommandHeaders", "the saga id")
            reply = doc.message(handler.reply, "ReplyHeaders", "the saga id")
            doc.operation(
                f"{source.name}.{handler.func.__name__}",
                "receive",
                cid,
                [command],
                summary=_summary(handler.func),
                bindings={"kafka": _group(source.name)},
                reply={
                    "address": {
                        "location": "$message.header#/reply-to",
                        "description": "The command's reply-to header.",
                    },
                    "channel": {"$ref": f"#/channels/{replies}"},
                    "messages": [doc.on(replies, reply)],
                },
            )


def _command_steps(doc: _Document, source: MessagingSource) -> None:
    replies: list[str] = []
    reply_cid = doc.channel(source.reply_topic) if _has_command_steps(source) else None
    for saga in source.sagas.sagas.values():
        for step in saga.steps:
            if not isinstance(step, CommandStep) or reply_cid is None:
                continue
            directions: list[tuple[str, CommandSpec | None, Any]] = [
                ("", step.command, step.func),
                (".compensate", step.compensation_command, step.compensation),
            ]
            for suffix, spec, func in directions:
                if spec is None or func is None:
                    continue
                model = typing.get_type_hints(func).get("return")
                command = doc.message(model, "CommandHeaders", "the saga id")
                reply = doc.message(spec.reply, "ReplyHeaders", "the saga id")
                replies.append(reply)
                doc.operation(
                    f"{source.name}.{saga.name}.{step.name}{suffix}",
                    "send",
                    doc.channel(spec.topic),
                    [command],
                    summary=_summary(func),
                    reply={
                        "channel": {"$ref": f"#/channels/{reply_cid}"},
                        "messages": [doc.on(reply_cid, reply)],
                    },
                )
    if reply_cid is not None:
        doc.operation(
            f"{source.name}.saga-replies",
            "receive",
            reply_cid,
            sorted(set(replies)),
            summary="Replies to this service's saga commands; each resumes its saga.",
            bindings={"kafka": _group(f"{source.name}.replies")},
        )


def _has_command_steps(source: MessagingSource) -> bool:
    return any(
        isinstance(step, CommandStep) for saga in source.sagas.sagas.values() for step in saga.steps
    )
