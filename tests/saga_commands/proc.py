"""One service of the three-process command/reply tests, run as its own process.

Usage: python tests/saga_commands/proc.py ROLE   (ROLE: orders | inventory | payments)

Settings come from NATIVEKIT_* variables; test parameters from TEST_*:
TEST_PREFIX (topic prefix), TEST_LEDGER (Redis hash counting effects; on the server of
TEST_LEDGER_URL if set, else of NATIVEKIT_REDIS_URL), TEST_START
(orders: JSON list of saga inputs to start, id ``order-<order_id>``), TEST_TIMEOUT
(reply timeout), TEST_DELAY (inventory: seconds before the reserve effect),
TEST_SLOW (payments: seconds a "slow" charge takes), TEST_CRASH=relay_read (orders:
SIGKILL itself once the relay has read outbox entries, before publishing them),
TEST_PARALLEL=1 (orders: reserve and charge are members of one parallel group).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nativekit
from nativekit.saga._store.outbox import OutboxRelay
from tests.saga_commands.shop import (
    inventory_service,
    orders_service,
    payments_service,
    redis_ledger,
    topics,
)


def die() -> None:
    """Vanish like a killed pod."""
    os.kill(os.getpid(), signal.SIGKILL)


async def assigned(svc: nativekit.Service, within: float = 30.0) -> None:
    """Wait until every consumer of ``svc`` (reply consumer included) has partitions."""
    consumers = list(svc.messaging.consumers)
    commands = svc._saga_commands
    if commands is not None and commands.consumer is not None:
        consumers.append(commands.consumer)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not all(c._gc is not None and c._gc.assignment() for c in consumers):
        if loop.time() > deadline:
            raise TimeoutError("consumers got no partitions")
        await asyncio.sleep(0.05)


async def main(role: str) -> None:
    names = topics(os.environ["TEST_PREFIX"])
    ledger_url = os.environ.get("TEST_LEDGER_URL") or os.environ["NATIVEKIT_REDIS_URL"]
    ledger = redis_ledger(ledger_url, os.environ["TEST_LEDGER"])
    settings = nativekit.Settings()
    if role == "orders":
        if os.environ.get("TEST_CRASH") == "relay_read":

            async def read_then_die(
                self: OutboxRelay, saga_ids: Any = None, **options: Any
            ) -> int:
                # one read only: a second one (the original relay_once) could find
                # entries committed in between and publish them before any death
                batch = await self.outbox.read(self.batch, saga_ids)
                if batch.entries:
                    die()
                return 0  # what relay_once returns for an empty read

            OutboxRelay.relay_once = read_then_die  # type: ignore[method-assign]
        svc = orders_service(
            settings,
            names,
            timeout=float(os.environ.get("TEST_TIMEOUT", "5")),
            parallel=os.environ.get("TEST_PARALLEL") == "1",
        )
    elif role == "inventory":
        svc = inventory_service(
            settings, names, ledger, delay=float(os.environ.get("TEST_DELAY", "0"))
        )
    else:
        svc = payments_service(
            settings, names, ledger, slow=float(os.environ.get("TEST_SLOW", "2"))
        )
    await svc.startup(hook_sigterm=False)
    await assigned(svc)
    await ledger(f"ready:{role}")
    if role == "orders":
        starts: list[dict[str, Any]] = json.loads(os.environ.get("TEST_START", "[]"))
        await asyncio.gather(
            *(svc.sagas.start("place-order", d, saga_id=f"order-{d['order_id']}") for d in starts)
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await svc.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
