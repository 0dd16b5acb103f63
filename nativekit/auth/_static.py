"""A static bearer token, compared in constant time."""

from __future__ import annotations

import hmac

from nativekit.auth._principal import ALL_SCOPES, InvalidToken, Principal


class StaticTokenAuthenticator:
    """Accepts one shared token (from ``NATIVEKIT_AUTH_TOKEN_FILE``); its holder has every scope.

    Args:
        token: the expected token.
        subject: the subject of the principal it yields (named in audit lines).
    """

    def __init__(self, token: str, *, subject: str = "static-token") -> None:
        if not token:
            raise ValueError("the static token is empty")
        self._token = token.encode()
        self._principal = Principal(subject, frozenset({ALL_SCOPES}), method="token")

    def matches(self, token: str) -> bool:
        """True when ``token`` is the static token (constant time)."""
        return hmac.compare_digest(token.encode(), self._token)

    async def authenticate(self, token: str) -> Principal:
        """The static principal; raises :class:`InvalidToken` for any other token."""
        if not self.matches(token):
            raise InvalidToken("the token is not valid")
        return self._principal
