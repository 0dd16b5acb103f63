"""Durable sagas: steps with compensations, persisted transitions, recovery across replicas.

Define a saga on a service (``svc.saga(name, input=Model)``) or standalone
(``Saga``, then ``svc.add_saga``); run instances with ``svc.sagas.start``.
"""

from __future__ import annotations

from nativekit.saga._define.command_steps import (
    CommandFailed,
    CommandStep,
    CommandTimeout,
    outbox_publish,
)
from nativekit.saga._define.definition import Direction, Saga, SagaContext, Step, idempotency_key
from nativekit.saga._define.policy import Backoff, Policy
from nativekit.saga._errors import LeaseLost, SagaInputError, SagaNotFound, SagaStateError
from nativekit.saga._run.runner import StepTimeout
from nativekit.saga._run.runtime import SagaHandle, SagaRuntime
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus, StepRecord, StepStatus
from nativekit.saga._store.store import MemorySagaStore, SagaStore

__all__ = [
    "Backoff",
    "CommandFailed",
    "CommandStep",
    "CommandTimeout",
    "Direction",
    "idempotency_key",
    "LeaseLost",
    "MemorySagaStore",
    "outbox_publish",
    "Page",
    "Policy",
    "Saga",
    "SagaContext",
    "SagaHandle",
    "SagaInputError",
    "SagaNotFound",
    "SagaRecord",
    "SagaRuntime",
    "SagaStateError",
    "SagaStatus",
    "SagaStore",
    "Step",
    "StepRecord",
    "StepStatus",
    "StepTimeout",
]
