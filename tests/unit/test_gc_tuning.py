"""After startup a service tunes the garbage collector once per process."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from nativekit import Service, Settings, lifecycle
from nativekit.testing import serve


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Put the collector and the once-per-process flag back as they were."""
    thresholds = gc.get_threshold()
    tuned = lifecycle._gc_tuned
    lifecycle._gc_tuned = False
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    lifecycle._gc_tuned = tuned


@pytest.mark.usefixtures("restored_gc")
async def test_startup_freezes_what_it_made_and_raises_the_young_threshold() -> None:
    """The first started service freezes startup's objects and sets the gen-0 threshold."""
    _, middle, oldest = gc.get_threshold()
    svc = Service("gc-tuned", settings=Settings(_env_file=None, gc_threshold=5000))
    async with serve(svc) as client:
        assert (await client.get("/livez")).status_code == 200
        assert gc.get_threshold() == (5000, middle, oldest)
        assert gc.get_freeze_count() > 0
    other = Service("gc-second", settings=Settings(_env_file=None, gc_threshold=9000))
    async with serve(other):
        assert gc.get_threshold() == (5000, middle, oldest)  # once per process


@pytest.mark.usefixtures("restored_gc")
async def test_zero_leaves_the_collector_alone() -> None:
    """NATIVEKIT_GC_THRESHOLD=0: thresholds unchanged and nothing frozen."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    svc = Service("gc-untouched", settings=Settings(_env_file=None, gc_threshold=0))
    async with serve(svc):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == frozen
