"""Running a parallel group: its members at once, joined, failures per ``on_failure``.

Each member is a step run by :meth:`StepAttempts._run` in its own task; writes
of the members are serialized by the run (one write at a time, coalesced), so
every member's start is persisted before its function runs, as for a step
alone. A member that parks (durable timer or event) lets the others finish;
the group is then parked as a whole, until the earliest wake-up.
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
        members = [
            s for s in group.members if self.record.step(s.name).status is not StepStatus.COMPLETED
        ]
        tasks = {asyncio.ensure_future(self._run(step, "forward")): step for step in members}
        cancelled: set[asyncio.Future[bool]] = set()
        failed: list[Step[Any, Any]] = []
        parked = False
        pending = set(tasks)
        try:
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
                if failed and group.on_failure == "cancel":
                    for task in pending:
                        task.cancel()
                        cancelled.add(task)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if failed:
            self._abandon(group, failed[0])
            return failed[0]
        if parked:
            await self.park()
        return None

    def _abandon(self, group: Grouping, failed: Step[Any, Any]) -> None:
        """Members neither completed nor failed (cancelled, or parked) end as failed, with
        an unknown outcome: the saga compensates them too."""
        now = self.env.clock()
        self.waits = {}
        for step in group.members:
            srec = self.record.step(step.name)
            if srec.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.PENDING):
                continue
            srec.status = StepStatus.FAILED
            srec.uncertain = True
            srec.waiting = False
            srec.ended_at = now
            srec.error = f"cancelled: step {failed.name!r} of parallel group {group.name!r} failed"
            self.mark(step.name, srec)
