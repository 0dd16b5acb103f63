"""The verified caller of a request, and the error a bad token raises."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nativekit.errors import NativekitError

#: The scope that stands for every scope (held by the static token).
ALL_SCOPES = "*"


class InvalidToken(NativekitError):
    """A bearer token that is not accepted; the message says why (safe to show the caller)."""


@dataclass(frozen=True)
class Principal:
    """Who made a request, as verified from its bearer token.

    Declare a handler parameter of this type to receive it: the route then
    requires a valid token (``Principal | None`` makes the token optional).

    Attributes:
        subject: the token's ``sub`` claim, or the static token's configured subject.
        scopes: the scopes granted to the token.
        method: how it was verified: ``"token"`` (the static token) or ``"jwt"``.
        claims: every claim of a JWT (empty for the static token).
    """

    subject: str
    scopes: frozenset[str] = frozenset()
    method: str = "jwt"
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def has_scopes(self, needed: Iterable[str]) -> bool:
        """True when every scope of ``needed`` was granted (``*`` grants all)."""
        return ALL_SCOPES in self.scopes or self.scopes.issuperset(needed)

    def missing(self, needed: Iterable[str]) -> list[str]:
        """The scopes of ``needed`` that were not granted, in order."""
        if ALL_SCOPES in self.scopes:
            return []
        return [s for s in needed if s not in self.scopes]
