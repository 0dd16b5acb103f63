"""Exceptions of the messaging component.

The hierarchy (under :class:`nativekit.NativekitError`)::

    MessagingError
    ├── PublishError            the broker did not acknowledge a message
    ├── CommitFailed            an offset commit was rejected (rebalance, fenced member)
    └── DecodeError (ValueError) a payload is not valid JSON / does not fit the model

``BackendUnavailable`` (from :mod:`nativekit.errors`) is raised when the broker
or the dedup store cannot be reached.
"""

from __future__ import annotations

from nativekit.errors import NativekitError


class MessagingError(NativekitError):
    """Root of messaging errors."""


class PublishError(MessagingError):
    """The broker rejected or did not acknowledge a published message."""


class CommitFailed(MessagingError):
    """An offset commit was rejected; the messages will be redelivered and deduplicated."""


class DecodeError(MessagingError, ValueError):
    """A message payload could not be decoded into the handler's model."""
