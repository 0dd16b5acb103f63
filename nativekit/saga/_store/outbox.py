"""Transactional outbox: messages written atomically with saga transitions, then relayed.

A saga transition carries outbox entries (``Transition.outbox``); the saga store
writes them in the same atomic write as the state (Redis: the same Lua script
appends them to the shard's outbox stream; memory: a list). The
:class:`OutboxRelay` publishes entries to Kafka and deletes them only after the
broker acknowledged them. A crash between the write and the publish loses
nothing: the entry is published later (by this or another replica), at worst
twice, and the message id (the entry id) lets consumers drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from nativekit._lifecycle import cancel_and_wait
from nativekit._supervisor import Supervisor
from nativekit._telemetry.logging import get_logger
from nativekit.errors import BackendUnavailable
from nativekit.messaging._errors import MessagingError
from nativekit.messaging._wire import envelope as env
from nativekit.messaging._wire.broker import SENDING_MANY
from nativekit.saga._store.entries import Batch, MemoryOutbox, Outbox, OutboxEntry

__all__ = ["Batch", "MemoryOutbox", "Outbox", "OutboxEntry", "OutboxRelay"]

if TYPE_CHECKING:
    from nativekit.messaging._wire.publisher import Publisher
    from nativekit.saga._run.telemetry import CommandMetrics

#: Longest time later entries of a key wait for its failed entry to go out.
BLOCK_FOR = 30.0
#: Entries in one read from which the relay sends them as one batch (see ``SENDING_MANY``).
SEND_AS_BATCH_FROM = 8
#: Done when a key's entries of one batch went out (or failed): its next batch waits for it.
Link = asyncio.Future[None]


class OutboxRelay:
    """Publishes outbox entries and deletes them after the broker's ack (a component).

    Args:
        outbox: where entries wait.
        publisher: publishes the entries.
        service: service name (logs, metrics).
        poll_interval: seconds between reads when nothing woke the relay.
        batch: entries per read.
        metrics: relay lag and backlog metrics, or None.
        supervisor: restarts the relay loop after an unexpected error.
        depth: batches published at once (the loop reads the next while one goes out).

    Entries with one key (a saga's, by default) go out one after the other, in outbox
    order: after a failed one the rest of its key waits until it went out.
    """

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        service: str,
        poll_interval: float = 0.2,
        batch: int = 200,
        metrics: CommandMetrics | None = None,
        supervisor: Supervisor | None = None,
        depth: int = 4,
    ) -> None:
        self.outbox = outbox
        self.supervisor = supervisor or Supervisor(service)
        #: key -> (id of its entry that failed, until when): later entries of the key
        #: wait for it, at most until then (another relay may have taken it over)
        self._blocked: dict[str, tuple[str, float]] = {}
        self.publisher = publisher
        self.poll_interval = poll_interval
        self.batch = batch
        self.metrics = metrics
        self.log = get_logger(service=service, component="outbox")
        self._wake = asyncio.Event()
        self._hints: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        #: Cleared by ``stop``: the loop ends on it even when the cancellation that
        #: follows is lost (see :func:`~nativekit._lifecycle.cancel_and_wait`).
        self._running = False
        self.published = 0
        self.depth = depth  # batches read, not yet published and deleted
        self._flights: set[asyncio.Task[int]] = set()
        self._failure: BaseException | None = None
        #: key -> the end of its entries' chain in flight (the next batch's wait for it)
        self._chains: dict[str, Link] = {}
        self._sending: set[str] = set()  # ids in flight (a slow one may be taken over)

    def wake(self, saga_id: str | None = None) -> None:
        """Read now: entries (of ``saga_id``) were just written by this process."""
        if saga_id is not None:
            self._hints.add(saga_id)
        self._wake.set()

    async def start(self) -> None:
        """Start relaying (in the background: preparing the outbox waits for its store)."""
        self._running = True
        self._task = self.supervisor.spawn("outbox-relay", self._loop)

    async def stop(self) -> None:
        """Stop relaying (entries not yet published stay in the outbox)."""
        self._running = False
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        for flight in list(self._flights):  # read, not published: taken over after claim_after
            with contextlib.suppress(Exception):
                await cancel_and_wait(flight)
        await self.outbox.unlisten()

    async def _prepare(self) -> None:
        """Prepare the outbox (its consumer group) and listen for writes of other
        processes, retrying while the store is down."""
        delay = 0.1
        while self._running:
            try:
                await self.outbox.start()
                await self.outbox.listen(self.wake)
                return
            except BackendUnavailable as exc:
                self.log.warning("outbox.start_failed", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _loop(self) -> None:
        await self._prepare()
        delay = 0.1
        loop = asyncio.get_running_loop()
        full_at = 0.0  # read every shard at least every poll interval; else the hinted ones
        while self._running:
            hints, self._hints = self._hints, set()
            full = loop.time() >= full_at
            if full:
                full_at = loop.time() + self.poll_interval
            try:
                count = await self.relay_once(None if full else hints, wait=False)
                delay = 0.1
            except (BackendUnavailable, MessagingError) as exc:
                self.log.warning("outbox.relay_failed", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if count >= self.batch:
                continue  # a backlog: read on while the batches read go out
            if count and self._flights:
                # under load: what arrives while a batch goes out joins the next read
                # (fuller reads and record batches), as a producer waits for its request
                await asyncio.wait(set(self._flights), return_when=asyncio.FIRST_COMPLETED)
                continue
            if count or self._hints:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, full_at - loop.time()))

    async def relay_once(
        self, saga_ids: Collection[str] | None = None, *, wait: bool = True
    ) -> int:
        """Read one batch and publish it; returns how many entries were published and deleted.

        With ``wait=False`` (the relay's own loop) the batch is published and deleted in
        the background and the count read is returned: the next read overlaps it (up to
        ``depth`` batches in flight), rather than waiting for the broker's acks and the
        delete first. Entries of one key still go out in order (a key's entries in a
        batch wait for its entries in the batches before). A failure of a batch in flight
        is raised by the next call.
        """
        await self._make_room()
        batch = await self.outbox.read(self.batch, saga_ids)
        if not batch.entries:
            return 0
        chains: dict[str, list[tuple[OutboxEntry, Any]]] = {}
        for entry, handle in zip(batch.entries, batch.handles, strict=True):
            if entry.id not in self._sending:  # else taken over from this relay: in flight
                chains.setdefault(entry.key or entry.id, []).append((entry, handle))
                self._sending.add(entry.id)
        links = {key: self._link(key) for key in chains}  # now: batches chain in read order
        flight = asyncio.create_task(self._relay_batch(chains, links))
        if wait:
            return await flight
        self._flights.add(flight)
        flight.add_done_callback(self._landed)
        return len(batch.entries)

    async def _relay_batch(
        self,
        chains: dict[str, list[tuple[OutboxEntry, Any]]],
        links: dict[str, tuple[Link | None, Link]],
    ) -> int:
        if sum(len(chain) for chain in chains.values()) >= SEND_AS_BATCH_FROM:
            # one producer, one linger for the whole read: full record batches (the
            # first few would otherwise go out alone through the producer that sends
            # at once); this task's context only, the gather's tasks inherit it
            SENDING_MANY.set(True)
        try:
            results = await asyncio.gather(
                *(self._publish_chain(k, c, *links[k]) for k, c in chains.items())
            )
        finally:
            self._sending.difference_update(e.id for c in chains.values() for e, _ in c)
        done = [h for published, _ in results for h in published]
        failed = [exc for _, exc in results if exc is not None]
        if done:
            await self.outbox.ack(done)
            self.published += len(done)
        if failed:  # left pending: read again after the claim timeout (or by another relay)
            raise failed[0]
        return len(done)

    def _link(self, key: str) -> tuple[Link | None, Link]:
        """The end of ``key``'s chain in flight (None if none) and the end of a new one."""
        previous = self._chains.get(key)
        self._chains[key] = done = asyncio.get_running_loop().create_future()
        return previous, done

    def _landed(self, flight: asyncio.Task[int]) -> None:
        self._flights.discard(flight)
        if not flight.cancelled() and flight.exception() is not None and self._failure is None:
            self._failure = flight.exception()

    async def _make_room(self) -> None:
        """Raise the failure of a batch that was in flight; wait while ``depth`` are."""
        while True:
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if len(self._flights) < self.depth:
                return
            await asyncio.wait(set(self._flights), return_when=asyncio.FIRST_COMPLETED)

    async def _publish_chain(
        self, key: str, chain: list[Any], previous: Link | None, done: Link
    ) -> tuple[list[Any], Exception | None]:
        """Publish entries of one key in order, after ``previous`` (its entries of an
        earlier batch); stop at the first failure (the rest stays pending, and later
        entries of the key wait until the failed one went out)."""
        published: list[Any] = []
        try:
            if previous is not None:
                await previous
            for entry, handle in chain:
                blocker = self._blocked.get(key)
                if blocker and blocker[0] != entry.id and blocker[1] > time.monotonic():
                    break
                try:
                    await self._publish(entry)
                except Exception as exc:
                    self._blocked[key] = (entry.id, time.monotonic() + BLOCK_FOR)
                    return published, exc
                self._blocked.pop(key, None)
                published.append(handle)
            return published, None
        finally:
            if not done.done():
                done.set_result(None)
            if self._chains.get(key) is done:
                del self._chains[key]

    async def _publish(self, entry: OutboxEntry) -> None:
        from opentelemetry import context, propagate

        # the publish span becomes a child of the stored context and sets its own traceparent
        headers: dict[str, str | bytes] = {
            k: v for k, v in entry.headers.items() if k not in env.TRACE_CONTEXT
        }
        headers[env.EVENT_TYPE] = entry.event_type
        headers[env.CONTENT_TYPE] = env.JSON
        carrier = {k: v for k, v in entry.headers.items() if k in env.TRACE_CONTEXT}
        token = context.attach(propagate.extract(carrier)) if carrier else None
        try:
            await self.publisher.publish(
                entry.topic,
                entry.value.encode(),
                key=entry.key,
                headers=headers,
                message_id=entry.id,
            )
        finally:
            if token is not None:
                context.detach(token)
        if self.metrics is not None:
            self.metrics.relay_lag.labels(self.metrics.service).observe(
                max(0.0, time.time() - entry.created)
            )
