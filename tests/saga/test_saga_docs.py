"""The code of docs/sagas.md runs as documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nativekit.saga import SagaStatus

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "sagas.py"
CRASHES = EXAMPLE.with_name("saga_crashes.py")


async def test_docs_example_completes_one_order_and_compensates_the_declined_one() -> None:
    """The example saga completes a good order and rolls back a declined card."""
    spec = importlib.util.spec_from_file_location("docs_sagas_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert await module.main() == (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
    assert module.reserved == {"1"}
    assert list(module.payments.charges.values()) == [990]


async def test_docs_crash_example_completes_at_every_crash_point() -> None:
    """The crash example's saga (default options, a pivot last) completes wherever it crashed."""
    spec = importlib.util.spec_from_file_location("docs_saga_crashes", CRASHES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = await module.main()
    assert len(report.cases) >= 6  # before and after each of the three steps
    assert {case.status for case in report.cases} == {SagaStatus.COMPLETED}
    assert any("confirm" in case.crash_point for case in report.cases)


async def test_docs_saga_model_example_runs_as_documented() -> None:
    """Parallel hold, fraud review by event, durable pause: small and approved orders
    complete, the refused one is compensated (its stock and payment released)."""
    spec = importlib.util.spec_from_file_location(
        "docs_saga_model", EXAMPLE.with_name("saga_model.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert await module.main() == (
        SagaStatus.COMPLETED,
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
    )
    assert sorted(module.held) == [
        "order-1:authorize_payment:forward",
        "order-1:reserve_stock:forward",
        "order-2:authorize_payment:forward",
        "order-2:reserve_stock:forward",
    ]


async def test_docs_child_saga_example_runs_as_documented() -> None:
    """The first order completes; the second's completed payment child is compensated."""
    spec = importlib.util.spec_from_file_location(
        "docs_saga_children", EXAMPLE.with_name("saga_children.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert await module.main() == (
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATED,
    )
    assert module.ledger == {"o-1:payment:authorize:forward": 990}
