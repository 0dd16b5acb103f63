"""Wiring of the saga runtime into a :class:`nativekit.Service`."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from nativekit.saga.runtime import SagaRuntime
from nativekit.saga.store import MemorySagaStore, SagaStore
from nativekit.saga.telemetry import SagaMetrics
from nativekit.supervisor import Supervisor

if TYPE_CHECKING:
    from nativekit.service import Service


def attach_runtime(svc: Service) -> SagaRuntime:
    """Create ``svc.sagas``: store by URL, lifecycle, readiness check, operator routes."""
    settings = svc.settings

    def store() -> SagaStore:
        if svc.uses_redis:
            from nativekit.saga.redis_store import RedisSagaStore

            return RedisSagaStore(
                svc.redis,
                prefix=settings.saga_key_prefix or f"nk:saga:{svc.name}",
                shards=settings.saga_shards,
            )
        return MemorySagaStore()

    runtime = SagaRuntime(
        svc.name,
        store,
        lease=settings.saga_lease_seconds,
        retention=settings.saga_retention_seconds,
        recovery_interval=settings.saga_recovery_interval,
        backlog_warn=settings.saga_backlog_warn,
        metrics=SagaMetrics(svc.metrics.registry, svc.name),
        tracing=settings.tracing_enabled,
        supervisor=Supervisor(svc.name, svc.metrics.registry),
    )
    svc.lifecycle.add(
        "sagas", start=runtime.startup, stop=partial(runtime.shutdown, settings.shutdown_grace)
    )
    svc.health.add("sagas:recovery", runtime.readiness, critical=False)
    # -- saga commands -- (command/reply steps, reply consumer, outbox relay)
    from nativekit.saga.replies import attach_commands

    attach_commands(svc, runtime)
    if settings.saga_operator_api:
        from nativekit.saga.operator import add_operator_routes

        add_operator_routes(svc, runtime, settings.saga_operator_prefix)
    return runtime
