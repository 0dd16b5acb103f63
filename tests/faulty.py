"""Fault injection seams for tests: wrap a real store or broker so one call fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nativekit.messaging import MemoryBroker


class Injected(RuntimeError):
    """The error a test injected (nothing expects it: a bug in a store, say)."""


class FailOnce:
    """Delegates to ``target``; the async method ``method`` raises :class:`Injected`
    on its first ``times`` calls, then behaves again."""

    def __init__(self, target: Any, method: str, *, times: int = 1) -> None:
        self.target = target
        self.method = method
        self.left = times
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if name != self.method:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.left > 0:
                self.left -= 1
                raise Injected(f"{self.method} failed (injected)")
            return await attr(*args, **kwargs)

        return call


class FaultyBroker(MemoryBroker):
    """A memory broker whose group members fail ``method`` on its first ``times`` calls."""

    def __init__(self, method: str, *, times: int = 1) -> None:
        super().__init__()
        self.method = method
        self.times = times
        self.members: list[FailOnce] = []

    def group_consumer(  # type: ignore[override]
        self,
        topics: Sequence[str],
        *,
        group: str,
        on_assigned: Callable[..., Any],
        on_revoked: Callable[..., Any],
        instance_id: str | None = None,
    ) -> Any:
        member = super().group_consumer(
            topics, group=group, on_assigned=on_assigned, on_revoked=on_revoked
        )
        wrapped = FailOnce(member, self.method, times=self.times)
        self.times = 0  # a rejoin is a fresh member: fail only the first
        self.members.append(wrapped)
        return wrapped
