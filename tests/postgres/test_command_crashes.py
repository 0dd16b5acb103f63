"""The command/reply SIGKILL tests of tests/saga_commands/test_crashes.py on PostgreSQL: the
orchestrator's saga state and outbox, the participants' stored replies and every process's
consumer DONE marks in PostgreSQL (``NATIVEKIT_DATABASE_URL``); the broker carries the
commands and replies, a Redis hash stays the cross-process ledger of effects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nativekit.backends.postgres import Database, PostgresSagaStore
from tests.saga_commands.conftest import World, running_world
from tests.saga_commands.test_crashes import (
    test_orchestrator_down_past_the_reply_deadline_fails_no_saga,
    test_orchestrator_killed_between_outbox_write_and_publish,
    test_orchestrator_killed_while_waiting_for_replies,
    test_participant_killed_mid_handler,
)

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

__all__ = [
    "test_orchestrator_down_past_the_reply_deadline_fails_no_saga",
    "test_orchestrator_killed_between_outbox_write_and_publish",
    "test_orchestrator_killed_while_waiting_for_replies",
    "test_participant_killed_mid_handler",
]


@pytest.fixture
async def world(
    kafka_url: str, redis_url: str, postgres_url: str, pg_database: Database, unique: str
) -> AsyncIterator[World]:
    """The processes of tests/saga_commands with NATIVEKIT_DATABASE_URL on this test's own
    migrated schema; saga records read back from PostgreSQL."""
    backend = {
        "NATIVEKIT_DATABASE_URL": postgres_url,
        "NATIVEKIT_DATABASE_SCHEMA_NAME": pg_database.schema,
        "NATIVEKIT_DATABASE_POOL_SIZE": "5",
    }
    store = PostgresSagaStore(pg_database)
    async with running_world(kafka_url, redis_url, unique, backend_env=backend, store=store) as w:
        yield w
