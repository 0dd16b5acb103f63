"""Bearer authentication: a static token or JWTs checked against a JWKS, scopes per route.

Configure it with ``NATIVEKIT_AUTH_*`` (see docs/auth.md); a handler receives the
verified caller by declaring a :class:`Principal` parameter, and a route asks for
scopes with ``@svc.post("/orders", scopes=["orders:write"])``. PyJWT and httpx
load only when JWTs are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nativekit.auth._guard import PRINCIPAL_KEY, Access, Authenticator, AuthGuard
from nativekit.auth._principal import InvalidToken, Principal
from nativekit.auth._static import StaticTokenAuthenticator

if TYPE_CHECKING:
    from nativekit.auth._jwks import KeySet
    from nativekit.auth._jwt import JWTAuthenticator

__all__ = [
    "Access",
    "Authenticator",
    "AuthGuard",
    "InvalidToken",
    "JWTAuthenticator",
    "KeySet",
    "Principal",
    "PRINCIPAL_KEY",
    "StaticTokenAuthenticator",
]


def __getattr__(name: str) -> Any:
    if name == "KeySet":
        from nativekit.auth._jwks import KeySet

        return KeySet
    if name == "JWTAuthenticator":
        from nativekit.auth._jwt import JWTAuthenticator

        return JWTAuthenticator
    raise AttributeError(f"module 'nativekit.auth' has no attribute {name!r}")
