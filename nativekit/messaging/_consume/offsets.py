"""Which offset of a partition may be committed: the end of the finished prefix."""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offsets handed out for one partition and the ones finished.

    Offsets are added in fetch order (increasing); they finish in any order.
    :meth:`committable` returns the offset after the longest run of finished
    offsets from the oldest outstanding one, never less than what was already
    committed, so a commit never skips an unprocessed record nor moves back.
    """

    def __init__(self, committed: int | None = None) -> None:
        self.committed = committed
        self._outstanding: deque[int] = deque()
        self._finished: set[int] = set()
        self._next: int | None = committed
        self._first: int | None = None

    def add(self, offset: int) -> None:
        """Track a fetched offset."""
        if self._first is None:
            self._first = offset
        self._outstanding.append(offset)

    def add_many(self, offsets: list[int]) -> None:
        """Track fetched offsets (increasing): one call per fetched run of a partition."""
        if offsets and self._first is None:
            self._first = offsets[0]
        self._outstanding.extend(offsets)

    def finish_many(self, offsets: list[int]) -> None:
        """Mark offsets finished, in any order: :meth:`finish` for a flushed batch."""
        outstanding, finished = self._outstanding, self._finished
        last = None
        for offset in offsets:
            if outstanding and outstanding[0] == offset and not finished:  # in order
                outstanding.popleft()
                last = offset
            else:
                finished.add(offset)
        while outstanding and outstanding[0] in finished:
            last = outstanding.popleft()
            finished.discard(last)
        if last is not None:
            self._next = last + 1

    def finish(self, offset: int) -> None:
        """Mark an offset finished (handled, skipped as duplicate or dead-lettered)."""
        outstanding = self._outstanding
        if outstanding and outstanding[0] == offset and not self._finished:  # in order
            outstanding.popleft()
            self._next = offset + 1
            return
        self._finished.add(offset)
        while self._outstanding and self._outstanding[0] in self._finished:
            done = self._outstanding.popleft()
            self._finished.discard(done)
            self._next = done + 1

    @property
    def pending(self) -> int:
        """Tracked offsets not yet finished."""
        return len(self._outstanding)

    def floor(self) -> int | None:
        """Where the group resumes the partition now: the committed offset, else the
        first one fetched (None before anything was fetched or committed)."""
        return self.committed if self.committed is not None else self._first

    def committable(self) -> int | None:
        """Offset to commit now, or None when nothing new is finished."""
        if self._next is None or (self.committed is not None and self._next <= self.committed):
            return None
        return self._next

    def committed_at(self, offset: int) -> None:
        """Record a successful commit."""
        if self.committed is None or offset > self.committed:
            self.committed = offset
