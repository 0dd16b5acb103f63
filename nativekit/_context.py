"""What a capability receives from its service: the composition root's narrow context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nativekit._health import Health
from nativekit._lifecycle import Lifecycle
from nativekit._telemetry.logging import get_logger
from nativekit._telemetry.metrics import Metrics
from nativekit.settings import Settings


@dataclass(frozen=True, eq=False)
class ServiceContext:
    """Settings, metrics, health and lifecycle of one service, shared by its capabilities.

    A capability (messaging, sagas, cache, command handlers) is built with this
    context and its backend factories; it never sees nor writes into the
    ``Service``. It registers its start and stop in a declared
    :class:`~nativekit._lifecycle.Phase` and its readiness checks in ``health``.
    """

    name: str
    settings: Settings
    metrics: Metrics
    health: Health
    lifecycle: Lifecycle
    log: Any = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", get_logger(service=self.name))

    @property
    def running(self) -> bool:
        """True between a finished startup and the next shutdown."""
        return self.health.started
