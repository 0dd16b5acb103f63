"""Durable sagas: steps with compensations, persisted transitions, recovery across replicas.

Define a saga on a service (``svc.saga(name, input=Model)``) or standalone
(``Saga``, then ``svc.add_saga``); run instances with ``svc.sagas.start``.
"""

from __future__ import annotations

from nativekit.saga._define.child_steps import ChildStep
from nativekit.saga._define.command_steps import CommandStep
from nativekit.saga._define.definition import Saga
from nativekit.saga._define.group import ParallelGroup
from nativekit.saga._define.policy import Backoff, Policy
from nativekit.saga._define.step import Direction, SagaContext, Step, idempotency_key
from nativekit.saga._errors import (
    ChildSagaFailed,
    CommandFailed,
    CommandTimeout,
    DeadlinePassed,
    EventTimeout,
    LeaseLost,
    SagaInputError,
    SagaNotFound,
    SagaStateError,
    StepTimeout,
)
from nativekit.saga._run.commands import outbox_publish
from nativekit.saga._run.runtime import SagaHandle, SagaRuntime
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus, StepRecord, StepStatus
from nativekit.saga._store.store import SagaStore

__all__ = [
    "Backoff",
    "ChildSagaFailed",
    "ChildStep",
    "CommandFailed",
    "CommandStep",
    "CommandTimeout",
    "DeadlinePassed",
    "Direction",
    "EventTimeout",
    "idempotency_key",
    "LeaseLost",
    "MemorySagaStore",
    "outbox_publish",
    "Page",
    "ParallelGroup",
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
