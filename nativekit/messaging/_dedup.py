"""Idempotency records: which messages a consumer already handled.

A key goes through three states:

* ``IN_PROGRESS`` — claimed by one worker with a lease and a fencing token;
  when the lease runs out (the worker died) the key can be claimed again,
  with a larger token.
* ``DONE`` — the handler finished; kept for ``retain`` seconds, so a
  redelivery within that time is skipped.
* ``DEAD`` — the message went to the dead-letter topic; also kept.

Every method works on a batch, so a consumer pays one round trip per fetched
batch for claims and one for finishes. ``states`` and ``revive`` (not part of
the protocol) serve operators: ``nativekit dlq`` shows states and revives a
DEAD key before it replays the message.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol


class ClaimStatus(enum.Enum):
    """What :meth:`DedupStore.claim_many` found for a key."""

    CLAIMED = "claimed"  #: the caller owns the key now and must handle the message
    DONE = "done"  #: handled before: skip it
    DEAD = "dead"  #: dead-lettered before: skip it
    BUSY = "busy"  #: another worker holds a live lease: wait and claim again


class FinalState(enum.Enum):
    """The state a claim ends in."""

    DONE = "D"
    DEAD = "X"


#: Stored state letter -> the name operators see.
_STATE_NAMES = {"P": "IN_PROGRESS", "D": "DONE", "X": "DEAD"}


class Claim(NamedTuple):
    """The answer for one key; ``token`` (fencing) is set when ``status`` is CLAIMED."""

    key: str
    status: ClaimStatus
    token: int = 0


class DedupStore(Protocol):
    """Remembers which messages a handler already finished."""

    async def claim_many(self, keys: Sequence[str], *, lease: float) -> list[Claim]:
        """Claim each free key for ``lease`` seconds; report the others' states."""

    async def finish_many(
        self, claims: Sequence[Claim], *, retain: float, state: FinalState = FinalState.DONE
    ) -> list[bool]:
        """Mark claims DONE (or DEAD) for ``retain`` seconds; False where the lease was lost
        to another owner (its token no longer matches)."""

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend leases still held; False where a claim was lost."""

    async def release_many(self, claims: Sequence[Claim]) -> None:
        """Drop leases still held (the message was not handled and will be redelivered)."""

    async def ping(self) -> None:
        """Raise BackendUnavailable when the store does not answer."""

    async def aclose(self) -> None:
        """Close connections the store owns."""


class MemoryDedupStore:
    """The reference :class:`DedupStore`, in this process (tests, single-process dev)."""

    def __init__(self, *, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[str, int, float]] = {}  # key -> (state, token, expires)
        self._tokens = itertools.count(1)
        self.available = True

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _check(self) -> None:
        if not self.available:
            from nativekit.errors import BackendUnavailable

            raise BackendUnavailable("memory dedup store is switched off (test fault)")

    def _live(self, key: str) -> tuple[str, int, float] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[2] <= self._now():
            del self._entries[key]
            return None
        return entry

    async def claim_many(self, keys: Sequence[str], *, lease: float) -> list[Claim]:
        """Claim free keys; report DONE/DEAD/BUSY for the others."""
        self._check()
        out: list[Claim] = []
        for key in keys:
            entry = self._live(key)
            if entry is None:
                token = next(self._tokens)
                self._entries[key] = ("P", token, self._now() + lease)
                out.append(Claim(key, ClaimStatus.CLAIMED, token))
            elif entry[0] == "D":
                out.append(Claim(key, ClaimStatus.DONE))
            elif entry[0] == "X":
                out.append(Claim(key, ClaimStatus.DEAD))
            else:
                out.append(Claim(key, ClaimStatus.BUSY))
        return out

    def _held(self, claim: Claim) -> bool:
        entry = self._live(claim.key)
        return entry is not None and entry[0] == "P" and entry[1] == claim.token

    async def finish_many(
        self, claims: Sequence[Claim], *, retain: float, state: FinalState = FinalState.DONE
    ) -> list[bool]:
        """Mark held (or expired, unclaimed) keys final; False where another owner took over."""
        self._check()
        out = []
        for claim in claims:
            entry = self._live(claim.key)
            ok = entry is None or (entry[0] == "P" and entry[1] == claim.token)
            if ok:
                self._entries[claim.key] = (state.value, claim.token, self._now() + retain)
            out.append(ok)
        return out

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend held leases."""
        self._check()
        out = []
        for claim in claims:
            ok = self._held(claim)
            if ok:
                self._entries[claim.key] = ("P", claim.token, self._now() + lease)
            out.append(ok)
        return out

    async def release_many(self, claims: Sequence[Claim]) -> None:
        """Forget held leases."""
        self._check()
        for claim in claims:
            if self._held(claim):
                del self._entries[claim.key]

    async def states(self, keys: Sequence[str]) -> list[str | None]:
        """Operator view: ``"IN_PROGRESS"``, ``"DONE"``, ``"DEAD"`` or None (no record)."""
        self._check()
        return [_STATE_NAMES[e[0]] if (e := self._live(k)) else None for k in keys]

    async def revive(self, key: str) -> bool:
        """Forget ``key``'s DEAD mark so its message is handled again (True if it was DEAD)."""
        self._check()
        entry = self._live(key)
        if entry is None or entry[0] != FinalState.DEAD.value:
            return False
        del self._entries[key]
        return True

    async def ping(self) -> None:
        """Answers unless switched off."""
        self._check()

    async def aclose(self) -> None:
        """Nothing to close."""
