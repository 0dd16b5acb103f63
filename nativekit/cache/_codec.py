"""Entry encoding: JSON through the return type's pydantic TypeAdapter, never pickle.

An entry is ``kind expires_ms,delta_ms | payload``: ``kind`` is ``v`` (a
value, ``payload`` its JSON) or ``n`` (``None``); ``expires_ms`` is the wall
clock expiry and ``delta_ms`` how long the value took to compute, both used by
the near cache and by early refresh. The header costs one ``index`` to skip.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from nativekit.errors import ConfigError, NativekitError


class DecodeError(NativekitError):
    """A stored entry could not be read as the cached type."""


class Codec:
    """Encodes and decodes entries of one return type."""

    __slots__ = ("adapter",)

    def __init__(self, adapter: TypeAdapter[Any]) -> None:
        self.adapter = adapter

    def encode(self, value: Any, *, ttl: float, delta: float) -> bytes:
        """The entry bytes for ``value`` living ``ttl`` seconds, computed in ``delta``."""
        header = f"{int((time.time() + ttl) * 1000)},{int(delta * 1000)}|".encode()
        if value is None:
            return b"n" + header
        return b"v" + header + self.adapter.dump_json(value, warnings="error")

    def decode(self, raw: bytes) -> Any:
        """The value held by entry ``raw``.

        Raises:
            DecodeError: the bytes are not an entry of this type.
        """
        try:
            start = raw.index(b"|") + 1
            kind = raw[0]
            if kind == 118:  # b"v"
                return self.adapter.validate_json(raw[start:])
            if kind == 110:  # b"n"
                return None
        except Exception as exc:
            raise DecodeError(f"cache entry is not a valid {self.adapter}: {exc}") from exc
        raise DecodeError("cache entry has an unknown kind")


def entry_times(raw: bytes) -> tuple[float, float]:
    """``(expires_at, delta)`` of an entry, in wall-clock seconds and seconds."""
    head = raw[1 : raw.index(b"|")]
    expires, _, delta = head.partition(b",")
    return int(expires) / 1000, int(delta) / 1000


def return_adapter(func: Callable[..., Any], where: str) -> tuple[TypeAdapter[Any], Any]:
    """The TypeAdapter of ``func``'s return annotation, and the annotation.

    Raises:
        ConfigError: no return annotation, an unresolvable one, or one pydantic
            cannot serialize.
    """
    annotation = inspect.get_annotations(func).get("return", inspect.Parameter.empty)
    if annotation is inspect.Parameter.empty:
        raise ConfigError(
            f"{where}: annotate the return type (e.g. '-> Product'); cached values are "
            "decoded through it (use '-> Any' for plain JSON)."
        )
    if isinstance(annotation, str):  # from __future__ import annotations
        try:
            annotation = eval(annotation, func.__globals__)
        except Exception as exc:
            raise ConfigError(
                f"{where}: cannot resolve the return annotation {annotation!r}: {exc}; "
                "define the type at module level."
            ) from None
    try:
        return TypeAdapter(annotation), annotation
    except Exception as exc:
        raise ConfigError(
            f"{where}: return type {annotation!r} cannot be serialized as JSON: {exc}."
        ) from None
