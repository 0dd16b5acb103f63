"""Cache keys: templates checked against the signature, escaping, argument digests.

A key template such as ``"product:{sku}"`` is parsed once, at decoration, into
a small builder; fields must name parameters of the function (optionally with
attribute access, ``"{user.id}"``). Values are escaped so that a ``:`` or
``{`` inside an argument can never produce another entry's key.
"""

from __future__ import annotations

import hashlib
import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from nativekit.errors import ConfigError

Binder = Callable[[tuple[Any, ...], Mapping[str, Any]], dict[str, Any]]
KeyBuilder = Callable[[Mapping[str, Any]], str]

# Characters that structure keys, escaped in argument values (percent-encoding).
_ESCAPES = {c: f"%{ord(c):02X}" for c in "%:{}|* \t\r\n\x00"}
_TABLE = str.maketrans(_ESCAPES)


def escape(value: Any) -> str:
    """A key part for ``value``: ``str()`` with structural characters percent-encoded."""
    if type(value) is int:
        return str(value)
    return str(value).translate(_TABLE)


def make_binder(func: Callable[..., Any]) -> tuple[Binder, list[str]]:
    """A fast ``(args, kwargs) -> {parameter: value}`` for ``func`` and its parameter names.

    Raises:
        ConfigError: ``func`` takes ``*args`` or ``**kwargs``, whose values
            cannot be named in a key.
    """
    sig = inspect.signature(func)
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(
                f"@cached cannot key {func.__qualname__}: parameter {p.name!r} is "
                f"{'*args' if p.kind is p.VAR_POSITIONAL else '**kwargs'}; name every argument."
            )
        names.append(p.name)
        if p.default is not p.empty:
            defaults[p.name] = p.default
    count = len(names)
    qualname = func.__qualname__

    def bind(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if not kwargs and len(args) == count:
            return dict(zip(names, args, strict=True))
        if len(args) > count:
            raise TypeError(f"{qualname}() takes {count} arguments but {len(args)} were given")
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in defaults and name not in names:
                raise TypeError(f"{qualname}() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{qualname}() got multiple values for argument {name!r}")
            values[name] = value
        if len(values) != count:
            for name in names:
                if name not in values:
                    if name not in defaults:
                        raise TypeError(f"{qualname}() missing required argument {name!r}")
                    values[name] = defaults[name]
        return values

    return bind, names


def compile_template(template: str, names: list[str], *, where: str) -> KeyBuilder:
    """A builder rendering ``template`` from bound arguments, validated now.

    Raises:
        ConfigError: the template names an unknown parameter, uses a positional
            field (``{}``/``{0}``), a conversion or a format spec.
    """
    literal_parts: list[str] = []
    fields: list[tuple[str, tuple[str, ...]]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: template {template!r} is malformed: {exc}.") from None
    current = ""
    for literal, field, spec, conversion in parsed:
        current += literal
        if field is None:
            continue
        literal_parts.append(current)
        current = ""
        head, *attrs = field.split(".")
        if not head or head.isdigit() or "[" in field:
            raise ConfigError(
                f"{where}: template {template!r} has field {{{field}}}; use parameter names "
                f"such as {{{names[0] if names else 'arg'}}}."
            )
        if head not in names:
            raise ConfigError(
                f"{where}: template {template!r} uses {{{head}}}, which is not a parameter "
                f"(parameters: {', '.join(names) or 'none'})."
            )
        if spec or conversion:
            raise ConfigError(
                f"{where}: template {template!r} field {{{field}}} may not have a conversion "
                "or format spec."
            )
        fields.append((head, tuple(attrs)))
    literal_parts.append(current)
    if not fields:
        constant = "".join(literal_parts)
        return lambda _values: constant
    pieces = literal_parts

    def build(values: Mapping[str, Any]) -> str:
        out = [pieces[0]]
        for i, (head, attrs) in enumerate(fields):
            value = values[head]
            for attr in attrs:
                value = getattr(value, attr)
            out.append(escape(value))
            out.append(pieces[i + 1])
        return "".join(out)

    if len(fields) == 1 and not fields[0][1]:
        head = fields[0][0]
        before, after = pieces
        return lambda values: before + escape(values[head]) + after
    return build


def digest_builder(names: list[str], ignore: frozenset[str]) -> KeyBuilder:
    """A builder giving a stable digest of the arguments (JSON, blake2b), minus ``ignore``."""
    kept = [n for n in names if n not in ignore]

    def build(values: Mapping[str, Any]) -> str:
        try:
            data = to_json([values[n] for n in kept])
        except PydanticSerializationError as exc:
            raise ConfigError(
                f"cannot build a cache key from the arguments ({exc}); give @cached a key "
                "template, or list the parameter in ignore=(...) if it is an injected dependency."
            ) from None
        return hashlib.blake2b(data, digest_size=12).hexdigest()

    return build


def schema_digest(adapter: Any, annotation: Any) -> str:
    """8 hex characters identifying the JSON schema of the cached type."""
    try:
        schema = to_json(adapter.json_schema(), by_alias=True)
    except Exception:  # types without a JSON schema still get a stable name
        schema = repr(annotation).encode()
    return hashlib.blake2b(schema, digest_size=4).hexdigest()
