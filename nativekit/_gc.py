"""The garbage collector's young-generation threshold while services run.

CPython runs its cyclic collector after every 700 net allocations of container
objects. Handling a message or a request allocates dozens of them (records,
headers, models, coroutines), so at tens of thousands of messages a second the
collector runs thousands of times a second, and each of its middle and old
generation passes walks every in-flight object, and each full pass everything
startup made (modules, models, routes: tens of milliseconds). A larger young
generation cuts the number of passes, and freezing what exists once the
service started takes it out of every later pass; cyclic garbage waits a
little longer, and only cyclic garbage: reference counting frees everything
else at once.
"""

from __future__ import annotations

import gc

_holders = 0
_saved: tuple[int, int, int] | None = None


def raise_threshold(threshold: int) -> bool:
    """Raise the young-generation threshold to ``threshold`` and freeze the objects
    that exist now (after a collection) out of later passes, until :func:`restore`.

    Nested calls (several services in one process) share the first setting; the
    last :func:`restore` puts the interpreter's previous thresholds back. Returns
    False, changing nothing, for ``threshold`` 0 or when the collector is disabled.
    """
    global _holders, _saved
    if threshold <= 0 or not gc.isenabled():
        return False
    if _holders == 0:
        _saved = gc.get_threshold()
        gc.collect()  # so that no garbage is frozen with the rest
        gc.freeze()
        young, middle, old = _saved
        gc.set_threshold(max(young, threshold), middle, old)
    _holders += 1
    return True


def restore() -> None:
    """Undo one :func:`raise_threshold` that returned True."""
    global _holders, _saved
    if _holders == 0:
        return
    _holders -= 1
    if _holders == 0 and _saved is not None:
        gc.unfreeze()
        gc.set_threshold(*_saved)
        _saved = None
