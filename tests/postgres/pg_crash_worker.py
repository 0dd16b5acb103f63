"""A consumer process whose handler writes its effect in its ``Transaction``; it kills
itself with SIGKILL at a chosen point (the PostgreSQL consumer crash matrix).

Usage: python pg_crash_worker.py TOPIC GROUP CRASH_AT TARGET SCHEMA
CRASH_AT: before_write | after_write | after_done | after_offset | none. TARGET: index of
the message (``o-<TARGET>``; on a one-partition topic, its offset). Broker, database and
lease come from NATIVEKIT_* variables. The handler inserts one row per handled message
into ``SCHEMA.ledger`` (no unique key, no idempotency check of its own).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pydantic import BaseModel

import nativekit
from nativekit import Transaction
from nativekit.backends.kafka._broker import KafkaGroupConsumer
from nativekit.backends.postgres._transaction import PostgresTransaction


class Order(BaseModel):
    """The event."""

    order_id: str


def die() -> None:
    """Vanish like a killed pod: no cleanup, no commit."""
    os.kill(os.getpid(), signal.SIGKILL)


async def main(topic: str, group: str, crash_at: str, target: int, schema: str) -> None:
    svc = nativekit.Service("pg-crash-worker")
    mine = f"o-{target}"

    @svc.consumer(topic, group=group)
    async def handle(event: Order, tx: Transaction) -> None:
        if crash_at == "before_write" and event.order_id == mine:
            die()
        await tx.execute(f"INSERT INTO {schema}.ledger (order_id) VALUES ($1)", event.order_id)
        if crash_at == "after_write" and event.order_id == mine:
            die()  # the insert is not committed: rolled back with the dead connection

    commit = PostgresTransaction.commit

    async def commit_then_die(self: PostgresTransaction) -> None:
        await commit(self)  # the ledger row and the DONE mark are committed now
        if crash_at == "after_done" and target_written[0]:
            die()

    target_written = [False]
    execute = PostgresTransaction.execute

    async def watch(self: PostgresTransaction, query: str, *args: Any) -> str:
        if args and args[0] == mine:
            target_written[0] = True
        return await execute(self, query, *args)

    PostgresTransaction.execute = watch  # type: ignore[method-assign]
    PostgresTransaction.commit = commit_then_die  # type: ignore[method-assign]
    kafka_commit = KafkaGroupConsumer.commit

    async def offsets_then_die(self: KafkaGroupConsumer, offsets: Any) -> None:
        await kafka_commit(self, offsets)
        if crash_at == "after_offset" and any(o > target for o in offsets.values()):
            die()

    KafkaGroupConsumer.commit = offsets_then_die  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await svc.startup(hook_sigterm=False)
    print("STARTED", flush=True)
    await stop.wait()
    await svc.shutdown()


if __name__ == "__main__":
    topic, group, crash_at, target, schema = sys.argv[1:6]
    asyncio.run(main(topic, group, crash_at, int(target), schema))
