"""Message envelope: the headers nativekit sets, encoding and the metadata handlers see."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel

from nativekit.messaging._wire.broker import Headers, Record

MESSAGE_ID = "message-id"
EVENT_TYPE = "event-type"
CONTENT_TYPE = "content-type"
PRODUCED_AT = "produced-at"
JSON = "application/json"
BINARY = "application/octet-stream"
#: W3C trace context headers (written by ``inject_trace``, read by consumers and the relay).
TRACE_CONTEXT = ("traceparent", "tracestate")

# Dead-letter headers: each starts with DLQ_PREFIX (dropped when a letter is republished).
DLQ_PREFIX = "dlq-"
DLQ_TOPIC = "dlq-original-topic"
DLQ_PARTITION = "dlq-original-partition"
DLQ_OFFSET = "dlq-original-offset"
DLQ_GROUP = "dlq-group"
DLQ_ERROR_TYPE = "dlq-error-type"
DLQ_ERROR = "dlq-error-message"
DLQ_ATTEMPTS = "dlq-attempts"
DLQ_TIME = "dlq-time"
DLQ_HANDLER = "dlq-handler"  # the handler that gave up: with the group, its dedup namespace
DLQ_DEDUP_KEY = "dlq-dedup-key"  # the key marked DEAD (absent for non-idempotent consumers)
DLQ_DEDUP_RETENTION = "dlq-dedup-retention"  # the consumer's retain (s): its store's buckets
DLQ_DEDUP_NAMESPACE = "dlq-dedup-namespace"  # the scope of the key (group:handler or older)
# Set on a dead letter replayed by ``nativekit dlq replay``: "<dlq topic>:<partition>:<offset>".
REPLAY_OF = "replay-of"


def encode(event: BaseModel | bytes) -> tuple[bytes, str, str]:
    """Payload bytes, content type and event type of ``event``."""
    if isinstance(event, bytes | bytearray | memoryview):
        return bytes(event), BINARY, "bytes"
    if isinstance(event, BaseModel):
        return event.model_dump_json().encode(), JSON, type(event).__name__
    raise TypeError(
        f"publish() takes a pydantic model or bytes, got {type(event).__name__}; "
        "wrap dicts in a model so consumers can validate them."
    )


def build_headers(
    *,
    content_type: str,
    event_type: str,
    message_id: str | None = None,
    extra: Mapping[str, str | bytes] | None = None,
) -> tuple[str, Headers]:
    """The message id and the headers of a new message (trace context injected)."""
    message_id = message_id or str(uuid.uuid4())
    values: dict[str, str | bytes] = {
        MESSAGE_ID: message_id,
        EVENT_TYPE: event_type,
        CONTENT_TYPE: content_type,
        PRODUCED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    inject_trace(values)
    for name, value in (extra or {}).items():
        values[name] = value
    return message_id, [(k, v if isinstance(v, bytes) else v.encode()) for k, v in values.items()]


def event_type_of(record: Record) -> bytes | None:
    """The raw ``event-type`` header of ``record`` (the last one counts), or None."""
    found = None
    for name, value in record.headers:
        if name == EVENT_TYPE:
            found = value
    return found


def other_type(record: Record, wanted: frozenset[bytes]) -> bool:
    """Whether the record names an event type not in ``wanted`` (a record without an
    ``event-type`` header is wanted)."""
    found = event_type_of(record)
    return found is not None and found not in wanted


def inject_trace(carrier: dict[str, str | bytes]) -> None:
    """Add W3C ``traceparent``/``tracestate`` of the current span, if any."""
    from opentelemetry import propagate

    text: dict[str, str] = {}
    propagate.inject(text)
    carrier.update(text)


@dataclass(frozen=True)
class Message:
    """Metadata of the message being handled; ask for it with a ``msg: Message`` parameter."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int | None = None
    attempt: int = 1
    fencing_token: int = 0

    @classmethod
    def from_record(cls, record: Record) -> Message:
        """Metadata of ``record`` (later headers win over earlier ones of the same name)."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            dict(record.headers),
            record.timestamp_ms,
        )

    def header(self, name: str) -> str | None:
        """A header decoded as UTF-8 (None when absent)."""
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value is not None else None

    @property
    def message_id(self) -> str | None:
        """The ``message-id`` header set by the publisher."""
        return self.header(MESSAGE_ID)

    @property
    def event_type(self) -> str | None:
        """The ``event-type`` header (the model's class name)."""
        return self.header(EVENT_TYPE)
