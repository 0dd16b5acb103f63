"""The Kafka headers nativekit writes, as JSON Schemas for the AsyncAPI document."""

from __future__ import annotations

from typing import Any

from nativekit.messaging._commands import handlers as commands
from nativekit.messaging._wire import envelope as env


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


_ENVELOPE: dict[str, Any] = {
    env.MESSAGE_ID: _text(
        "Unique id of the message; consumers skip a message id they already handled."
    ),
    env.EVENT_TYPE: _text("The payload model's class name; picks the model a consumer decodes."),
    env.CONTENT_TYPE: _text("application/json for a model's JSON."),
    env.PRODUCED_AT: _text("When the message was produced (ISO 8601, UTC)."),
    "traceparent": _text("W3C trace context of the producing span (absent without tracing)."),
    "tracestate": _text("W3C trace state that goes with traceparent."),
}
_COMMAND: dict[str, Any] = {
    commands.REPLY_TO: _text("The topic the reply goes to."),
    commands.IDEMPOTENCY_KEY: _text(
        "'{saga_id}:{step}': a participant applies a command once per key and answers a "
        "duplicate with the stored reply."
    ),
    commands.SAGA_ID: _text("The saga instance that sent the command."),
    commands.SAGA_STEP: _text("The saga step that sent it."),
    commands.SAGA_DIRECTION: {"type": "string", "enum": ["forward", "compensate"]},
    commands.SAGA_ATTEMPT: _text("The attempt number of the step, from 1."),
    commands.SAGA_REPLY_TOKEN: _text("Matches the reply to the attempt waiting for it."),
}
_REPLY: dict[str, Any] = {
    commands.REPLY_STATUS: {
        "type": "string",
        "enum": ["ok", "failed"],
        "description": "ok: the payload is the reply; failed: reply-error says why (no payload).",
    },
    commands.REPLY_ERROR: _text("Why the command failed (a refusal or the last error)."),
}

SCHEMAS: dict[str, Any] = {
    "EventHeaders": {
        "type": "object",
        "description": "Headers of every message nativekit publishes.",
        "properties": _ENVELOPE,
        "required": [env.MESSAGE_ID, env.EVENT_TYPE, env.CONTENT_TYPE],
    },
    "CommandHeaders": {
        "type": "object",
        "description": "Headers of a saga command: the envelope, where to reply and how "
        "the reply is matched to the waiting step.",
        "properties": {**_ENVELOPE, **_COMMAND},
        "required": [
            env.MESSAGE_ID,
            env.EVENT_TYPE,
            commands.REPLY_TO,
            commands.IDEMPOTENCY_KEY,
            commands.SAGA_ID,
            commands.SAGA_STEP,
        ],
    },
    "ReplyHeaders": {
        "type": "object",
        "description": "Headers of a command reply: the command's saga headers echoed, "
        "and the outcome.",
        "properties": {
            **_ENVELOPE,
            **{k: v for k, v in _COMMAND.items() if k.startswith("saga-")},
            **_REPLY,
        },
        "required": [env.MESSAGE_ID, commands.REPLY_STATUS, commands.SAGA_ID],
    },
    "DeadLetterHeaders": {
        "type": "object",
        "description": "Headers of a dead letter: the original headers plus where it came "
        "from and why it was given up.",
        "properties": {
            **_ENVELOPE,
            env.DLQ_TOPIC: _text("The topic the message was read from."),
            env.DLQ_PARTITION: _text("Its partition."),
            env.DLQ_OFFSET: _text("Its offset."),
            env.DLQ_GROUP: _text("The consumer group that gave up."),
            env.DLQ_HANDLER: _text("The handler that gave up."),
            env.DLQ_ERROR_TYPE: _text("The exception type."),
            env.DLQ_ERROR: _text("The error message."),
            env.DLQ_ATTEMPTS: _text("How many times the handler ran."),
            env.DLQ_TIME: _text("When it was dead-lettered (ISO 8601)."),
        },
        "required": [env.DLQ_TOPIC, env.DLQ_ERROR_TYPE, env.DLQ_ERROR],
    },
}


def headers(kind: str, event_type: str | None) -> dict[str, Any]:
    """The headers schema of a message of ``kind`` whose ``event-type`` is ``event_type``."""
    base = {"$ref": f"#/components/schemas/{kind}"}
    if event_type is None:
        return base
    return {
        "allOf": [base, {"type": "object", "properties": {env.EVENT_TYPE: {"const": event_type}}}]
    }
