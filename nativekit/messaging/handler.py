"""Reading a consumer handler's signature: the event model and the metadata parameter."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from nativekit.errors import ConfigError
from nativekit.messaging.envelope import Message
from nativekit.messaging.errors import DecodeError

HandlerFunc = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class HandlerSpec:
    """How to call a handler: which parameter gets the event, which the metadata."""

    func: HandlerFunc
    name: str
    model: type[BaseModel] | None  # None: the handler takes raw bytes
    event_param: str
    msg_param: str | None

    def decode(self, value: bytes | None) -> Any:
        """The event for ``value``; raises DecodeError for invalid payloads."""
        if self.model is None:
            return value if value is not None else b""
        if value is None:
            raise DecodeError("message has no value (a tombstone)")
        try:
            return self.model.model_validate_json(value)
        except ValidationError as exc:
            raise DecodeError(
                f"payload does not fit {self.model.__name__}: "
                f"{exc.error_count()} error(s): {_first_error(exc)}"
            ) from exc

    def call(self, event: Any, msg: Message | None) -> Awaitable[Any]:
        """The handler's coroutine, to await."""
        if self.msg_param is None:
            return self.func(event)
        return self.func(**{self.event_param: event, self.msg_param: msg})


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(p) for p in error["loc"]) or "(root)"
    return f"{location}: {error['msg']}"


def inspect_handler(func: HandlerFunc) -> HandlerSpec:
    """The spec of ``async def handler(event: Model[, msg: Message])``.

    Raises:
        ConfigError: the function is not async or its parameters are not annotated
            with a pydantic model (or ``bytes``) and optionally ``Message``.
    """
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"Consumer handler {name} must be 'async def'.")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise ConfigError(f"Cannot resolve the annotations of consumer {name}: {exc}") from exc
    model: type[BaseModel] | None = None
    event_param = msg_param = None
    for param in inspect.signature(func).parameters.values():
        annotation = hints.get(param.name)
        if annotation is Message:
            msg_param = param.name
        elif event_param is None and annotation is bytes:
            event_param = param.name
        elif (
            event_param is None
            and isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
        ):
            event_param, model = param.name, annotation
        else:
            raise ConfigError(
                f"Consumer {name}: parameter {param.name!r} must be annotated with a pydantic "
                f"model or bytes (the event) or Message (the metadata), got {annotation!r}."
            )
    if event_param is None:
        raise ConfigError(
            f"Consumer {name} needs an event parameter annotated with a pydantic model, "
            "e.g. 'async def on_paid(event: PaymentReceived) -> None'."
        )
    return HandlerSpec(func, name, model, event_param, msg_param)
