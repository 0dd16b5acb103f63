"""Commands and replies over Kafka: the participant side (``@svc.command_handler``).

A command is a pydantic model sent to a participant topic by a saga's command
step (through the orchestrator's outbox). Its headers say where to reply and
how to correlate the reply: ``reply-to``, ``idempotency-key``, ``saga-id``,
``saga-step``, ``saga-direction``, ``saga-attempt`` and ``saga-reply-token``.

A participant registers ``async def handler(cmd: Command) -> Reply``. Several
handlers may share a topic; the ``event-type`` header (the command's class
name) picks one. Per command:

1. The idempotency key is claimed in the reply store. A key already answered
   gets the stored reply again (no second effect); a key held by another worker
   waits until that worker finishes or its lease expires.
2. The handler runs. Its return value is a success reply; raising
   :class:`CommandRejected` is a failure reply (a business answer, final).
   Other exceptions are retried by the consumer; on the last attempt a failure
   reply is stored and sent and the command is dead-lettered.
3. The reply is stored with the key (the DONE mark), then published to
   ``reply-to`` with the correlation headers of the command being answered.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from nativekit._telemetry.logging import get_logger
from nativekit._transaction import NO_TRANSACTION, Transaction, TransactionScope
from nativekit.errors import BackendUnavailable, ConfigError, NativekitError
from nativekit.messaging._commands.reply_store import ReplyStore, StoredReply
from nativekit.messaging._wire.envelope import CONTENT_TYPE, EVENT_TYPE, JSON, Message

if TYPE_CHECKING:
    from nativekit._context import ServiceContext
    from nativekit.messaging._messaging import Messaging

# Headers of commands (and echoed on replies).
REPLY_TO = "reply-to"
IDEMPOTENCY_KEY = "idempotency-key"
SAGA_ID = "saga-id"
SAGA_STEP = "saga-step"
SAGA_DIRECTION = "saga-direction"
SAGA_ATTEMPT = "saga-attempt"
SAGA_REPLY_TOKEN = "saga-reply-token"
CORRELATION = (SAGA_ID, SAGA_STEP, SAGA_DIRECTION, SAGA_ATTEMPT, SAGA_REPLY_TOKEN)
# Headers of replies.
REPLY_STATUS = "reply-status"  # a ReplyStatus
REPLY_ERROR = "reply-error"

#: The ``reply-status`` header of a reply.
ReplyStatus = Literal["ok", "failed"]
#: What a participant did with a command: the ``outcome`` label of
#: ``nativekit_commands_handled_total``.
CommandOutcome = Literal["ok", "rejected", "failed", "duplicate", "undeliverable"]

CommandFunc = Callable[..., Awaitable[Any]]
C = TypeVar("C", bound=CommandFunc)


class CommandRejected(NativekitError):
    """Raised by a command handler for a business refusal: the saga gets a failure reply.

    The failure is final (not retried) and stored like a success, so a duplicate of
    the command gets the same refusal again.
    """


class UndeliverableCommand(NativekitError):
    """A command no handler of its topic accepts (unknown type or invalid payload)."""


@dataclass(frozen=True)
class CommandHandler:
    """One registered ``async def handler(cmd: Command) -> Reply``."""

    func: CommandFunc
    command: type[BaseModel]
    reply: type[BaseModel] | None
    #: takes a second parameter annotated ``Transaction`` (the handler's transaction)
    transactional: bool = False


def inspect_command_handler(func: CommandFunc) -> CommandHandler:
    """Read the command model and reply model from the handler's annotations."""
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"Command handler {name} must be 'async def'.")
    hints = typing.get_type_hints(func)
    params = list(inspect.signature(func).parameters)
    transactional = len(params) == 2 and hints.get(params[1]) is Transaction
    command = hints.get(params[0]) if len(params) == 1 or transactional else None
    if not (isinstance(command, type) and issubclass(command, BaseModel)):
        raise ConfigError(
            f"Command handler {name} must take one parameter annotated with the command's "
            "pydantic model (and optionally a second annotated Transaction), e.g. "
            "'async def on_reserve(cmd: ReserveStock) -> Reply'."
        )
    reply = hints.get("return")
    if reply is type(None):
        reply = None
    if reply is not None and not (isinstance(reply, type) and issubclass(reply, BaseModel)):
        raise ConfigError(f"Command handler {name} must return a pydantic model (the reply).")
    return CommandHandler(func, command, reply, transactional)


class CommandTopic:
    """The handlers of one topic and the consumer dispatch function that runs them."""

    def __init__(
        self,
        ctx: ServiceContext,
        messaging: Messaging,
        topic: str,
        store: ReplyStore,
        metrics: Any,
    ) -> None:
        self.service = ctx.name
        self.settings = ctx.settings
        self.messaging = messaging
        self.topic = topic
        self.store = store
        self.retries = ctx.settings.consumer.retries
        self.handlers: dict[str, CommandHandler] = {}
        self.log = get_logger(service=ctx.name, component="commands", topic=topic)
        self.metrics = metrics

    def add(self, handler: CommandHandler) -> None:
        """Register ``handler`` for its command type."""
        name = handler.command.__name__
        if name in self.handlers:
            raise ConfigError(f"Topic {self.topic!r} already has a handler for command {name}.")
        self.handlers[name] = handler

    async def dispatch(self, payload: bytes, msg: Message) -> None:
        """Consumer handler: answer the command once per idempotency key."""
        reply_to = msg.header(REPLY_TO)
        key = msg.header(IDEMPOTENCY_KEY) or msg.message_id or f"{msg.partition}:{msg.offset}"
        claim = await self._claim(key)
        if isinstance(claim, StoredReply):
            self._count(msg, "duplicate")
            await self._send(reply_to, msg, claim)
            return
        factory = self.messaging.transactions() if self.messaging.transactions else None
        scope = factory() if factory is not None else None
        try:
            await self._answer(key, claim, payload, msg, scope)
        finally:
            if scope is not None:
                await scope.close()  # rolls back unless the reply committed with it

    async def _answer(
        self, key: str, claim: str, payload: bytes, msg: Message, scope: TransactionScope | None
    ) -> None:
        reply_to = msg.header(REPLY_TO)
        try:
            stored = await self._run_holding(key, claim, payload, msg, scope)
        except asyncio.CancelledError:
            # stopped mid-handler (drain timeout): the command is redelivered, and must
            # not wait for this claim's lease to run again
            await self.store.release(key, claim)
            raise
        except UndeliverableCommand as exc:
            stored = StoredReply(False, "", b"", f"{type(exc).__name__}: {exc}")
            await self._settle(key, claim, stored, reply_to, msg, "undeliverable")
            raise
        except Exception as exc:
            if scope is not None:
                await scope.close()  # the handler's writes go with its failure
            if msg.attempt <= self.retries:
                await self.store.release(key, claim)
                raise
            stored = StoredReply(False, "", b"", f"{type(exc).__name__}: {exc}")
            await self._settle(key, claim, stored, reply_to, msg, "failed")
            raise  # dead-lettered by the consumer, with the error in its headers
        if scope is not None and not stored.ok:
            await scope.close()  # a rejection applies nothing of what the handler wrote
        outcome: CommandOutcome = "ok" if stored.ok else "rejected"
        await self._settle(key, claim, stored, reply_to, msg, outcome, scope)

    async def _claim(self, key: str) -> str | StoredReply:
        """A token when this worker owns the key, the stored reply when it was answered."""
        delay = 0.02
        while True:
            try:
                claim = await self.store.claim(
                    key, lease=self.settings.consumer.dedup_lease_seconds
                )
            except BackendUnavailable as exc:  # a store outage is no failure of the command
                self.log.warning("command.claim_failed", idempotency_key=key, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if claim is not None:
                return claim
            await asyncio.sleep(delay)  # another worker holds the key: wait for it or its lease
            delay = min(delay * 2, 0.5)

    async def _run_holding(
        self,
        key: str,
        token: str,
        payload: bytes,
        msg: Message,
        scope: TransactionScope | None = None,
    ) -> StoredReply:
        """:meth:`_run`, renewing the key's lease meanwhile: a handler slower than
        ``NATIVEKIT_CONSUMER_DEDUP_LEASE_SECONDS`` must not be run again by a copy of the
        command (a saga step retried after its reply timeout sends one)."""
        lease = self.settings.consumer.dedup_lease_seconds
        keeper: asyncio.Task[None] | None = None

        async def keep() -> None:
            while True:
                try:
                    if not await self.store.renew(key, token, lease=lease):
                        self.log.warning("command.lease_lost", idempotency_key=key)
                        return
                except BackendUnavailable as exc:  # try again at the next beat
                    self.log.warning("command.lease_renewal_failed", error=str(exc))
                await asyncio.sleep(lease / 3)

        def start_keeping() -> None:
            nonlocal keeper
            keeper = asyncio.create_task(keep())

        # A timer, not a task, until the first renewal is due: nearly every handler ends
        # well before it, and then no task was created, scheduled and cancelled for it.
        timer = asyncio.get_running_loop().call_later(lease / 3, start_keeping)
        try:
            return await self._run(payload, msg, scope)
        finally:
            timer.cancel()
            if keeper is not None:
                keeper.cancel()

    async def _run(
        self, payload: bytes, msg: Message, scope: TransactionScope | None = None
    ) -> StoredReply:
        handler = self.handlers.get(msg.event_type or "")
        if handler is None:
            raise UndeliverableCommand(
                f"no handler for command type {msg.event_type!r} on {self.topic!r}; "
                f"known: {sorted(self.handlers)}"
            )
        try:
            command = handler.command.model_validate_json(payload)
        except ValidationError as exc:
            raise UndeliverableCommand(
                f"payload does not fit {handler.command.__name__}: {exc}"
            ) from exc
        try:
            if handler.transactional:
                reply = await handler.func(command, scope or NO_TRANSACTION)
            else:
                reply = await handler.func(command)
        except CommandRejected as exc:
            return StoredReply(False, "", b"", str(exc))
        if reply is None:
            return StoredReply(True, "", b"null", None)
        if not isinstance(reply, BaseModel):
            raise TypeError(f"command handler returned {type(reply).__name__}, not a model")
        return StoredReply(True, type(reply).__name__, reply.model_dump_json().encode(), None)

    async def _settle(
        self,
        key: str,
        token: str,
        stored: StoredReply,
        reply_to: str | None,
        msg: Message,
        outcome: CommandOutcome,
        scope: TransactionScope | None = None,
    ) -> None:
        """Store the reply (in the handler's transaction when it used one, then commit
        both) and send it."""
        if scope is not None and scope.begun:
            retain = self.settings.consumer.dedup_retention_seconds
            with scope.joined():
                held = await self.store.finish(key, token, stored, retain=retain)
            if held:
                await scope.commit()
        else:
            held = await self._finish(key, token, stored)
        if not held:
            self.log.warning("command.lease_lost", idempotency_key=key)
            return  # another worker took the key over and answers it (ours is rolled back)
        self._count(msg, outcome)
        await self._send(reply_to, msg, stored)

    async def _finish(self, key: str, token: str, stored: StoredReply) -> bool:
        """Store the reply, retried while the store is down: the handler already ran, and
        giving up would run it again on redelivery (a Redis failover takes seconds)."""
        retain = self.settings.consumer.dedup_retention_seconds
        delay = 0.1
        while True:
            try:
                return await self.store.finish(key, token, stored, retain=retain)
            except BackendUnavailable as exc:
                self.log.warning("command.finish_failed", idempotency_key=key, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _send(self, reply_to: str | None, msg: Message, stored: StoredReply) -> None:
        if not reply_to:
            return
        headers: dict[str, str | bytes] = {
            name: value for name in CORRELATION if (value := msg.header(name)) is not None
        }
        status: ReplyStatus = "ok" if stored.ok else "failed"
        headers[REPLY_STATUS] = status
        headers[EVENT_TYPE] = stored.event_type or "bytes"
        headers[CONTENT_TYPE] = JSON
        if stored.error:
            headers[REPLY_ERROR] = stored.error[:2000]
        attempt = msg.header(SAGA_ATTEMPT) or "0"
        await self.messaging.publisher.publish(
            reply_to,
            stored.value,
            key=msg.key,
            headers=headers,
            message_id=f"{msg.message_id}:reply:{attempt}",
        )

    def _count(self, msg: Message, outcome: CommandOutcome) -> None:
        self.metrics.labels(self.service, self.topic, msg.event_type or "", outcome).inc()


class CommandHandlers:
    """The command topics of one service (``svc.command_handler``).

    Args:
        ctx: the service's context.
        messaging: runs one consumer per command topic and publishes the replies.
        store: builds the reply store (called when the first handler is registered).
    """

    def __init__(
        self, ctx: ServiceContext, messaging: Messaging, *, store: Callable[[], ReplyStore]
    ) -> None:
        self.ctx = ctx
        self.messaging = messaging
        self.topics: dict[str, CommandTopic] = {}
        self._store_factory = store
        self._store: ReplyStore | None = None
        self._metrics: Any = None

    @property
    def store(self) -> ReplyStore:
        """Where answered commands are remembered: Redis per settings, else memory."""
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    @property
    def metrics(self) -> Any:
        """``nativekit_commands_handled_total{service, topic, command, outcome}``."""
        if self._metrics is None:
            from prometheus_client import Counter

            self._metrics = Counter(
                "nativekit_commands_handled_total",
                "Commands answered by participants, by topic, command type and outcome "
                "(ok, rejected, failed, duplicate, undeliverable).",
                ["service", "topic", "command", "outcome"],
                registry=self.ctx.metrics.registry,
            )
        return self._metrics

    def register(self, topic: str, *, concurrency: int = 16) -> Callable[[C], C]:
        """Decorator for ``svc.command_handler(topic)``."""

        def decorator(func: C) -> C:
            handler = inspect_command_handler(func)
            entry = self.topics.get(topic)
            if entry is None:
                entry = CommandTopic(self.ctx, self.messaging, topic, self.store, self.metrics)
                self.topics[topic] = entry
                self.messaging.consumer(
                    topic,
                    group=self.ctx.name,
                    idempotent=False,  # the reply store deduplicates, and re-sends replies
                    non_retryable=(UndeliverableCommand,),
                    concurrency=concurrency,
                    retries=entry.retries,
                )(_named(entry.dispatch, f"commands:{topic}"))
            entry.add(handler)
            return func

        return decorator


def _named(
    func: Callable[[bytes, Message], Awaitable[None]], name: str
) -> Callable[[bytes, Message], Awaitable[None]]:
    async def handler(payload: bytes, msg: Message) -> None:
        await func(payload, msg)

    handler.__qualname__ = handler.__name__ = name
    return handler
