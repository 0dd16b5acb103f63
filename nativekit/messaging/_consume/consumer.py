"""A consumer: a group member that hands records to its handler and commits what finished.

Per fetched batch: one ``claim_many`` on the dedup store, the records go to
per-partition lanes, finished messages are marked DONE (or DEAD) with one
``finish_many`` per flush, and only then the contiguous finished prefix of
each partition is committed. Side effect → DONE → commit, always in that order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nativekit._lifecycle import cancel_all
from nativekit._telemetry.active import active_tracer
from nativekit._telemetry.logging import get_logger
from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.feeding import Batch, Feeding
from nativekit.messaging._consume.finishing import FLUSHES, Finishing
from nativekit.messaging._consume.handler import HandlerSpec
from nativekit.messaging._consume.lanes import Item, Lane
from nativekit.messaging._consume.marks import Marks
from nativekit.messaging._consume.metrics import MessagingMetrics
from nativekit.messaging._consume.offsets import PartitionOffsets
from nativekit.messaging._consume.options import ConsumerOptions
from nativekit.messaging._consume.pipeline import Runner
from nativekit.messaging._consume.status import ConsumerStatus, describe
from nativekit.messaging._dedup import Claim, DedupStore
from nativekit.messaging._wire.broker import Broker, GroupConsumer, TopicPartition

if TYPE_CHECKING:
    from nativekit._transaction import TransactionFactory
from nativekit._supervisor import Supervisor
from nativekit.messaging._consume.joining import JoinState
from nativekit.messaging._consume.lag import LagReporter
from nativekit.messaging._errors import MessagingError

Observer = Callable[[Item], None]


class Consumer(Feeding, Finishing):
    """One ``@svc.consumer`` handler as a service component (``start``/``stop``).

    ``start`` returns at once: the group is joined in the background (retried while
    the broker is unreachable), and :meth:`check` reports the consumer as joining
    until the group assigned it its partitions. Every background task runs under a
    :class:`~nativekit._supervisor.Supervisor`.
    """

    def __init__(
        self,
        spec: HandlerSpec,
        options: ConsumerOptions,
        *,
        broker: Broker,
        store: DedupStore | None,
        metrics: MessagingMetrics,
        service: str,
        tracing: bool = False,
        namespace: str | None = None,
        supervisor: Supervisor | None = None,
        join_timeout: float = 60.0,
        lag_interval: float = 5.0,
        group_instance_id: str | None = None,
        topics_to_create: Mapping[str, int] | None = None,
        transactions: Callable[[], TransactionFactory | None] | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.broker = broker
        self.metrics = metrics
        self._service_name = service
        self._namespace = namespace or f"{options.group}:{spec.name}"
        self.supervisor = supervisor or Supervisor(service)
        self.join = JoinState(options.group, join_timeout)
        self.group_instance_id = group_instance_id
        self._to_create = {
            **{options.dlq_for(t): 1 for t in options.topics},
            **(topics_to_create or {}),
        }
        self.log = get_logger(service=service, group=options.group, handler=spec.name)
        store = store if options.idempotent else None
        self.marks = Marks(store, options, metrics, self.log) if store is not None else None
        self.observers: list[Observer] = []
        self._owned: dict[str, Item] = {}
        self._finished: list[Item] = []
        self._runner = Runner(
            spec,
            options,
            broker=broker,
            store=store,
            metrics=metrics,
            log=self.log,
            tracer=None,
            owned=self._owned,
            stopping=lambda: self._stopping,
            finished=self._finished,
            wake=self._wake,
            on_abandoned=self._abandon,
            namespace=self._namespace,
            transactions=transactions,
        )
        self._tracing = tracing
        types = options.event_types
        self._wanted = frozenset(t.encode() for t in types) if types is not None else None
        self._gc: GroupConsumer | None = None
        self._lanes: dict[TopicPartition, Lane] = {}
        self._releases: list[Claim] = []
        self._new_run_state()
        self._in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._feeders: list[asyncio.Task[None]] = []
        self._lag = LagReporter(
            metrics, options.group, lambda: self._lanes, interval=lag_interval, log=self.log
        )
        #: The batch the dispatcher took from the queue and awaits the claim of.
        self._dispatching: Batch | None = None
        self._stopping = False
        self._give_up_at = float("inf")
        self._error: str | None = None
        self.running = False

    @property
    def store(self) -> DedupStore | None:
        """The dedup store (None when the consumer is not idempotent)."""
        return self.marks.store if self.marks is not None else None

    def use_backends(
        self, *, broker: Broker | None = None, store: DedupStore | None = None
    ) -> None:
        """Replace the broker or dedup store (before start; used by the test seam)."""
        if broker is not None:
            self.broker = self._runner.broker = broker
        if store is not None:
            self._runner.store = store
            self.marks = Marks(store, self.options, self.metrics, self.log)

    def _new_run_state(self) -> None:
        # asyncio primitives bind to the loop that first uses them; a service started
        # again on another loop (one per test in a test suite) needs fresh ones.
        self._batches: asyncio.Queue[Batch] = asyncio.Queue()
        self._finish_event = asyncio.Event()
        self._capacity = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._flush_slots = asyncio.Semaphore(FLUSHES)
        self._flushing: set[asyncio.Task[None]] = set()
        self._commit_lock = asyncio.Lock()
        self._commit_event = asyncio.Event()

    @property
    def name(self) -> str:
        """The scope of the dedup keys: ``<group>:<handler>``, where the group is the
        service name for a consumer on the default group (so a changed default group
        still finds the DONE marks written under the old one)."""
        return self._namespace

    def status(self) -> ConsumerStatus:
        """Partitions with their positions and lag, in-flight count and last error."""
        parts = (self._lanes, self._lag.readings, self._in_flight, self._error)
        return describe(self.options, self.spec.name, self.join, self.running, *parts)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start joining the group in the background (see :meth:`check`)."""
        self._stopping = False
        self._new_run_state()
        # Bound now: logging is configured at service startup, after decoration time.
        self.log = self._runner.log = get_logger(
            service=self._service_name, group=self.options.group, handler=self.spec.name
        )
        if self.marks is not None:
            self.marks.log = self.log
        self._runner.tracer = active_tracer() if self._tracing else None
        self._runner.debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        self._lag.log = self.log
        for topic in self.options.topics:  # from 0, so increase() sees the first dead letter
            self.metrics.count(topic, self.options.group, "dead_lettered", 0)
        self.join.begin()
        self.running = True
        self._feeders = [self._spawn("join", self._join)]
        self.log.info("consumer.joining", topics=list(self.options.topics))

    def _spawn(self, task: str, run: Callable[[], Any]) -> asyncio.Task[None]:
        return self.supervisor.spawn(f"consumer:{self.name}:{task}", run)

    async def _join(self) -> None:
        """Create the dead-letter topics and join the group, retried until it works, then
        start fetching."""
        try:
            await self.broker.create_topics(self._to_create)
        except Exception as exc:  # the topic may exist or be created by an operator
            self.log.warning("consumer.dead_letter_topic_unverified", error=repr(exc))
        delay = 0.5
        while True:
            gc = self.broker.group_consumer(
                self.options.topics,
                group=self.options.group,
                on_assigned=self._on_assigned,
                on_revoked=self._on_revoked,
                instance_id=self.group_instance_id,
            )
            try:
                await gc.start()
                break
            except (BackendUnavailable, MessagingError) as exc:
                self.join.failed(exc)
                self.log.warning("consumer.join_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._gc = gc
        self._feeders.append(self._spawn("fetch", self._fetch_loop))
        self._feeders.append(self._spawn("dispatch", self._dispatch_loop))
        self._tasks = [
            self._spawn("finish", self._finish_loop),
            self._spawn("commit", self._commit_loop),
            self._spawn("lag", lambda: self._lag.run(gc)),
        ]
        if self.marks is not None:
            marks = self.marks
            self._tasks.append(self._spawn("renew", lambda: marks.renew_forever(self._owned)))
        self.log.info("consumer.started", topics=list(self.options.topics))

    async def stop(self) -> None:
        """Stop fetching, finish running handlers, write DONE marks, commit, leave the group."""
        if not self.running:
            return
        self._stopping = True
        self._give_up_at = time.monotonic() + self.options.drain_timeout
        feeders, self._feeders = self._feeders, []
        await cancel_all(feeders)  # cancelled again if a cancellation is lost (Python 3.11)
        if self._gc is None:  # stopped while joining
            self.running = False
            self.log.info("consumer.stopped")
            return
        try:
            await self._abandon_batches()
            lanes = list(self._lanes.values())
            self._lanes = {}
            await self._drain(lanes)
        finally:  # a failed drain must not leave the tasks (and their restarts) running
            await cancel_all([*self._tasks, *self._flushing])  # flushes: after a drain timeout
            self._tasks = []
            self._flushing.clear()
            gc, self._gc = self._gc, None
            self.running = False
            try:
                await gc.stop()
            finally:
                self.log.info("consumer.stopped")

    async def _on_assigned(self, tps: set[TopicPartition]) -> None:
        # Fetching resumes at the committed offset, so commits from here on only move forward.
        for tp in tps:
            self._lanes[tp] = Lane(
                tp, PartitionOffsets(), self.options.concurrency, self._runner.work
            )
        self.join.done()
        self.log.info("consumer.assigned", partitions=_names(tps))

    async def _on_revoked(self, tps: set[TopicPartition]) -> None:
        lanes = [self._lanes.pop(tp) for tp in tps if tp in self._lanes]
        await self._drain(lanes)
        self.log.info("consumer.revoked", partitions=_names(tps))

    async def _drain(self, lanes: list[Lane]) -> None:
        """Drop queued records of ``lanes``, finish running ones, commit their prefix."""
        drained = await asyncio.gather(*(lane.drain(self.options.drain_timeout) for lane in lanes))
        for dropped in drained:
            for item in dropped:
                self._abandon(item)
        try:
            await asyncio.wait_for(self._flush(), self.options.drain_timeout)
            await asyncio.wait_for(self._commit(lanes), self.options.drain_timeout)
        except TimeoutError:
            self.log.error("consumer.drain_timeout", partitions=_names({ln.tp for ln in lanes}))


def _names(tps: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
