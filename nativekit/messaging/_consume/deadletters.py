"""Dead letters as operators see them, and replaying one through its consumer again.

A dead letter is the original record (value, key, headers) plus the ``dlq-*``
headers the consumer added (:mod:`nativekit.messaging._wire.envelope`). Replaying it:

1. clears the ``DEAD`` mark of its idempotency key (scope ``<group>:<handler>``
   from ``dlq-group``/``dlq-handler``, key from ``dlq-dedup-key``), so the
   consumer claims it again instead of skipping it; a key that is ``DONE``
   (replayed and handled already) is left alone and the replay is skipped;
2. publishes the original value, key and headers (without ``dlq-*``) to the
   original topic, with the same ``message-id`` (set to the original
   idempotency key when the message had none) and a ``replay-of`` header.

Every consumer group of the topic receives the copy; groups that handled the
original skip it as a duplicate because the message id is the same.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from nativekit.messaging._wire import envelope as env
from nativekit.messaging._wire.broker import Broker, Record, Sent


class Revivable(Protocol):
    """The operator side of a dedup store (``RedisDedupStore``, ``MemoryDedupStore``)."""

    async def states(self, keys: Sequence[str]) -> list[str | None]:
        """States of ``keys`` (IN_PROGRESS, DONE, DEAD or None)."""
        ...

    async def revive(self, key: str) -> bool:
        """Forget a DEAD mark; True if there was one."""
        ...


#: Builds the dedup store of a namespace (``<group>:<handler>``) whose consumer keeps marks
#: for the given retention in seconds (None: the letter does not say; use the settings').
StoreFactory = Callable[[str, float | None], Revivable]


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    record: Record

    @property
    def ref(self) -> str:
        """``partition:offset`` in the dead-letter topic."""
        return f"{self.record.partition}:{self.record.offset}"

    def header(self, name: str) -> str | None:
        """A header as text (the last one of that name), or None."""
        found = None
        for key, value in self.record.headers:
            if key == name:
                found = value.decode("utf-8", "replace")
        return found

    @property
    def message_id(self) -> str | None:
        """The ``message-id`` header."""
        return self.header(env.MESSAGE_ID)

    @property
    def original_topic(self) -> str | None:
        """The topic the message was consumed from."""
        return self.header(env.DLQ_TOPIC)

    @property
    def namespace(self) -> str | None:
        """The scope of the consumer's idempotency keys: the ``dlq-dedup-namespace`` header,
        else ``<group>:<handler>`` (letters of nativekit before that header)."""
        written = self.header(env.DLQ_DEDUP_NAMESPACE)
        if written:
            return written
        group, handler = self.header(env.DLQ_GROUP), self.header(env.DLQ_HANDLER)
        return f"{group}:{handler}" if group and handler else None

    @property
    def dedup_key(self) -> str | None:
        """The idempotency key the consumer marked DEAD."""
        return self.header(env.DLQ_DEDUP_KEY)

    @property
    def dedup_retention(self) -> float | None:
        """Seconds the consumer keeps its marks (locates them in the Redis store)."""
        text = self.header(env.DLQ_DEDUP_RETENTION)
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None

    def matches(self, wanted: str) -> bool:
        """True when ``wanted`` is this letter's ``partition:offset`` or message id."""
        return wanted in (self.ref, self.message_id, self.dedup_key)

    def to_dict(self, state: str | None = None) -> dict[str, Any]:
        """A JSON-ready view: position, origin, error, headers, key and value."""
        r = self.record
        return {
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": _iso(r.timestamp_ms),
            "message_id": self.message_id,
            "original": {
                "topic": self.original_topic,
                "partition": _int(self.header(env.DLQ_PARTITION)),
                "offset": _int(self.header(env.DLQ_OFFSET)),
            },
            "group": self.header(env.DLQ_GROUP),
            "handler": self.header(env.DLQ_HANDLER),
            "dedup_key": self.dedup_key,
            "dedup_state": state,
            "error_type": self.header(env.DLQ_ERROR_TYPE),
            "error": self.header(env.DLQ_ERROR),
            "attempts": _int(self.header(env.DLQ_ATTEMPTS)),
            "dead_lettered_at": self.header(env.DLQ_TIME),
            "replay_of": self.header(env.REPLAY_OF),
            "headers": {k: v.decode("utf-8", "replace") for k, v in r.headers},
            "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
            "value": _value(r.value),
        }

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The original headers (no ``dlq-*``), a message id, and ``replay-of``."""
        headers = [
            (k, v)
            for k, v in self.record.headers
            if not k.startswith(env.DLQ_PREFIX) and k != env.REPLAY_OF
        ]
        if self.message_id is None and self.dedup_key is not None:
            headers.append((env.MESSAGE_ID, self.dedup_key.encode()))
        origin = f"{self.record.topic}:{self.record.partition}:{self.record.offset}"
        headers.append((env.REPLAY_OF, origin.encode()))
        return headers


Outcome = Literal["replayed", "skipped"]


@dataclass(frozen=True)
class Replay:
    """What replaying one dead letter did."""

    letter: DeadLetter
    outcome: Outcome
    detail: str
    sent: Sent | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        sent = self.sent
        return {
            "ref": self.letter.ref,
            "message_id": self.letter.message_id,
            "outcome": self.outcome,
            "detail": self.detail,
            "to": None if sent is None else f"{sent.topic}:{sent.partition}:{sent.offset}",
        }


async def dedup_states(
    letters: Sequence[DeadLetter], stores: StoreFactory | None
) -> list[str | None]:
    """The dedup state of each letter's key (None where unknown or no store)."""
    if stores is None:
        return [None] * len(letters)
    out: list[str | None] = []
    for letter in letters:
        if letter.namespace is None or letter.dedup_key is None:
            out.append(None)
        else:
            store = stores(letter.namespace, letter.dedup_retention)
            out.append((await store.states([letter.dedup_key]))[0])
    return out


async def replay(
    letter: DeadLetter,
    *,
    broker: Broker,
    stores: StoreFactory | None,
    to_topic: str | None = None,
) -> Replay:
    """Send ``letter`` back to its topic so its consumer handles it again (see module doc)."""
    topic = to_topic or letter.original_topic
    if not topic:
        return Replay(letter, "skipped", "no dlq-original-topic header: pass --to TOPIC")
    namespace, key = letter.namespace, letter.dedup_key
    if stores is None and key is not None:
        return Replay(
            letter,
            "skipped",
            "its DEAD mark lives in the consumer's process (NATIVEKIT_REDIS_URL=memory://), "
            "which would skip the copy; point NATIVEKIT_REDIS_URL at the services' Redis",
        )
    if stores is not None and namespace is not None and key is not None:
        store = stores(namespace, letter.dedup_retention)
        state = (await store.states([key]))[0]
        if state == "DONE":
            return Replay(letter, "skipped", f"already handled: {namespace} marks {key!r} DONE")
        if state == "IN_PROGRESS":
            return Replay(letter, "skipped", f"being handled now by {namespace}; try later")
        await store.revive(key)  # before publishing: else the copy could meet the DEAD mark
    value = letter.record.value or b""
    sent = await broker.send(topic, value, key=letter.record.key, headers=letter.replay_headers())
    detail = f"published to {sent.topic}:{sent.partition}:{sent.offset}"
    if key is None and letter.header(env.DLQ_HANDLER) is None:
        # dead-lettered without the headers that locate its mark (an older nativekit)
        detail += "; no dlq-dedup-key header, so an idempotent consumer may skip it"
    return Replay(letter, "replayed", detail, sent)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _value(raw: bytes | None) -> Any:
    """JSON values as JSON, other text as a string, binary as ``{"base64": …}``."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}
    try:
        return json.loads(text)
    except ValueError:
        return text
