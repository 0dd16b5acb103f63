"""The persisted state of a saga instance and how it maps to flat string fields.

A record is stored as a flat ``field -> str`` mapping (a Redis hash; a dict in
memory): scalar fields, one JSON field per step (``step:<name>``) and one per
step result (``result:<name>``). A transition writes only the fields it
changes, so a write never grows with the number of steps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from nativekit.saga._store.waiting import Waiting as Waiting  # re-exported: stored with records


class SagaStatus(StrEnum):
    """Where a saga instance is in its life."""

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"

    @property
    def active(self) -> bool:
        """True while a runner owns the saga (it holds a lease and makes progress)."""
        return self in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)

    @property
    def finished(self) -> bool:
        """True for end states nothing runs after (FAILED waits for an operator)."""
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.ABORTED)


class StepStatus(StrEnum):
    """Where one step of a saga instance is."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


@dataclass
class StepRecord:
    """History of one step: status, attempts per direction, last error, times (epoch s).

    ``uncertain`` marks a step whose last attempt has an unknown outcome (it was
    interrupted by a crash or timed out): if the saga compensates, this step's
    compensation runs too, since its effect may have been applied.

    ``attempts`` counts every attempt started; ``interruptions`` those of them cut
    short by their process stopping (crash, SIGKILL, a lease lost on shutdown).
    Only ``attempts - interruptions`` count against the step's ``retries``.
    """

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    compensation_started_at: float | None = None
    compensation_ended_at: float | None = None
    uncertain: bool = False
    interruptions: int = 0
    compensation_interruptions: int = 0
    #: The attempt is parked on a durable timer or an external event (not interrupted).
    waiting: bool = False

    def to_json(self) -> str:
        """Compact JSON, dropping empty values."""
        # hand-built: this runs twice per step on the hot path, json.dumps is 5x slower
        parts = [f'{{"status":"{self.status.value}"']
        for key in _STEP_FIELDS:
            value = getattr(self, key)
            if not value:
                continue
            if key == "error":
                parts.append(f'"error":{_compact(value)}')
            elif value is True:
                parts.append(f'"{key}":true')
            else:
                parts.append(f'"{key}":{value!r}')
        return ",".join(parts) + "}"

    @classmethod
    def from_json(cls, raw: str) -> StepRecord:
        """Inverse of :meth:`to_json`; keys it does not know are ignored."""
        data = json.loads(raw)
        data["status"] = StepStatus(data.get("status", "pending"))
        return cls(**{k: v for k, v in data.items() if k in _KNOWN})

    def failures(self, forward: bool) -> int:
        """Attempts of one direction that count against its retries (not the interrupted)."""
        if forward:
            return self.attempts - self.interruptions
        return self.compensation_attempts - self.compensation_interruptions


_STEP_FIELDS = (
    "attempts",
    "compensation_attempts",
    "error",
    "started_at",
    "ended_at",
    "compensation_started_at",
    "compensation_ended_at",
    "uncertain",
    "interruptions",
    "compensation_interruptions",
    "waiting",
)
_KNOWN = frozenset(("status", *_STEP_FIELDS))
_compact = json.JSONEncoder(separators=(",", ":")).encode


def encode_order(names: list[str]) -> str:
    """JSON list of step names (validated names never need escaping)."""
    return '["' + '","'.join(names) + '"]' if names else "[]"


#: Field names of the scalar part of a record.
SCALAR_FIELDS = (
    "id",
    "name",
    "def",
    "status",
    "since",
    "input",
    "created",
    "updated",
    "error",
    "order",
)


@dataclass
class SagaRecord:
    """A saga instance as stored: identity, status, input, per-step history and results."""

    saga_id: str
    name: str
    definition: str
    status: SagaStatus
    input: str
    created_at: float
    updated_at: float
    since: float = 0.0
    error: str | None = None
    order: list[str] = field(default_factory=list)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    lease_until: float | None = None
    #: JSON of the command reply the saga waits for (command steps), or None.
    wait: str | None = None
    #: The trace the saga was started in (32 hex digits), or None.
    trace_id: str | None = None
    #: When the saga stops moving forward and compensates (epoch s), or None.
    deadline: float | None = None
    #: Events a parked saga waits for (a signal of one of them wakes it).
    awaiting: list[str] = field(default_factory=list)
    #: Wake-up times of durable timers and event waits (``timer:<step>:<direction>:<n>``).
    timers: dict[str, float] = field(default_factory=dict)
    #: Payloads (JSON) of the external events delivered, by event name.
    events: dict[str, str] = field(default_factory=dict)
    #: The saga that started this one as a child step, and the event that wakes it.
    parent: str | None = None
    parent_event: str | None = None
    #: Child sagas this one started: child id -> the step that started it.
    children: dict[str, str] = field(default_factory=dict)
    #: Replies awaited by command members of a parallel group (``wait:<step>``, JSON of
    #: :class:`Waiting`) and the replies stored for them (``reply:<step>``), by step.
    waits: dict[str, str] = field(default_factory=dict)
    replies: dict[str, str] = field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        """The record as flat string fields (lease fields are the store's business)."""
        fields = {
            "id": self.saga_id,
            "name": self.name,
            "def": self.definition,
            "status": self.status.value,
            "input": self.input,
            "created": repr(self.created_at),
            "updated": repr(self.updated_at),
            "since": repr(self.since or self.created_at),
            "error": self.error or "",
            "order": encode_order(self.order),
        }
        if self.trace_id:
            fields["trace"] = self.trace_id
        if self.deadline is not None:
            fields["deadline"] = repr(self.deadline)
        if self.awaiting:
            fields["awaiting"] = json.dumps(self.awaiting)
        if self.parent is not None:
            fields["parent"] = self.parent
            fields["parent_event"] = self.parent_event or ""
        for child, started_by in self.children.items():
            fields[f"child:{child}"] = started_by
        for key, at in self.timers.items():
            fields[key] = repr(at)
        for name, payload in self.events.items():
            fields[f"event:{name}"] = payload
        for name, step in self.steps.items():
            fields[f"step:{name}"] = step.to_json()
        for name, result in self.results.items():
            fields[f"result:{name}"] = result
        for name, raw in self.waits.items():
            fields[f"wait:{name}"] = raw
        for name, raw in self.replies.items():
            fields[f"reply:{name}"] = raw
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> SagaRecord:
        """Build a record from the stored fields."""
        lease = fields.get("lease")
        record = cls(
            saga_id=fields["id"],
            name=fields["name"],
            definition=fields["def"],
            status=SagaStatus(fields["status"]),
            input=fields["input"],
            created_at=float(fields["created"]),
            updated_at=float(fields["updated"]),
            since=float(fields.get("since") or fields["created"]),
            error=fields.get("error") or None,
            order=json.loads(fields.get("order") or "[]"),
            token=fields.get("token") or None,
            lease_until=float(lease) / 1000 if lease else None,
            wait=fields.get("wait") or None,
            trace_id=fields.get("trace") or None,
            deadline=float(fields["deadline"]) if fields.get("deadline") else None,
            awaiting=json.loads(fields.get("awaiting") or "[]"),
            parent=fields.get("parent") or None,
            parent_event=fields.get("parent_event") or None,
        )
        for key, value in fields.items():
            if key.startswith("step:"):
                record.steps[key[5:]] = StepRecord.from_json(value)
            elif key.startswith("result:"):
                record.results[key[7:]] = value
            elif key.startswith("timer:"):
                record.timers[key] = float(value)
            elif key.startswith("event:"):
                record.events[key[6:]] = value
            elif key.startswith("child:"):
                record.children[key[6:]] = value
            elif key.startswith("wait:") and value:  # "" once the wait ended
                record.waits[key[5:]] = value
            elif key.startswith("reply:") and value:
                record.replies[key[6:]] = value
        return record

    def step(self, name: str) -> StepRecord:
        """The record of step ``name`` (a fresh pending one if it never ran)."""
        record = self.steps.get(name)
        if record is None:
            record = self.steps[name] = StepRecord()
        return record

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for operators: status, history, error, results."""
        return {
            "saga_id": self.saga_id,
            "name": self.name,
            "definition": self.definition,
            "status": self.status.value,
            "input": json.loads(self.input),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status_since": self.since,
            "error": self.error,
            "order": list(self.order),
            "steps": {
                name: {k: v for k, v in asdict(step).items() if v is not None}
                | {"status": step.status.value}
                for name, step in self.steps.items()
            },
            "results": {name: json.loads(raw) for name, raw in self.results.items()},
            "lease_until": self.lease_until,
            "trace_id": self.trace_id,
            "deadline": self.deadline,
            "awaiting": list(self.awaiting),
            "events": {name: json.loads(raw) for name, raw in self.events.items()},
            "parent": self.parent,
            "children": dict(self.children),
            "waits": self._waits_view(),
            "replies": sorted(self.replies),
        }

    def _waits_view(self) -> dict[str, dict[str, Any]]:
        """The command replies still awaited, by step: the step's own (``wait``) and those
        of the command members of a parallel group (``wait:<step>``); tokens left out."""
        raws = [self.wait] if self.wait else []
        views = {}
        for raw in [*raws, *self.waits.values()]:
            wait = Waiting.decode(raw)
            if wait is not None:
                views[wait.step] = {
                    "direction": wait.direction,
                    "attempt": wait.attempt,
                    "sent_at": wait.at,
                    "reply_due": None if wait.at is None else wait.at + wait.timeout,
                }
        return views


@dataclass
class Transition:
    """Changes one write applies: new status (or None) and fields to set.

    ``outbox`` holds encoded outbox entries written in the same atomic write
    (``nativekit.saga._store.outbox``); ``lease`` overrides the lease length of this write
    (a saga waiting for a command reply is leased until the reply deadline).
    ``release_if_any``: field names; when the record holds any of them (non-empty) once
    the change is applied, the write releases the lease (as ``release``) instead of
    extending it. A saga parking on an external event names ``event:<name>`` here, so an
    event delivered just before it parked wakes it at once; a group parking again names
    ``reply:<step>`` of its members still waiting.
    """

    status: SagaStatus | None = None
    fields: dict[str, str] = field(default_factory=dict)
    release: bool = False
    outbox: list[str] = field(default_factory=list)
    lease: float | None = None
    release_if_any: list[str] = field(default_factory=list)

    def merge(self, other: Transition) -> None:
        """Fold ``other`` (a later change) into this one."""
        if other.status is not None:
            self.status = other.status
        self.fields.update(other.fields)
        self.release = self.release or other.release
        self.outbox.extend(other.outbox)
        if other.lease is not None:
            self.lease = other.lease
        self.release_if_any.extend(other.release_if_any)

    def __bool__(self) -> bool:
        return self.status is not None or bool(self.fields) or self.release or bool(self.outbox)


@dataclass
class Page:
    """One page of a listing; pass ``cursor`` back to get the next one (None: last page)."""

    items: list[SagaRecord]
    cursor: str | None
