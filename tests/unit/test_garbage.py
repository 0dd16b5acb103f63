"""The collector's young-generation threshold follows the services running in the process."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from nativekit import Service, Settings


@pytest.fixture(autouse=True)
def interpreter_default() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def service(name: str, threshold: int = 10_000) -> Service:
    return Service(name, settings=Settings(_env_file=None, gc_young_threshold=threshold))


def test_the_default_is_ten_thousand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATIVEKIT_GC_YOUNG_THRESHOLD")  # the suite's conftest turns it off
    assert Settings(_env_file=None).gc_young_threshold == 10_000


async def test_raised_and_startup_frozen_while_running_then_restored() -> None:
    svc = service("gc-one")
    await svc.startup(hook_sigterm=False)
    assert gc.get_threshold() == (10_000, 10, 10)
    assert gc.get_freeze_count() > 1000  # modules, classes, the service itself
    await svc.shutdown()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


async def test_several_services_restore_when_the_last_one_stops() -> None:
    first, second = service("gc-a"), service("gc-b", 20_000)
    assert gc.get_freeze_count() == 0
    await first.startup(hook_sigterm=False)
    await second.startup(hook_sigterm=False)
    assert gc.get_threshold() == (10_000, 10, 10)  # the first setting holds
    await first.shutdown()
    assert gc.get_threshold() == (10_000, 10, 10)
    await second.shutdown()
    assert gc.get_threshold() == (700, 10, 10)


async def test_zero_leaves_the_interpreter_alone() -> None:
    svc = service("gc-off", 0)
    await svc.startup(hook_sigterm=False)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
    await svc.shutdown()
    assert gc.get_threshold() == (700, 10, 10)


async def test_never_lowers_a_larger_threshold_and_ignores_a_disabled_collector() -> None:
    gc.set_threshold(50_000, 10, 10)
    svc = service("gc-big")
    await svc.startup(hook_sigterm=False)
    assert gc.get_threshold() == (50_000, 10, 10)
    await svc.shutdown()
    gc.disable()
    try:
        await svc.startup(hook_sigterm=False)
        assert gc.get_threshold() == (50_000, 10, 10)
        await svc.shutdown()
    finally:
        gc.enable()
    assert gc.get_threshold() == (50_000, 10, 10)
