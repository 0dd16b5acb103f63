"""``CommandBatcher``: the Redis commands issued in one event-loop turn, sent as one pipeline.

Many concurrent callers (a fetched batch of commands answered by a participant,
a batch of replies resuming sagas) each make a call or two to Redis at nearly
the same moment. Sent one by one, every call is its own round trip: a socket
write and read on each side, a connection taken and returned, a wake-up of the
event loop. Queued until the current loop turn ends and then sent together as a
pipeline without a transaction, they cost one round trip; each caller still gets
its own result or error, exactly as a single call would return it. Nothing waits
on a timer: a lone call goes out in the same loop turn, by itself.

A pipeline without a transaction gives no atomicity across its commands, and none
is asked of it: every command keeps its own (a Lua script is atomic by itself).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

__all__ = ["CommandBatcher"]

#: Most commands in one pipeline; more issued in one turn go in the next pipeline.
MAX_BATCH = 256


class CommandBatcher:
    """Sends the commands of one event-loop turn to ``client`` in one round trip.

    Args:
        client: a redis-py asyncio client.
        batching: False sends every command by itself (the stores do so on Redis
            Cluster, whose pipelines are split and redirected per node).
    """

    def __init__(self, client: aioredis.Redis, *, batching: bool = True) -> None:
        self.client = client
        self.batching = batching
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._loading = asyncio.Lock()
        #: round trips made and commands sent (a test and a benchmark read them)
        self.round_trips = 0
        self.commands = 0

    async def execute(self, *args: Any) -> Any:
        """Run one command (``"EVALSHA", sha, numkeys, *keys, *args`` and the like) and
        return its reply; a command error is raised as redis-py would raise it."""
        if not self.batching:
            return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            # after the callbacks ready now: calls of other tasks resumed in this turn join
            loop.call_soon(self._flush)
        return await future

    async def evalsha(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """Run a registered script (loading it first if the server does not know it)."""
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        if not self.batching:  # as the stores always called it
            try:
                return await self.client.evalsha(*call[1:])
            except redis.exceptions.NoScriptError:
                return await script(keys=keys, args=args)
        try:
            return await self.execute(*call)
        except redis.exceptions.NoScriptError:
            # one load at a time: redis-py's cluster client breaks a connection when many
            # callers load at once (the first burst after a start or a script flush)
            async with self._loading:
                await self.client.script_load(script.script)
            return await self.execute(*call)

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(
                self._send(queue[start : start + MAX_BATCH])
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        live = [(args, future) for args, future in batch if not future.done()]
        if not live:
            return
        self.round_trips += 1
        self.commands += len(live)
        if len(live) == 1:  # a pipeline of one costs more than the plain call
            args, future = live[0]
            try:
                result = await self.client.execute_command(*args)  # type: ignore[no-untyped-call]
            except BaseException as exc:  # handed to the caller, cancellation too
                _fail(future, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            if not future.done():
                future.set_result(result)
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for args, _ in live:
                    pipe.execute_command(*args)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, future in live:
                _fail(future, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), result in zip(live, results, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Wait for the pipelines in flight (their callers get their answers)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
