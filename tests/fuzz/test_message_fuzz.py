"""Fuzzed messages: random bytes, wrong headers and truncated envelopes are dead-lettered
with the reason, and the consumer keeps handling the next good message."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from nativekit import Service, Settings
from nativekit.messaging import Message
from nativekit.testing import Delivery, MessagingHarness
from tests.fuzz.support import BOUNDED, Host

DLQ_REASON = ("dlq-error-type", "dlq-error-message", "dlq-original-topic", "dlq-original-offset")


class Paid(BaseModel):
    order_id: str = Field(min_length=1)
    amount: int = Field(ge=0)


class Refunded(BaseModel):
    order_id: str
    reason: str


class World:
    """The service under fuzz and what its handlers saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Paid | Refunded]] = []
        self.headers: list[tuple[str | None, str | None, str | None]] = []
        settings = Settings(
            _env_file=None, consumer={"retry_backoff_seconds": 0.001}, tracing={"enabled": False}
        )
        self.svc = Service("fuzzed-consumer", settings=settings)

        @self.svc.consumer("payments", group="single")
        async def on_paid(event: Paid, msg: Message) -> None:
            # read every header the way a handler might; none may crash it
            self.headers.append((msg.message_id, msg.event_type, msg.header("x")))
            self.seen.append(("payments", event))

        @self.svc.consumer("ledger", group="union")
        async def on_ledger(event: Paid | Refunded) -> None:
            self.seen.append(("ledger", event))


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Host, World, MessagingHarness]]:
    host = Host()
    state = World()
    try:
        harness = host.enter(MessagingHarness(state.svc, timeout=5.0))
        yield host, state, harness
    finally:
        host.close()


counter = itertools.count()
good = Paid(order_id="o-1", amount=5).model_dump_json().encode()
valid_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["order_id", "amount", "reason", "x"]), children)
    ),
    max_leaves=8,
).map(lambda v: json.dumps(v).encode())
payloads = (
    st.binary(max_size=200)
    | valid_json
    | st.integers(min_value=0, max_value=len(good) - 1).map(lambda n: good[:n])  # truncated
    | st.binary(max_size=16).map(lambda junk: good + junk)
)
header_bytes = st.binary(max_size=40) | st.text(max_size=40).map(str.encode)
headers = st.dictionaries(
    st.sampled_from(
        ["message-id", "event-type", "content-type", "produced-at", "x", "traceparent"]
    ),
    header_bytes,
    max_size=4,
)


def check(harness: MessagingHarness, topic: str, delivery: Delivery) -> None:
    """A message the handler could not take is a dead letter that names the reason."""
    assert delivery.outcome in ("processed", "dead_lettered", "skipped", "duplicate"), delivery
    if delivery.outcome != "dead_lettered":
        return
    assert delivery.error
    letters = [
        m
        for m in harness.dead_letters(topic)
        if m.header("dlq-original-offset") == str(delivery.offset)
        and m.header("dlq-group") == delivery.group
    ]
    assert len(letters) == 1, letters
    for name in DLQ_REASON:
        assert letters[0].header(name), (name, letters[0].record.headers)


@BOUNDED
@given(
    topic=st.sampled_from(["payments", "ledger"]),
    payload=payloads,
    extra=headers,
    key=st.none() | st.binary(max_size=20),
)
def test_bad_messages_are_dead_lettered_and_the_next_good_one_is_handled(
    world: tuple[Host, World, MessagingHarness],
    topic: str,
    payload: bytes,
    extra: dict[str, bytes],
    key: bytes | None,
) -> None:
    """Random bytes, truncated envelopes and odd headers: handled or dead-lettered with
    the reason, never a crashed consumer; a good message right after is processed."""
    host, state, harness = world
    n = next(counter)
    message_id = None if "message-id" in extra else f"fuzz-{n}"

    async def deliver() -> tuple[Delivery, Delivery]:
        bad = await harness.deliver(topic, payload, key=key, headers=extra, message_id=message_id)
        after = await harness.deliver(topic, Paid(order_id=f"good-{n}", amount=n))
        return bad, after

    bad, after = host.run(deliver)
    event(f"outcome: {bad.outcome}")
    check(harness, topic, bad)
    assert after.outcome == "processed", after
    assert state.seen[-1] == (topic, Paid(order_id=f"good-{n}", amount=n))
