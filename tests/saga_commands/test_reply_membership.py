"""The reply consumer is a static group member like every other consumer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from nativekit.messaging import MemoryBroker

from .shop import orders_service, topics
from .test_commands_memory import _settings, running


class MembersBroker(MemoryBroker):
    """A memory broker that records each group member's group and instance id."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, str | None] = {}

    def group_consumer(  # type: ignore[override]
        self,
        topics: Sequence[str],
        *,
        group: str,
        on_assigned: Callable[..., Any],
        on_revoked: Callable[..., Any],
        instance_id: str | None = None,
    ) -> Any:
        self.members[group] = instance_id
        return super().group_consumer(
            topics, group=group, on_assigned=on_assigned, on_revoked=on_revoked
        )


@pytest.mark.parametrize(("hostname", "expected"), [("orders-0", "orders-0.replies"), ("", None)])
async def test_the_reply_consumer_is_a_static_member_named_after_the_host(
    monkeypatch: pytest.MonkeyPatch, unique: str, hostname: str, expected: str | None
) -> None:
    """With HOSTNAME set the reply consumer joins as '<hostname>.replies' (Kafka's
    group.instance.id), so a restarted replica takes the reply partition back instead of
    waiting out its old member's session (docs/reliability.md); without it, dynamic."""
    monkeypatch.setenv("HOSTNAME", hostname)
    names = topics(f"static{unique}")
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    broker = MembersBroker()
    orders.messaging.use_broker(broker)
    async with running(orders):
        assert broker.members["orders.replies"] == expected
