"""The sagas a runtime knows: current definitions, legacy ones kept for old instances."""

from __future__ import annotations

from typing import Any

from nativekit.errors import ConfigError
from nativekit.saga._define.definition import Saga
from nativekit.saga._errors import SagaStateError
from nativekit.saga._store.model import SagaRecord
from nativekit.saga._store.store import SagaStore, definition_key


class SagaRegistry:
    """Saga definitions by name, and the ``name:hash`` of every version a replica can run."""

    def __init__(self) -> None:
        self.sagas: dict[str, Saga[Any]] = {}
        self._legacy: list[Saga[Any]] = []

    def declare(self, saga: Saga[Any], *, legacy: bool = False) -> None:
        """Register ``saga`` (its steps may still be added); ``legacy=True`` keeps an old
        definition only to finish the instances started with it."""
        if legacy:
            if saga not in self._legacy:
                self._legacy.append(saga)
            return
        current = self.sagas.get(saga.name)
        if current is not None and current is not saga:
            if current.version is None or saga.version is None or current.version == saga.version:
                raise ConfigError(
                    f"Saga {saga.name!r} is registered twice ({version_label(current)} and "
                    f"{version_label(saga)}); give each definition its own version "
                    "(Saga(name, version=2)), or register an older one kept for in-flight "
                    "instances with legacy=True."
                )
            older, saga = sorted((current, saga), key=lambda s: s.version or 0)
            if older not in self._legacy:
                self._legacy.append(older)  # keeps running the instances started with it
        self.sagas[saga.name] = saga

    @property
    def legacy(self) -> list[Saga[Any]]:
        """Old definitions kept only to finish the instances started with them."""
        return list(self._legacy)

    @property
    def definitions(self) -> dict[str, Saga[Any]]:
        """Every registered definition (current and legacy) by ``name:hash``."""
        found = {definition_key(s.name, s.definition_hash): s for s in self._legacy}
        found.update({definition_key(s.name, s.definition_hash): s for s in self.sagas.values()})
        return found

    def _check_steps(self) -> None:
        for saga in [*self.sagas.values(), *self._legacy]:
            if not saga.steps:
                raise ConfigError(f"Saga {saga.name!r} has no steps; add one with @saga.step().")

    def resolve(self, saga: Saga[Any] | str) -> Saga[Any]:
        """The registered current definition for ``saga`` (an object or a name)."""
        name = saga if isinstance(saga, str) else saga.name
        found = self.sagas.get(name)
        if found is None:
            if isinstance(saga, Saga):
                self.declare(saga)
                return saga
            raise ConfigError(f"No saga named {name!r} is registered; known: {sorted(self.sagas)}.")
        return found

    def definition_of(self, record: SagaRecord) -> Saga[Any]:
        """The registered definition an instance was started with."""
        saga = self.definitions.get(definition_key(record.name, record.definition))
        if saga is None:
            raise SagaStateError(
                f"saga {record.saga_id!r} was started with definition {record.definition} of "
                f"{record.name!r}, which this service does not register"
            )
        return saga

    async def check_definitions(self, store: SagaStore) -> None:
        """Refuse to start when live instances use a definition this service lacks."""
        for name in self.sagas:
            live = await store.live_definitions(name)
            known = {k.rpartition(":")[2] for k in self.definitions if k.startswith(f"{name}:")}
            stale = {h: n for h, n in live.items() if h not in known}
            if stale:
                count = sum(stale.values())
                seen = ", ".join(f"{describe(h)}: {n}" for h, n in sorted(stale.items()))
                registered = ", ".join(describe(h) for h in sorted(known))
                raise ConfigError(
                    f"Saga {name!r} changed while {count} instance(s) of definitions this "
                    f"service does not register are still running ({seen}; registered: "
                    f"{registered}). Keep the previous definition in code under its version "
                    "(Saga(name, version=N), registered with svc.add_saga) until they "
                    "finish, or abort or compensate them through the operator API of a "
                    "replica that has it."
                )


def version_label(saga: Saga[Any]) -> str:
    """``version 2 (v2-ab12…)`` or ``unversioned (ab12…)`` for messages."""
    return describe(saga.definition_hash)


def describe(definition: str) -> str:
    """A definition hash as operators read it: its version, if it has one, and the hash."""
    version, dash, _ = definition.partition("-")
    if dash and version.startswith("v") and version[1:].isdigit():
        return f"version {version[1:]} ({definition})"
    return f"unversioned ({definition})"
