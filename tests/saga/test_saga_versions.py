"""Versions of a saga definition: instances keep the version they started with, new ones
run the highest registered, and the definition guard names the versions it sees."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pydantic import BaseModel

import nativekit
from nativekit.errors import ConfigError
from nativekit.saga import Saga, SagaContext, SagaStatus

pytestmark = pytest.mark.redis


class Order(BaseModel):
    """Input."""

    order_id: str


def v1(ran: list[str]) -> Saga[Order]:
    """Version 1: reserve, then wait for 'go', then charge."""
    saga: Saga[Order] = Saga("versioned", input=Order, version=1)

    @saga.step(readonly=True)
    async def reserve(ctx: SagaContext[Order]) -> None:
        ran.append(f"v1 reserve {ctx.saga_id}")

    @saga.step(readonly=True)
    async def charge(ctx: SagaContext[Order]) -> None:
        await ctx.wait_for("go", timeout=60)
        ran.append(f"v1 charge {ctx.saga_id}")

    return saga


def v2(ran: list[str]) -> Saga[Order]:
    """Version 2: a fraud check added between reserve and charge."""
    saga: Saga[Order] = Saga("versioned", input=Order, version=2)
    for name in ("reserve", "check", "charge"):

        async def step(ctx: SagaContext[Order], name: str = name) -> None:
            ran.append(f"v2 {name} {ctx.saga_id}")

        saga.step(name=name, readonly=True)(step)
    return saga


def test_versions_are_part_of_the_hash_and_two_equal_versions_are_refused() -> None:
    """The hash carries the version; the highest registered is current; equal is an error."""
    ran: list[str] = []
    old, new = v1(ran), v2(ran)
    assert old.definition_hash.startswith("v1-") and new.definition_hash.startswith("v2-")
    svc = nativekit.Service("versions")
    svc.add_saga(new)
    svc.add_saga(old)  # an older version: kept for its instances, not current
    assert svc.sagas.resolve("versioned") is new and svc.sagas.legacy == [old]
    with pytest.raises(ConfigError, match=r"registered twice \(version 2 .* and version 2"):
        svc.add_saga(v2(ran))
    with pytest.raises(ConfigError, match="version of saga 'x' must be an integer >= 1"):
        Saga("x", version=0)


async def test_an_instance_keeps_its_version_across_a_deploy_and_the_guard_names_versions(
    make_service: Callable[..., nativekit.Service],
) -> None:
    """A v1 instance parked before a deploy finishes on v1 code after it, while new ones run
    v2; a deploy without v1 is refused naming version 1 and the registered version 2."""
    ran: list[str] = []
    before = make_service()
    before.add_saga(v1(ran))
    await before.startup(hook_sigterm=False)
    try:
        await before.sagas.start("versioned", {"order_id": "a"}, saga_id="old")
        for _ in range(200):  # parked on 'go' (no task held) before the deploy
            if (await before.sagas.get("old")).awaiting:
                break
            await asyncio.sleep(0.02)
        assert (await before.sagas.get("old")).awaiting == ["go"]
    finally:
        await before.shutdown()
    lacking = make_service()
    lacking.add_saga(v2(ran))
    refused = r"1 instance\(s\) .*\(version 1 \(v1-[0-9a-f]+\): 1; registered: version 2"
    with pytest.raises(ConfigError, match=refused):
        await lacking.startup(hook_sigterm=False)
    after = make_service()
    after.add_saga(v2(ran))
    after.add_saga(v1(ran))
    await after.startup(hook_sigterm=False)
    try:
        new = await after.sagas.start("versioned", {"order_id": "b"}, saga_id="new")
        assert (await new.wait(5)).status is SagaStatus.COMPLETED
        assert await after.sagas.signal("old", "go", True)
        assert (await after.sagas.wait("old", 5)).status is SagaStatus.COMPLETED
    finally:
        await after.shutdown()
    assert ran == [
        "v1 reserve old",
        "v2 reserve new",
        "v2 check new",
        "v2 charge new",
        "v1 charge old",
    ]
