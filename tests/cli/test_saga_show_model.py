"""`nativekit sagas show` prints a saga's deadline, its parent and children, and what a
parked saga waits for."""

from __future__ import annotations

from nativekit.cli._sagas import describe
from nativekit.saga import SagaRecord, SagaStatus, StepRecord, StepStatus


def test_show_names_the_links_both_ways_and_the_wait() -> None:
    """Parent, children, deadline, awaited and delivered events, a waiting step."""
    parent = SagaRecord(
        saga_id="o-1",
        name="place-order",
        definition="v2-abc",
        status=SagaStatus.RUNNING,
        input="{}",
        created_at=1.0,
        updated_at=1.0,
        deadline=1_800_000_000.0,
        awaiting=["fraud-review"],
        events={"other": "1"},
        children={"o-1:payment": "payment"},
        steps={"review": StepRecord(status=StepStatus.RUNNING, attempts=1, waiting=True)},
    )
    text = describe(parent)
    assert "Child:       o-1:payment (step payment)" in text
    assert "Awaiting:    fraud-review" in text and "Events:      other" in text
    assert "Deadline:" in text and "running (waiting)" in text
    child = SagaRecord(
        saga_id="o-1:payment",
        name="take-payment",
        definition="d",
        status=SagaStatus.COMPLETED,
        input="{}",
        created_at=1.0,
        updated_at=1.0,
        parent="o-1",
    )
    assert "Parent:      o-1" in describe(child)
