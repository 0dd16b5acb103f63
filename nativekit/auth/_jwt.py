"""JWTs from an identity provider, verified against its published keys (PyJWT).

A verified token is remembered (by its exact text, signature included) for at
most ``cache_seconds`` and never past its ``exp``: a client sends the same
token with every request until it expires, and checking its RS256 signature
again each time would cost several times the rest of the request. Only
successes are remembered; a token that fails is checked in full every time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt

from nativekit.auth._jwks import KeySet
from nativekit.auth._principal import ALL_SCOPES, InvalidToken, Principal

_EXTRA_SCOPE_CLAIMS = ("scope", "scp", "permissions")


class JWTAuthenticator:
    """Verifies signature, expiry, issuer and audience of a JWT; yields its principal.

    Args:
        keys: the issuer's key set.
        algorithms: accepted signature algorithms (asymmetric only).
        audience: accepted ``aud`` values; the token must name one of them.
        issuer: the required ``iss``, or None to accept any issuer.
        leeway: seconds of clock skew allowed on ``exp`` and ``nbf``.
        scope_claim: the claim holding the granted scopes.
        cache_seconds: how long a verified token is remembered (0: verify every time);
            a key withdrawn from the key set stops working after at most this long.
        cache_size: tokens remembered at most (the oldest are forgotten first).
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        algorithms: Sequence[str],
        audience: Sequence[str],
        issuer: str | None = None,
        leeway: float = 30.0,
        scope_claim: str = "scope",
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        #: wall-clock seconds (tests pass a fake one)
        self.clock = time.time
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        #: token -> (principal, time until which it is taken without checking again)
        self._verified: dict[str, tuple[Principal, float]] = {}
        self.algorithms = tuple(algorithms)
        self.audience = list(audience)
        self.issuer = issuer
        self.leeway = leeway
        self.scope_claim = scope_claim
        required = ["exp"]
        if audience:
            required.append("aud")
        if issuer:
            required.append("iss")
        self._options: dict[str, Any] = {"require": required, "verify_aud": bool(audience)}
        # A PyJWK parses its key once; built per (key id, algorithm) on first use.
        self._prepared: dict[tuple[str, str], tuple[dict[str, Any], jwt.PyJWK]] = {}

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid token; raises :class:`InvalidToken` saying what is wrong."""
        cached = self._verified.get(token)
        if cached is not None:
            if self.clock() < cached[1]:
                return cached[0]
            del self._verified[token]
        principal = await self._verify(token)
        if self.cache_seconds > 0:
            self._remember(token, principal)
        return principal

    def _remember(self, token: str, principal: Principal) -> None:
        expires = principal.claims.get("exp")
        until = self.clock() + self.cache_seconds
        if isinstance(expires, int | float):
            until = min(until, expires + self.leeway)
        if len(self._verified) >= self.cache_size:
            # dicts keep insertion order: the first entries are the oldest
            for stale in list(self._verified)[: max(1, self.cache_size // 10)]:
                del self._verified[stale]
        self._verified[token] = (principal, until)

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken(f"the token's algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id is not a string")
        key = self._key(await self.keys.jwk(kid), kid, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience or None,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is not meant for this service (audience)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token was not issued by the expected issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature is not valid") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token is not valid") from None
        return self._principal(claims)

    def _key(self, jwk: dict[str, Any], kid: str | None, alg: str) -> jwt.PyJWK:
        cache_key = (kid or "", alg)
        cached = self._prepared.get(cache_key)
        if cached is not None and cached[0] is jwk:
            return cached[1]
        declared = jwk.get("alg")
        if declared is not None and declared != alg:
            raise InvalidToken(f"the token's algorithm {alg!r} is not its key's ({declared!r})")
        try:
            prepared = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise InvalidToken(f"the token's algorithm {alg!r} does not fit its key") from None
        self._prepared[cache_key] = (jwk, prepared)
        return prepared

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub") or claims.get("client_id") or claims.get("azp")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token names no subject ('sub')")
        return Principal(subject, self._scopes(claims), method="jwt", claims=claims)

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        names = (self.scope_claim, *(c for c in _EXTRA_SCOPE_CLAIMS if c != self.scope_claim))
        for name in names:
            value = claims.get(name)
            # '*' means every scope only for the static token, never when a JWT says so
            if isinstance(value, str):
                return frozenset(value.split()) - {ALL_SCOPES}
            if isinstance(value, list):
                return frozenset(v for v in value if isinstance(v, str)) - {ALL_SCOPES}
        return frozenset()
