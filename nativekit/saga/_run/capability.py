"""The saga capability of a service: the runtime, its command/reply support, their phases."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from nativekit._lifecycle import Phase
from nativekit.saga._commands.replies import SagaCommands
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._run.telemetry import SagaMetrics

if TYPE_CHECKING:
    from nativekit._context import ServiceContext
    from nativekit._transaction import TransactionFactory
    from nativekit.messaging._messaging import Messaging
    from nativekit.saga._store.store import SagaStore


def build_sagas(
    ctx: ServiceContext,
    store: Callable[[], SagaStore],
    messaging: Messaging,
    transactions: Callable[[], TransactionFactory | None] | None = None,
) -> tuple[SagaRuntime, SagaCommands]:
    """The saga runtime of a service (recovery in the SAGAS phase) and its command support
    (relay and reply consumer in the RELAY phase), with their readiness checks."""
    settings = ctx.settings
    runtime = SagaRuntime(
        ctx.name,
        store,
        lease=settings.saga.lease_seconds,
        retention=settings.saga.retention_seconds,
        recovery_interval=settings.saga.recovery_interval_seconds,
        backlog_warn=settings.saga.backlog_warn,
        max_interruptions=settings.saga.max_interruptions,
        metrics=SagaMetrics(ctx.metrics.registry, ctx.name),
        tracing=settings.telemetry.tracing_enabled,
        supervisor=messaging.supervisor,
        transactions=transactions,
    )
    ctx.lifecycle.add(
        "sagas",
        start=runtime.startup,
        stop=partial(runtime.shutdown, settings.http.shutdown_grace_seconds),
        phase=Phase.SAGAS,
    )
    ctx.health.add(
        "sagas:recovery", runtime.readiness, critical=False, active=lambda: runtime.in_use
    )
    commands = SagaCommands(ctx, runtime, messaging)
    ctx.lifecycle.add("saga-commands", start=commands.start, stop=commands.stop, phase=Phase.RELAY)
    return runtime, commands
