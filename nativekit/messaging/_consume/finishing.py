"""A consumer's second half: finished items marked DONE in bulk, offsets committed in the
background (only ever forward), and the readiness of the consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from nativekit._health import CheckResult
from nativekit._supervisor import Supervisor
from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.joining import JoinState
from nativekit.messaging._consume.lanes import Item, Lane
from nativekit.messaging._consume.marks import Marks
from nativekit.messaging._consume.metrics import ConsumeOutcome, MessagingMetrics
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._dedup import Claim, ClaimStatus
from nativekit.messaging._errors import CommitFailed
from nativekit.messaging._wire.broker import GroupConsumer, TopicPartition

#: Flushes (DONE/DEAD marks of handled items) in flight at once. With one, items handled
#: while a flush waits for the store wait for it to end before theirs starts, and the
#: in-flight window they hold is not refilled meanwhile; with two, the PostgreSQL
#: consumer ran 0-35% faster (median 12%) in 8 paired runs at the same CPU per message.
FLUSHES = 2


class Finishing:
    """Finishing, committing and readiness of a :class:`Consumer` (which sets the state)."""

    options: ConsumerOptions
    metrics: MessagingMetrics
    marks: Marks | None
    observers: list[Callable[[Item], None]]
    supervisor: Supervisor
    join: JoinState
    running: bool
    log: Any
    _gc: GroupConsumer | None
    _lanes: dict[TopicPartition, Lane]
    _owned: dict[str, Item]
    _finished: list[Item]
    _releases: list[Claim]
    _in_flight: int
    _give_up_at: float
    _error: str | None
    _finish_event: asyncio.Event
    _capacity: asyncio.Event
    _flush_lock: asyncio.Lock
    _flush_slots: asyncio.Semaphore
    _flushing: set[asyncio.Task[None]]
    _commit_lock: asyncio.Lock
    _commit_event: asyncio.Event
    _dispatching: tuple[list[Item], asyncio.Future[list[Claim] | None] | None] | None
    _batches: asyncio.Queue[tuple[list[Item], asyncio.Future[list[Claim] | None] | None]]

    @property
    def name(self) -> str:
        """The scope of the consumer's dedup keys."""
        raise NotImplementedError

    # -- handling and finishing ----------------------------------------------------------

    def _wake(self) -> None:
        """Handled items arrived in ``_finished``: their DONE/DEAD marks go out with the
        next flush."""
        self._finish_event.set()

    def _abandon(self, item: Item) -> None:
        """Give up an item without finishing it: its offset stays uncommitted."""
        if item.claim is not None and item.claim.status is ClaimStatus.CLAIMED:
            self._releases.append(item.claim)
        if self._owned.get(item.key) is item:
            del self._owned[item.key]
        self._in_flight -= 1
        self._capacity.set()
        item.finish()

    async def _finish_loop(self) -> None:
        """Flush finished items whenever some arrived, up to :data:`FLUSHES` at once: the
        items handled while one flush waits for the store go out in the next."""
        while True:
            await self._finish_event.wait()
            await self._flush_slots.acquire()
            self._raise_failed_flush()
            self._finish_event.clear()
            task = asyncio.ensure_future(self._flush_in_slot())
            self._flushing.add(task)
            task.add_done_callback(self._flush_ended)

    async def _flush_in_slot(self) -> None:
        try:
            await self._flush_batch()
        finally:
            self._flush_slots.release()

    def _flush_ended(self, task: asyncio.Task[None]) -> None:
        # a failed flush put its items back and set the event: the loop raises its error
        # (and is restarted) before it starts the next one
        if task.cancelled() or task.exception() is None:
            self._flushing.discard(task)

    def _raise_failed_flush(self) -> None:
        for task in list(self._flushing):
            if task.done():
                self._flushing.discard(task)
                if not task.cancelled() and (exc := task.exception()) is not None:
                    self._flush_slots.release()  # the slot this iteration took
                    raise exc

    async def _commit_loop(self) -> None:
        """Commit in the background, so handling never waits for the broker's commit reply;
        at most one commit per ``commit_interval`` (each is a broker request)."""
        while True:
            await self._commit_event.wait()
            self._commit_event.clear()
            started = time.monotonic()
            try:
                await self._commit(list(self._lanes.values()))
            except Exception:
                self._commit_event.set()  # the restarted loop commits again
                raise
            await asyncio.sleep(self.options.commit_interval - (time.monotonic() - started))

    async def _flush(self) -> None:
        """Flush every item handled so far, once the flushes in flight ended (drain, stop)."""
        async with self._flush_lock:  # one at a time: each takes every slot
            held = 0
            try:
                while held < FLUSHES:
                    await self._flush_slots.acquire()
                    held += 1
                await self._flush_batch()
            finally:
                for _ in range(held):
                    self._flush_slots.release()

    async def _flush_batch(self) -> None:
        """Write the marks of the items handled so far and finish them."""
        # in place: the runner appends to this very list
        batch = self._finished[:]
        self._finished.clear()
        releases, self._releases = self._releases, []
        marks = self.marks
        try:
            if releases and marks is not None:
                await marks.release(releases)
            if batch and marks is not None and not await marks.finish(batch, self._give_up_at):
                self._finished[:0] = batch  # given up on stop: left uncommitted
                return
        except Exception:
            self._finished[:0] = batch  # flushed again by the restarted loop
            self._releases[:0] = releases
            self._finish_event.set()
            raise
        outcomes: dict[tuple[str, ConsumeOutcome | None], int] = {}
        durations: dict[str, list[float]] = {}
        owned = self._owned
        lane: Lane | None = None
        offsets: list[int] = []  # of ``lane``: workers finish items in runs per lane
        for item in batch:
            record = item.record
            if item.lane is not lane:
                if lane is not None:
                    lane.offsets.finish_many(offsets)
                lane, offsets = item.lane, []
            offsets.append(record.offset)
            if owned.get(item.key) is item:
                del owned[item.key]
            place = (record.topic, item.outcome)
            outcomes[place] = outcomes.get(place, 0) + 1
            if item.elapsed is not None:
                durations.setdefault(record.topic, []).append(item.elapsed)
            item.finished = True  # Item.finish(), inline: a call less per message
            if item.waiter is not None:
                item.waiter.set()
        if lane is not None:
            lane.offsets.finish_many(offsets)
        group = self.options.group
        for (topic, outcome), n in outcomes.items():
            if outcome is not None:
                self.metrics.count(topic, group, outcome, n)
        for topic, seconds in durations.items():
            self.metrics.observe_many(topic, group, seconds)
        self._in_flight -= len(batch)
        self._capacity.set()
        self._commit_event.set()
        for observer in self.observers:
            for item in batch:
                observer(item)

    async def _commit(self, lanes: list[Lane]) -> None:
        """Commit the finished prefix of ``lanes``; serialized, so offsets only move forward."""
        async with self._commit_lock:
            await self._commit_locked(lanes)

    async def _commit_locked(self, lanes: list[Lane]) -> None:
        offsets = {}
        for lane in lanes:
            offset = lane.offsets.committable()
            if offset is not None:
                offsets[lane.tp] = (lane, offset)
        if not offsets or self._gc is None:
            return
        try:
            await self._gc.commit({tp: off for tp, (_, off) in offsets.items()})
        except (CommitFailed, BackendUnavailable) as exc:
            self.log.warning("consumer.commit_failed", error=str(exc))
            return
        for lane, offset in offsets.values():
            lane.offsets.committed_at(offset)

    # -- readiness -------------------------------------------------------------------

    def joining(self) -> CheckResult | None:
        """For ``/startupz``: None once joined, else how the join stands."""
        return self.join.report() if self.running else None

    async def check(self) -> CheckResult:
        """Ready when joined, fetching, its tasks not crash-looping and the dedup store
        answers."""
        if not self.running:
            raise BackendUnavailable("consumer is not running (not started or stopped)")
        joining = self.join.report()
        if joining is not None:
            return joining
        self.supervisor.check(f"consumer:{self.name}:")
        if self._error is not None:
            raise BackendUnavailable(f"fetching fails: {self._error}")
        if self.marks is not None:
            await self.marks.store.ping()
            if self.marks.error is not None:
                raise BackendUnavailable(f"dedup store fails: {self.marks.error}")
        assigned = len(self._lanes)
        return CheckResult(
            status="pass" if assigned else "warn",
            output=f"{assigned} partition(s) assigned, {self._in_flight} message(s) in flight",
            observed_value=assigned,
            observed_unit="partitions",
        )

    async def _abandon_batches(self) -> None:
        """On stop: give up batches fetched but not yet handed to lanes (the one the
        cancelled dispatcher was claiming too: its messages would stay in flight)."""
        batches = [self._dispatching] if self._dispatching is not None else []
        self._dispatching = None
        while not self._batches.empty():
            batches.append(self._batches.get_nowait())
        for items, claim in batches:
            claims: list[Claim] | None = None
            if claim is not None:
                if not claim.done():
                    claim.cancel()
                await asyncio.gather(claim, return_exceptions=True)
                if not claim.cancelled() and claim.exception() is None:
                    claims = claim.result()
            for i, item in enumerate(items):
                if claims is not None:
                    item.claim = claims[i]
                self._abandon(item)
