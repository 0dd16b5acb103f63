"""Command steps as members of a parallel group (issue 18, part 1): several commands in
flight for one saga, each reply fenced to its member's attempt and stored with the saga,
which parks (no task held) until every member has its reply or its deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel
from starlette.applications import Starlette

from nativekit import CommandRejected, Saga, SagaContext
from nativekit.messaging._commands import handlers as h
from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._commands.replies import apply_reply
from nativekit.saga._define.group import OnFailure
from nativekit.saga._operator.http import operator_routes
from nativekit.saga._run.commands import CommandDriver
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.model import Waiting
from nativekit.saga._store.outbox import OutboxEntry
from nativekit.testing import ManualClock, crash_matrix


class Order(BaseModel):
    order_id: str
    amount: int = 10


class Reserve(BaseModel):
    order_id: str


class Reserved(BaseModel):
    reservation: str


class Release(BaseModel):
    order_id: str


class Charge(BaseModel):
    order_id: str
    amount: int


class Charged(BaseModel):
    charge: str


class Refund(BaseModel):
    order_id: str


def build(
    on_failure: OnFailure = "cancel",
    *,
    effects: list[str] | None = None,
    reserve_retries: int = 0,
    charge_timeout: float = 5,
) -> Saga[Order]:
    """check (local), then a group of reserve and charge (commands) and note (local),
    then confirm (local, reads both replies)."""
    saga: Saga[Order] = Saga(f"group-order-{on_failure}", input=Order)
    done = effects if effects is not None else []

    @saga.step(readonly=True)
    async def check(ctx: SagaContext[Order]) -> int:
        return ctx.data.amount

    group = saga.parallel("reserve-and-pay", on_failure=on_failure)

    @group.command_step(
        topic="inventory.commands", reply=Reserved, reply_timeout=5, retries=reserve_retries
    )
    async def reserve(ctx: SagaContext[Order]) -> Reserve:
        return Reserve(order_id=ctx.data.order_id)

    @reserve.compensate_command(topic="inventory.commands")
    async def release(ctx: SagaContext[Order]) -> Release:
        return Release(order_id=ctx.data.order_id)

    @group.command_step(
        topic="payments.commands", reply=Charged, reply_timeout=charge_timeout, retries=0
    )
    async def charge(ctx: SagaContext[Order]) -> Charge:
        return Charge(order_id=ctx.data.order_id, amount=ctx.data.amount)

    @charge.compensate_command(topic="payments.commands")
    async def refund(ctx: SagaContext[Order]) -> Refund:
        return Refund(order_id=ctx.data.order_id)

    @group.step()
    async def note(ctx: SagaContext[Order]) -> str:
        done.append(f"note:{ctx.data.order_id}")
        return "noted"

    @note.compensate
    async def unnote(ctx: SagaContext[Order]) -> None:
        done.append(f"unnote:{ctx.data.order_id}")

    @saga.step()
    async def confirm(ctx: SagaContext[Order]) -> str:
        return f"{ctx.results['reserve'].reservation}+{ctx.results['charge'].charge}"

    return saga


async def on_reserve(cmd: Reserve) -> Reserved:
    return Reserved(reservation=f"r-{cmd.order_id}")


async def on_release(cmd: Release) -> None:
    return None


async def on_charge(cmd: Charge) -> Charged:
    if cmd.amount > 100:
        raise CommandRejected("card declined")
    return Charged(charge=f"c-{cmd.order_id}")


async def on_refund(cmd: Refund) -> None:
    return None


PARTICIPANTS = {"Reserve": on_reserve, "Release": on_release, "Charge": on_charge}
PARTICIPANTS["Refund"] = on_refund


class Wire:
    """Participants by hand: commands are answered only when the test says so, and a reply
    can be delivered again (a duplicate) or after the saga moved on (late)."""

    def __init__(self, store: MemorySagaStore, runtime: SagaRuntime) -> None:
        self.store = store
        self.runtime = runtime
        self.commands: list[OutboxEntry] = []
        self.answers: dict[str, tuple[bytes, dict[str, str]]] = {}

    def take(self) -> list[OutboxEntry]:
        """Commands written since the last call (as the relay would publish them)."""
        entries = [OutboxEntry.decode(raw) for raw in self.store.outbox_entries]
        self.store.outbox_entries.clear()
        self.commands += entries
        return entries

    async def answer(self, entry: OutboxEntry) -> str:
        """Run the participant for ``entry`` and deliver its reply; the reply's outcome."""
        handler: Any = PARTICIPANTS[entry.event_type]
        command = {"Reserve": Reserve, "Release": Release, "Charge": Charge, "Refund": Refund}
        headers = dict(entry.headers)
        try:
            reply = await handler(command[entry.event_type].model_validate_json(entry.value))
        except CommandRejected as exc:
            body, headers[h.REPLY_STATUS], headers[h.REPLY_ERROR] = b"", "failed", str(exc)
        else:
            body = reply.model_dump_json().encode() if reply is not None else b"null"
            headers[h.REPLY_STATUS] = "ok"
        self.answers[entry.headers[h.SAGA_STEP]] = (body, headers)
        return await apply_reply(self.runtime, body, headers.get)

    async def again(self, step: str) -> str:
        """Deliver the last reply of ``step`` once more."""
        body, headers = self.answers[step]
        return await apply_reply(self.runtime, body, headers.get)

    async def settle(self) -> None:
        """Let runs spawned by replies reach their next park or end."""
        await _idle(self.runtime)


def _setup(saga: Saga[Order], clock: ManualClock) -> tuple[MemorySagaStore, SagaRuntime, Wire]:
    store = MemorySagaStore(clock=clock)
    runtime = SagaRuntime("orders", store, tracing=False, clock=clock, local_wake=False)
    runtime.declare(saga)
    runtime.commands = CommandDriver("orders.replies", lambda _saga_id: None)
    return store, runtime, Wire(store, runtime)


async def _parked(
    runtime: SagaRuntime, saga: Saga[Order], data: dict[str, Any], saga_id: str
) -> SagaRecord:
    await runtime.start(saga, data, saga_id=saga_id)
    await _idle(runtime)
    record = await runtime.store.get(saga_id)
    assert record is not None and record.status is SagaStatus.RUNNING, record
    return record


async def _idle(runtime: SagaRuntime) -> None:
    """Until no run of ``runtime`` is in progress (the saga parked or ended)."""
    async with asyncio.timeout(5):
        while runtime.runs:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def _by_step(entries: list[OutboxEntry]) -> dict[str, OutboxEntry]:
    return {e.headers[h.SAGA_STEP]: e for e in entries}


async def test_two_command_members_and_a_local_one_complete_the_group() -> None:
    """Both commands are written in one park with a wait each; the first reply is stored
    without resuming the saga; the second resumes it, and the saga completes with both
    replies as results."""
    effects: list[str] = []
    saga, clock = build(effects=effects), ManualClock()
    store, runtime, wire = _setup(saga, clock)
    record = await _parked(runtime, saga, {"order_id": "o1"}, "g-1")
    sent = _by_step(wire.take())
    assert set(sent) == {"reserve", "charge"} and effects == ["note:o1"]
    assert set(record.waits) == {"reserve", "charge"}
    assert record.step("note").status.value == "completed"
    lease = record.lease_until

    assert await wire.answer(sent["reserve"]) == "received"
    await wire.settle()
    stored = await store.get("g-1")
    assert stored is not None and stored.status is SagaStatus.RUNNING
    assert set(stored.replies) == {"reserve"} and set(stored.waits) == {"charge"}
    assert stored.lease_until == lease and not runtime.runs  # not resumed, nothing held

    assert await wire.answer(sent["charge"]) == "received"
    final = await runtime.wait("g-1", 5)
    assert final.status is SagaStatus.COMPLETED, final.error
    assert final.to_dict()["results"]["confirm"] == "r-o1+c-o1"
    assert final.waits == {} and final.replies == {}
    assert effects == ["note:o1"]  # the local member ran once


async def test_a_failure_reply_compensates_the_other_members_in_reverse() -> None:
    """charge is refused: the group fails once reserve's reply is also in; reserve is
    undone with its compensation command, note with its function, charge not at all."""
    effects: list[str] = []
    saga, clock = build("finish", effects=effects), ManualClock()
    store, runtime, wire = _setup(saga, clock)
    await _parked(runtime, saga, {"order_id": "o2", "amount": 500}, "g-2")
    sent = _by_step(wire.take())
    assert await wire.answer(sent["charge"]) == "received"  # stored; reserve still waits
    await wire.settle()
    assert (await store.get("g-2")).status is SagaStatus.RUNNING  # type: ignore[union-attr]
    assert await wire.answer(sent["reserve"]) == "received"
    await wire.settle()
    undo = _by_step(wire.take())
    assert set(undo) == {"reserve"} and undo["reserve"].event_type == "Release"
    assert await wire.answer(undo["reserve"]) == "received"
    final = await runtime.wait("g-2", 5)
    assert final.status is SagaStatus.COMPENSATED, final.error
    steps = final.to_dict()["steps"]
    assert steps["charge"]["status"] == "failed" and "card declined" in steps["charge"]["error"]
    assert steps["reserve"]["status"] == "compensated"
    assert steps["note"]["status"] == "compensated"
    assert effects == ["note:o2", "unnote:o2"]
    # compensated latest first: the order records completions, reversed for undoing
    assert final.order[:1] == ["check"] and set(final.order[1:]) == {"reserve", "note"}


async def test_cancel_policy_compensates_a_member_still_waiting_and_fences_its_reply() -> None:
    """With on_failure="cancel", a failure reply stored while reserve still waits resumes
    nothing before reserve's deadline; then the group fails, reserve (outcome unknown) is
    compensated, and its forward reply, arriving after that, is refused as late."""
    saga, clock = build("cancel"), ManualClock()
    _, runtime, wire = _setup(saga, clock)
    await _parked(runtime, saga, {"order_id": "o3", "amount": 500}, "g-3")
    sent = _by_step(wire.take())
    assert await wire.answer(sent["charge"]) == "received"
    await wire.settle()
    assert not runtime.runs
    clock.advance(6)  # reserve's reply deadline passes: recovery claims the saga
    assert await runtime.recover() == 1
    await wire.settle()
    undo = _by_step(wire.take())
    assert set(undo) == {"reserve"}  # the timed-out member is undone: its effect may exist
    assert await wire.answer(undo["reserve"]) == "received"
    final = await runtime.wait("g-3", 5)
    assert final.status is SagaStatus.COMPENSATED, final.error
    assert await wire.answer(sent["reserve"]) == "late"  # the forward reply, too late


async def test_a_member_timing_out_is_retried_while_the_other_keeps_waiting() -> None:
    """reserve's deadline passes first: the saga resumes, sends reserve again (attempt 2)
    and parks again with charge's wait untouched; charge's reply then resumes nothing
    until the new reserve reply is in; the first reserve reply is late."""
    saga, clock = build(reserve_retries=1, charge_timeout=60), ManualClock()
    store, runtime, wire = _setup(saga, clock)
    await _parked(runtime, saga, {"order_id": "o5"}, "g-5")
    first = _by_step(wire.take())
    clock.advance(6)
    assert await runtime.recover() == 1
    await wire.settle()
    again = _by_step(wire.take())
    assert set(again) == {"reserve"} and again["reserve"].headers[h.SAGA_ATTEMPT] == "2"
    parked = await store.get("g-5")
    assert parked is not None and set(parked.waits) == {"reserve", "charge"}
    charge_wait = Waiting.decode(parked.waits["charge"])
    assert (
        charge_wait is not None and charge_wait.token == first["charge"].headers[h.SAGA_REPLY_TOKEN]
    )
    assert await wire.answer(first["charge"]) == "received"
    await wire.settle()
    assert not runtime.runs and (await store.get("g-5")).status is SagaStatus.RUNNING  # type: ignore[union-attr]
    assert await wire.answer(first["reserve"]) == "late"  # attempt 1: no longer awaited
    assert await wire.answer(again["reserve"]) == "received"
    final = await runtime.wait("g-5", 5)
    assert final.status is SagaStatus.COMPLETED, final.error
    assert final.steps["reserve"].attempts == 2 and final.steps["charge"].attempts == 1


async def test_duplicate_and_late_replies_are_fenced() -> None:
    """A member's reply delivered twice is stored once (the copy is late); a reply to an
    attempt the saga no longer waits for changes nothing."""
    saga, clock = build(), ManualClock()
    store, runtime, wire = _setup(saga, clock)
    await _parked(runtime, saga, {"order_id": "o4"}, "g-4")
    sent = _by_step(wire.take())
    assert await wire.answer(sent["reserve"]) == "received"
    before = await store.get("g-4")
    assert await wire.again("reserve") == "late"
    after = await store.get("g-4")
    assert after is not None and before is not None
    assert after.replies == before.replies and after.lease_until == before.lease_until
    assert await wire.answer(sent["charge"]) == "received"
    final = await runtime.wait("g-4", 5)
    assert final.status is SagaStatus.COMPLETED, final.error
    assert await wire.again("charge") == "late"
    assert await wire.again("reserve") == "late"
    assert (await store.get("g-4")).updated_at == final.updated_at  # type: ignore[union-attr]


async def test_matrix_of_a_group_with_command_members_converges_with_each_effect_once() -> None:
    """Every crash point (before/after each member's command is written, after a reply
    claimed the saga) ends COMPLETED or COMPENSATED, each effect applied once."""
    report = await crash_matrix(build(), {"order_id": "m-1"}, participants=PARTICIPANTS)
    points = {case.crash_point for case in report.cases}
    assert {"after forward reserve", "after forward charge", "reply forward charge"} <= points
    assert {case.status for case in report.cases} == {SagaStatus.COMPLETED, SagaStatus.COMPENSATED}


async def test_matrix_with_a_refused_member_compensates_at_every_point() -> None:
    """A failure reply of one member compensates the others at every crash point."""
    for policy in ("cancel", "finish"):
        report = await crash_matrix(
            build(policy),  # type: ignore[arg-type]
            {"order_id": f"m-{policy}", "amount": 500},
            participants=PARTICIPANTS,
            fail_steps=False,
        )
        assert report.cases
        assert {case.status for case in report.cases} == {SagaStatus.COMPENSATED}


async def test_operator_api_shows_which_members_are_still_awaited() -> None:
    """GET /<saga_id> of the operator API lists the replies the saga still waits for, by
    member (attempt, when sent, when due; no reply token), and the members whose reply is
    stored but not yet applied."""
    saga, clock = build(), ManualClock()
    _store, runtime, wire = _setup(saga, clock)
    await _parked(runtime, saga, {"order_id": "o9"}, "g-ops")
    sent = _by_step(wire.take())
    app = Starlette(routes=operator_routes(runtime, "/ops"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        before = (await client.get("/ops/g-ops")).json()
        assert await wire.answer(sent["reserve"]) == "received"
        await wire.settle()
        after = (await client.get("/ops/g-ops")).json()
    now = clock()
    due = {"direction": "forward", "attempt": 1, "sent_at": now}
    assert before["waits"] == {
        "reserve": due | {"reply_due": now + 5},
        "charge": due | {"reply_due": now + 5},
    }
    assert before["replies"] == []
    assert after["waits"] == {"charge": due | {"reply_due": now + 5}}
    assert after["replies"] == ["reserve"]
    assert "token" not in str(after["waits"])
