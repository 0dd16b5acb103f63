"""What a command handler is: its command and reply models, and the refusal it may raise."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from nativekit._transaction import Transaction
from nativekit.errors import ConfigError, NativekitError

CommandFunc = Callable[..., Awaitable[Any]]


class CommandRejected(NativekitError):
    """Raised by a command handler for a business refusal: the saga gets a failure reply.

    The failure is final (not retried) and stored like a success, so a duplicate of
    the command gets the same refusal again.
    """


class UndeliverableCommand(NativekitError):
    """A command no handler of its topic accepts (unknown type or invalid payload)."""


@dataclass(frozen=True)
class CommandHandler:
    """One registered ``async def handler(cmd: Command) -> Reply``."""

    func: CommandFunc
    command: type[BaseModel]
    reply: type[BaseModel] | None
    #: takes a second parameter annotated ``Transaction`` (the handler's transaction)
    transactional: bool = False


def inspect_command_handler(func: CommandFunc) -> CommandHandler:
    """Read the command model and reply model from the handler's annotations."""
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"Command handler {name} must be 'async def'.")
    hints = typing.get_type_hints(func)
    params = list(inspect.signature(func).parameters)
    transactional = len(params) == 2 and hints.get(params[1]) is Transaction
    command = hints.get(params[0]) if len(params) == 1 or transactional else None
    if not (isinstance(command, type) and issubclass(command, BaseModel)):
        raise ConfigError(
            f"Command handler {name} must take one parameter annotated with the command's "
            "pydantic model (and optionally a second annotated Transaction), e.g. "
            "'async def on_reserve(cmd: ReserveStock) -> Reply'."
        )
    reply = hints.get("return")
    if reply is type(None):
        reply = None
    if reply is not None and not (isinstance(reply, type) and issubclass(reply, BaseModel)):
        raise ConfigError(f"Command handler {name} must return a pydantic model (the reply).")
    return CommandHandler(func, command, reply, transactional)
