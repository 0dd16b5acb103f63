"""The code of docs/sagas-across-services.md runs as documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nativekit.saga import SagaStatus

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "sagas_across_services.py"


async def test_docs_example_reserves_one_order_and_rejects_the_other() -> None:
    """The order that fits completes; the rejected one compensates; the event is published."""
    spec = importlib.util.spec_from_file_location("docs_sagas_across_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert await module.main() == (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
    assert module.stock == {"mug": 1}
    assert module.reservations == {"1": 2}
    from nativekit.testing import memory_broker

    events = memory_broker().records("orders.events")
    assert [r.value for r in events if b'"order_id":"1"' in (r.value or b"")] == [
        b'{"order_id":"1","reservation_id":"r-1"}'
    ]


PARALLEL = Path(__file__).parents[2] / "docs" / "examples" / "saga_parallel_commands.py"


async def test_docs_parallel_commands_example_completes_and_compensates() -> None:
    """docs/saga-model.md, "Command steps in a group": both commands go out at once; the
    declined card compensates the reserved stock with its command."""
    spec = importlib.util.spec_from_file_location("docs_parallel_commands_example", PARALLEL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert await module.main() == (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
    assert module.reserved == {"1"} and module.charged == {"1"}  # order 2's reserve undone
