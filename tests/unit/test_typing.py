"""Types that carry through: mypy checks saga steps against the saga's input type."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mypy import api

HEADER = """
from typing import Any, assert_type

from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext, Step


class PlaceOrder(BaseModel):
    order_id: str


class Refund(BaseModel):
    payment_id: str


svc = nativekit.Service("orders")
place_order = svc.saga("place-order", input=PlaceOrder)
"""

GOOD = """
assert_type(place_order, Saga[PlaceOrder])
assert_type(svc.saga("free-form"), Saga[Any])
assert_type(Saga("standalone", input=PlaceOrder), Saga[PlaceOrder])


@place_order.step(retries=3)
async def reserve(ctx: SagaContext[PlaceOrder]) -> int:
    return len(ctx.data.order_id)


assert_type(reserve, Step[[SagaContext[PlaceOrder]], int])


@reserve.compensate
async def release(ctx: SagaContext[PlaceOrder]) -> None:
    assert_type(ctx.data, PlaceOrder)
    assert_type(ctx.forward_key, str)


@place_order.command_step(topic="payments.commands")
async def refund(ctx: SagaContext[PlaceOrder]) -> Refund:
    return Refund(payment_id=ctx.data.order_id)
"""

BAD = """
@place_order.step()  # E
async def wrong_step(ctx: SagaContext[Refund]) -> None: ...


@place_order.step()
async def right_step(ctx: SagaContext[PlaceOrder]) -> None: ...


@right_step.compensate  # E
async def wrong_compensation(ctx: SagaContext[Refund]) -> None: ...


@place_order.command_step(topic="payments.commands")  # E
async def wrong_command(ctx: SagaContext[Refund]) -> Refund:
    return Refund(payment_id="p")
"""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run mypy --strict once over both snippets; errors by snippet name."""
    root = tmp_path_factory.mktemp("typing")
    for name, body in (("good", GOOD), ("bad", BAD)):
        (root / f"{name}.py").write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    out, err, _ = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            f"--cache-dir={root / '.mypy_cache'}",
            str(root / "good.py"),
            str(root / "bad.py"),
        ]
    )
    assert not err, err
    errors: dict[str, list[str]] = {"good": [], "bad": []}
    for line in out.splitlines():
        errors[Path(line.split(":", 1)[0]).stem].append(line)
    return errors


def test_steps_that_match_the_saga_input_type_check(mypy_errors: dict[str, list[str]]) -> None:
    """svc.saga(name, input=Model) is a Saga[Model] whose matching steps pass mypy --strict."""
    assert mypy_errors["good"] == []


def test_a_step_taking_another_input_is_a_mypy_error(mypy_errors: dict[str, list[str]]) -> None:
    """A step, compensation or command step taking SagaContext[Other] is a mypy error."""
    lines = sorted(
        int(m.group(1))
        for e in mypy_errors["bad"]
        if (m := re.search(r":(\d+): error: .*SagaContext\[Refund\].*\[arg-type\]", e))
    )
    source = (textwrap.dedent(HEADER) + textwrap.dedent(BAD)).splitlines()
    expected = [n for n, text in enumerate(source, start=1) if text.endswith("# E")]
    assert len(expected) == 3
    assert lines == expected
    assert len(mypy_errors["bad"]) == 3, mypy_errors["bad"]
