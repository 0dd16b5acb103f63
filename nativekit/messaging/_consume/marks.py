"""A consumer's side of the dedup store: claims, DONE/DEAD marks, releases, lease renewal.

While the store is down nothing is handled twice: claims are retried (no record is
handled unclaimed), final marks are retried before the offsets they cover are
committed, and releases and renewals are skipped (leases expire on their own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.lanes import Item
from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._dedup import Claim, DedupStore, FinalState

MAX_BACKOFF = 5.0


class Marks:
    """The dedup store as one consumer uses it.

    ``error`` holds the last failure until an operation succeeds again, for readiness.
    """

    def __init__(
        self, store: DedupStore, options: ConsumerOptions, metrics: MessagingMetrics, log: Any
    ) -> None:
        self.store = store
        self.options = options
        self.metrics = metrics
        self.log = log
        self.error: str | None = None
        # every series from 0, so an alert's increase() sees the first error
        for operation in ("claim", "release", "finish", "renew"):
            metrics.dedup_errors.labels(metrics.service, options.group, operation)
        metrics.lease_lost.labels(metrics.service, options.group)

    def failed(self, operation: str, exc: BaseException) -> None:
        """Count and log a failed store operation, and remember it for readiness."""
        self.error = str(exc)
        self.metrics.dedup_errors.labels(self.metrics.service, self.options.group, operation).inc()
        self.log.error("consumer.dedup_unavailable", operation=operation, error=str(exc))

    async def claim(self, keys: list[str], stopping: Callable[[], bool]) -> list[Claim] | None:
        """Claims for a batch, retried while the store is down; None once ``stopping()``."""
        delay = 0.1
        while not stopping():
            try:
                claims = await self.store.claim_many(keys, lease=self.options.lease)
            except BackendUnavailable as exc:
                self.failed("claim", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.error = None
            return claims
        return None

    async def release(self, claims: list[Claim]) -> None:
        """Give claims of abandoned messages back (if the store is down, they expire)."""
        try:
            await self.store.release_many(claims)
        except BackendUnavailable as exc:
            self.failed("release", exc)

    async def finish(self, batch: list[Item], give_up_at: float) -> bool:
        """Write the DONE/DEAD marks of handled items, retried while the store is down;
        False when still failing after ``give_up_at`` (monotonic): nothing may be committed."""
        done: list[Claim] = []
        dead: list[Claim] = []
        for item in batch:
            state = item.state
            if state is not None and item.claim is not None:
                (done if state is FinalState.DONE else dead).append(item.claim)
        for state, claims in ((FinalState.DONE, done), (FinalState.DEAD, dead)):
            if not claims:
                continue
            held = await self._finish_many(claims, state, give_up_at)
            if held is None:
                return False
            lost = [c.key for c, ok in zip(claims, held, strict=True) if not ok]
            if lost:
                self._lost(len(lost))
                self.log.warning("consumer.lease_lost", keys=lost[:10], count=len(lost))
        self.error = None
        return True

    async def _finish_many(
        self, claims: list[Claim], state: FinalState, give_up_at: float
    ) -> list[bool] | None:
        delay = 0.1
        while True:
            try:
                return await self.store.finish_many(claims, retain=self.options.retain, state=state)
            except BackendUnavailable as exc:
                self.failed("finish", exc)
                if time.monotonic() > give_up_at:
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def renew_forever(self, owned: Mapping[str, Item]) -> None:
        """Keep the leases of claimed, unfinished messages alive (a task until cancelled)."""
        while True:
            await asyncio.sleep(self.options.lease / 3)
            claims = [i.claim for i in owned.values() if i.claim is not None]
            if not claims:
                continue
            try:
                held = await self.store.renew_many(claims, lease=self.options.lease)
            except BackendUnavailable as exc:
                self.failed("renew", exc)
                continue
            lost = sum(1 for ok in held if not ok)
            if lost:
                self._lost(lost)

    def _lost(self, count: int) -> None:
        self.metrics.lease_lost.labels(self.metrics.service, self.options.group).inc(count)
