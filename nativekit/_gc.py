"""Garbage-collector tuning for services under load: an opt-in, :func:`tune_gc`.

CPython runs its cyclic collector after every 700 net allocations of container
objects. Handling a message or a request allocates dozens of them (records,
headers, models, coroutines), so at tens of thousands of messages a second the
collector runs thousands of times a second, and each of its middle and old
generation passes walks every in-flight object, and each full pass everything
startup made (modules, models, routes: tens of milliseconds). A larger young
generation cuts the number of passes, and freezing what exists once the
application is built takes it out of every later pass; cyclic garbage waits a
little longer, and only cyclic garbage: reference counting frees everything
else at once.

The collector belongs to the process, not to a library: nativekit changes it
only when the application asks.
"""

from __future__ import annotations

import gc

#: the young-generation threshold :func:`tune_gc` sets unless told otherwise
DEFAULT_YOUNG_THRESHOLD = 10_000

_saved: tuple[int, int, int] | None = None


def tune_gc(young_threshold: int = DEFAULT_YOUNG_THRESHOLD) -> bool:
    """Tune the garbage collector of this process for a service under load.

    Raises the young-generation threshold to ``young_threshold`` (never lowers
    it) and, after one collection, freezes every object that exists now out of
    later passes (``gc.freeze``). Call it once the application is built, at the
    end of the module your server imports::

        app = svc.app
        nativekit.tune_gc()

    Calling it again freezes what was created since. :func:`restore_gc` undoes
    it. Returns False, changing nothing, for ``young_threshold`` 0 or when the
    collector is disabled.
    """
    global _saved
    if young_threshold <= 0 or not gc.isenabled():
        return False
    if _saved is None:
        _saved = gc.get_threshold()
    gc.collect()  # so that no garbage is frozen with the rest
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, young_threshold), middle, old)
    return True


def restore_gc() -> None:
    """Undo :func:`tune_gc`: unfreeze and put the thresholds before it back."""
    global _saved
    if _saved is None:
        return
    gc.unfreeze()
    gc.set_threshold(*_saved)
    _saved = None
