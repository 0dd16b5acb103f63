"""A load generator placing orders through the shop's public HTTP API.

Each order carries an Idempotency-Key and is posted again with the same key while the
orders service cannot be reached or answers the documented 503 (inventory unavailable
for pricing, ``Retry-After``); any other 5xx is recorded as a failure.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

#: Seconds an order may take to be accepted (the orders process may be down meanwhile).
ACCEPT_DEADLINE = 60.0


@dataclass
class LoadResult:
    """What a load run did."""

    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    failures: list[str] = field(default_factory=list)
    unaccepted: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> dict[int, int]:
        """5xx answers other than the documented 503."""
        return {s: n for s, n in self.statuses.items() if s >= 500 and s != 503}


class Load:
    """``workers`` concurrent clients placing orders for ``skus`` until :meth:`stop`."""

    def __init__(
        self, orders: httpx.AsyncClient, skus: list[str], *, workers: int, seed: int
    ) -> None:
        self.orders = orders
        self.skus = skus
        self.workers = workers
        self.rng = random.Random(seed)
        self.result = LoadResult()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.accepted_event = asyncio.Event()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def stop(self) -> LoadResult:
        """Stop placing new orders; wait for the ones being placed to be accepted."""
        self._stopping.set()
        try:
            await asyncio.gather(*self._tasks)
        except BaseException:  # cancelled (the run is interrupted): leave nothing running
            self.cancel()
            raise
        return self.result

    def cancel(self) -> None:
        """Stop at once (a failed or interrupted run)."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()

    async def wait_accepted(self, count: int, timeout: float = 60) -> None:  # noqa: ASYNC109
        """Until at least ``count`` orders were accepted in this run."""
        deadline = time.monotonic() + timeout
        while len(self.result.accepted) < count:
            assert time.monotonic() < deadline, f"only {len(self.result.accepted)} accepted"
            await asyncio.sleep(0.05)

    def _body(self) -> dict[str, Any]:
        lines = self.rng.sample(self.skus, self.rng.randint(1, min(2, len(self.skus))))
        token = self.rng.choice(["tok_visa"] * 8 + ["tok_decline", "tok_fail"])
        return {
            "customer_id": f"c-{self.rng.randint(1, 50)}",
            "items": [{"sku": s, "quantity": self.rng.randint(1, 3)} for s in lines],
            "payment_token": token,
        }

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            await self._place(self._body(), uuid.uuid4().hex)

    async def _place(self, body: dict[str, Any], key: str) -> None:
        deadline = time.monotonic() + ACCEPT_DEADLINE
        while time.monotonic() < deadline:
            try:
                reply = await self.orders.post(
                    "/orders", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                self.result.transport_errors += 1
                await asyncio.sleep(0.2)
                continue
            self.result.statuses[reply.status_code] += 1
            if reply.status_code == 202:
                self.result.accepted.append(str(reply.json()["order_id"]))
                return
            if reply.status_code == 503:
                await asyncio.sleep(min(float(reply.headers.get("Retry-After", "1")), 1.0))
                continue
            self.result.failures.append(f"{reply.status_code}: {reply.text[:300]}")
            if reply.status_code >= 500:  # still retried: the order must not be lost
                await asyncio.sleep(0.2)
                continue
            return
        self.result.unaccepted.append(key)
