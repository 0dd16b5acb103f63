"""Garbage-collector tuning is an opt-in: tune_gc changes the collector, a Service never does."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import nativekit
from nativekit import Service, Settings


@pytest.fixture(autouse=True)
def interpreter_default() -> Iterator[None]:
    """Each test starts from CPython's default thresholds, untuned, and leaves none behind."""
    before = gc.get_threshold()
    nativekit.restore_gc()
    gc.set_threshold(700, 10, 10)
    yield
    nativekit.restore_gc()
    gc.set_threshold(*before)


async def test_a_service_leaves_the_collector_alone() -> None:
    """Starting and stopping a service changes neither the thresholds nor the frozen objects."""
    svc = Service("gc-untouched", settings=Settings(_env_file=None))
    await svc.startup(hook_sigterm=False)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
    await svc.shutdown()
    assert gc.get_threshold() == (700, 10, 10)


def test_tune_raises_the_threshold_and_freezes_then_restore_undoes_it() -> None:
    """tune_gc sets 10,000 and freezes what exists; restore_gc puts the interpreter's back."""
    assert nativekit.tune_gc() is True
    assert gc.get_threshold() == (10_000, 10, 10)
    assert gc.get_freeze_count() > 1000  # modules, classes, this test's objects
    nativekit.restore_gc()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_calling_again_freezes_the_newer_objects_and_restores_the_first_thresholds() -> None:
    """A second call freezes objects made since; restore goes back to before the first."""
    nativekit.tune_gc()
    made_since = [[i] for i in range(1000)]
    assert all(id(x) in _collected_ids() for x in made_since)
    nativekit.tune_gc(20_000)
    # each new object left the collected generations for the frozen one (the frozen count
    # itself can fall meanwhile: an object frozen by the first call may be freed)
    collected = _collected_ids()
    assert all(gc.is_tracked(x) and id(x) not in collected for x in made_since)
    assert gc.get_threshold() == (20_000, 10, 10)
    nativekit.restore_gc()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def _collected_ids() -> set[int]:
    """Ids of the objects in the collector's three generations (frozen ones are in none)."""
    return {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}


def test_zero_leaves_the_interpreter_alone() -> None:
    """tune_gc(0) changes nothing and says so."""
    assert nativekit.tune_gc(0) is False
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_never_lowers_a_larger_threshold_and_ignores_a_disabled_collector() -> None:
    """A larger threshold set by the application stays; a disabled collector stays untouched."""
    gc.set_threshold(50_000, 10, 10)
    assert nativekit.tune_gc() is True
    assert gc.get_threshold() == (50_000, 10, 10)
    nativekit.restore_gc()
    gc.disable()
    try:
        assert nativekit.tune_gc() is False
        assert gc.get_threshold() == (50_000, 10, 10)
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()
