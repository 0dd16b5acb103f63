"""Running a parallel group: its members at once, joined, failures per ``on_failure``.

Each member is a step run by :meth:`StepAttempts._run` in its own task; writes
of the members are serialized by the run (one write at a time, coalesced), so
every member's start is persisted before its function runs, as for a step
alone. A member that parks (durable timer, event, or a command waiting for its
reply) lets the others finish; the group is then parked as a whole, until the
earliest wake-up, and run again when woken: completed members are skipped,
members whose reply came complete or fail with it, those still waiting park again.
With ``on_failure="finish"``, a failed member does not end the group while
another member's command is in flight: the group parks until every reply or
deadline is in, then fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nativekit.saga._define.step import Grouping, Step
from nativekit.saga._run.attempts import StepAttempts
from nativekit.saga._run.state import Suspended
from nativekit.saga._store.model import StepStatus


class GroupRunner(StepAttempts):
    async def _run_group(self, group: Grouping) -> Step[Any, Any] | None:
        """Run the members not yet completed; the first member that failed, or None."""
        status = {s.name: self.record.step(s.name).status for s in group.members}
        # a member already FAILED: the group parked after it failed (on_failure="finish"),
        # for the commands of others (an operator retry resets failed steps to pending)
        failed = [s for s in group.members if status[s.name] is StepStatus.FAILED]
        members = [
            s
            for s in group.members
            if status[s.name] not in (StepStatus.COMPLETED, StepStatus.FAILED)
        ]
        tasks: dict[asyncio.Future[bool], Step[Any, Any]] = {}
        cancelled: set[asyncio.Future[bool]] = set()
        parked = False
        try:
            async with self._writing:
                tasks = {asyncio.ensure_future(self._run(s, "forward")): s for s in members}
                # one turn of the loop: each member runs up to the write of its start and
                # queues behind this lock, so one write persists every member's start (a
                # member that got further, or not as far, writes its own; nothing runs
                # before its start is persisted either way)
                await asyncio.sleep(0)
                await self._flush()
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task in cancelled:
                        continue
                    if task.cancelled():  # not by us: the process is stopping
                        raise asyncio.CancelledError
                    error = task.exception()
                    if isinstance(error, Suspended):
                        parked = True
                    elif error is not None:
                        raise error
                    elif not task.result():
                        failed.append(tasks[task])
                if failed and group.on_failure == "cancel" and pending:
                    for task in pending:
                        task.cancel()
                        cancelled.add(task)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        in_flight = bool(self.sent or self.held)  # commands of members await their replies
        if failed and (group.on_failure == "cancel" or not in_flight):
            self._abandon(group, failed[0])
            return failed[0]
        if parked:
            await self.park()
        return None

    def _abandon(self, group: Grouping, failed: Step[Any, Any]) -> None:
        """Members neither completed nor failed (cancelled, or parked) end as failed, with
        an unknown outcome: the saga compensates them too."""
        now = self.env.clock()
        self.waits, self.sent, self.held = {}, {}, {}
        for step in group.members:
            # a reply to a member from now on is late (the member is compensated instead)
            if self.record.waits.pop(step.name, None) is not None:
                self.pending.fields[f"wait:{step.name}"] = ""
            if self.record.replies.pop(step.name, None) is not None:
                self.pending.fields[f"reply:{step.name}"] = ""
            srec = self.record.step(step.name)
            if srec.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.PENDING):
                continue
            srec.status = StepStatus.FAILED
            srec.uncertain = True
            srec.waiting = False
            srec.ended_at = now
            srec.error = f"cancelled: step {failed.name!r} of parallel group {group.name!r} failed"
            self.mark(step.name, srec)
