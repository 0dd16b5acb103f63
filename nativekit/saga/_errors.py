"""Exceptions of the saga component (all under :class:`nativekit.NativekitError`).

::

    NativekitError
    ├── SagaInputError (ValueError)     input does not validate; nothing was stored
    ├── SagaNotFound (KeyError)         no saga instance with that id
    ├── SagaStateError                  the operation does not fit the saga's status
    ├── LeaseLost                       another runner owns the saga now (fenced write)
    ├── BackendUnavailable
    │   └── SagaStoreUnavailable        a transition could not be written: the run stops
    ├── UnknownSaga                     a reply for a saga (or definition) not kept here
    ├── CommandFailed (Exception)       the participant refused a command
    └── ChildSagaFailed (Exception)     a child saga ended COMPENSATED, FAILED or ABORTED
    StepTimeout (TimeoutError)          a step attempt ran past its timeout
    ├── CommandTimeout                  no reply before the command step's deadline
    └── DeadlinePassed                  the saga's deadline passed during the attempt
    EventTimeout (TimeoutError)         ctx.wait_for: the event did not come in time
"""

from __future__ import annotations

from nativekit.errors import BackendUnavailable, NativekitError


class SagaInputError(NativekitError, ValueError):
    """The input given to ``sagas.start`` does not validate against the saga's input type."""


class SagaNotFound(NativekitError, KeyError):
    """No saga instance has the given id (it never existed or its retention expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "saga not found"


class SagaStateError(NativekitError):
    """An operator action does not fit the saga's status (e.g. retrying a COMPLETED saga)."""


class LeaseLost(NativekitError):
    """A write was refused: its lease token is stale because another runner claimed the saga."""


class SagaStoreUnavailable(BackendUnavailable):
    """A transition could not be written: the run stops, the saga stays as last stored
    and is resumed once its lease expires (not a failure of the step)."""


class UnknownSaga(NativekitError):
    """A reply names a saga this service does not have, or whose definition it lacks."""


class StepTimeout(TimeoutError):
    """A step attempt took longer than its policy's ``timeout``."""


class CommandTimeout(StepTimeout):
    """No reply to a command arrived before the step's ``reply_timeout``."""


class CommandFailed(Exception):
    """The participant answered with a failure reply; the step fails without retries."""

    final = True  # the runner does not retry a business refusal


class EventTimeout(TimeoutError):
    """``ctx.wait_for``: the event was not delivered before its timeout (not retried).

    Unlike a :class:`StepTimeout`, nothing is left uncertain: the step fails plainly.
    """

    final = True


class DeadlinePassed(StepTimeout):
    """The saga's deadline passed while a step attempt ran; the saga compensates."""

    final = True


class ChildSagaFailed(Exception):
    """A child saga did not complete (it ended COMPENSATED, FAILED or ABORTED); the
    parent's step fails without retries."""

    final = True
