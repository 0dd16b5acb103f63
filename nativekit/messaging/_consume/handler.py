"""Reading a consumer handler's signature: the event model and the metadata parameter."""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from nativekit._transaction import Transaction
from nativekit.errors import ConfigError
from nativekit.messaging._errors import DecodeError
from nativekit.messaging._wire.broker import Record
from nativekit.messaging._wire.envelope import Message, event_type_of

HandlerFunc = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class HandlerSpec:
    """How to call a handler: which parameter gets the event, which the metadata.

    ``models`` holds the event models by class name: one for ``event: Model``,
    several for ``event: A | B`` (a record's ``event-type`` header picks its model;
    without a known one, the union is validated as pydantic does); empty for bytes.
    """

    func: HandlerFunc
    name: str
    models: Mapping[str, type[BaseModel]]
    event_param: str
    msg_param: str | None
    #: the parameter annotated ``Transaction`` (the handler's database transaction), if any
    tx_param: str | None = None

    _validate: Callable[[bytes], Any] = field(init=False, repr=False, compare=False)
    _by_type: Mapping[str, type[BaseModel]] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen, so set through object.__setattr__; chosen once, not per message
        validate: Callable[[bytes], Any] = bytes  # bytes handlers: decode returns early
        if len(self.models) == 1:
            [model] = self.models.values()
            validate = model.model_validate_json
        elif self.models:
            union = functools.reduce(operator.or_, self.models.values())
            validate = TypeAdapter(union).validate_json
        object.__setattr__(self, "_validate", validate)
        object.__setattr__(self, "_by_type", self.models if len(self.models) > 1 else None)

    def decode(self, record: Record) -> Any:
        """The event of ``record``; raises DecodeError for invalid payloads."""
        value = record.value
        if not self.models:
            return value if value is not None else b""
        if value is None:
            raise DecodeError("message has no value (a tombstone)")
        validate = self._validate
        if self._by_type is not None:  # a union: the header names the model
            raw = event_type_of(record)
            named = self._by_type.get(raw.decode("utf-8", "replace")) if raw else None
            validate = named.model_validate_json if named is not None else validate
        try:
            return validate(value)
        except ValidationError as exc:
            raise DecodeError(
                f"payload does not fit {' | '.join(self.models)}: "
                f"{exc.error_count()} error(s): {_first_error(exc)}"
            ) from exc

    def call(
        self, event: Any, msg: Message | None, tx: Transaction | None = None
    ) -> Awaitable[Any]:
        """The handler's coroutine, to await."""
        if self.msg_param is None and self.tx_param is None:
            return self.func(event)
        kwargs = {self.event_param: event}
        if self.msg_param is not None:
            kwargs[self.msg_param] = msg
        if self.tx_param is not None:
            kwargs[self.tx_param] = tx
        return self.func(**kwargs)


def _models(annotation: Any) -> dict[str, type[BaseModel]] | None:
    """The models of ``Model`` or ``A | B | ...`` by class name; None for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation.__name__: annotation}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            return {m.__name__: m for m in members}
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(p) for p in error["loc"]) or "(root)"
    return f"{location}: {error['msg']}"


def inspect_handler(func: HandlerFunc) -> HandlerSpec:
    """The spec of ``async def handler(event: Model[, msg: Message][, tx: Transaction])``.

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
    models: dict[str, type[BaseModel]] = {}
    event_param = msg_param = tx_param = None
    for param in inspect.signature(func).parameters.values():
        annotation = hints.get(param.name)
        found = _models(annotation) if event_param is None else None
        if annotation is Message:
            msg_param = param.name
        elif annotation is Transaction:
            tx_param = param.name
        elif event_param is None and annotation is bytes:
            event_param = param.name
        elif found is not None:
            if len(found) < len(typing.get_args(annotation) or [annotation]):
                raise ConfigError(
                    f"Consumer {name}: the event types of {param.name!r} share a class name; "
                    "the event-type header could not tell them apart."
                )
            event_param, models = param.name, found
        else:
            raise ConfigError(
                f"Consumer {name}: parameter {param.name!r} must be annotated with a pydantic "
                f"model, a union of models or bytes (the event), Message (the metadata) or "
                f"Transaction (its database transaction), got {annotation!r}."
            )
    if event_param is None:
        raise ConfigError(
            f"Consumer {name} needs an event parameter annotated with a pydantic model, "
            "e.g. 'async def on_paid(event: PaymentReceived) -> None'."
        )
    return HandlerSpec(func, name, models, event_param, msg_param, tx_param)
