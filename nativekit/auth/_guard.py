"""The per-route check of a bearer token: 401/403 problem+json with ``WWW-Authenticate``.

A guard wraps the ASGI app of one route, so routes without one pay nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nativekit.auth._principal import InvalidToken, Principal
from nativekit.errors import BackendUnavailable, HTTPError

#: Where a guard leaves the verified principal in the ASGI scope.
PRINCIPAL_KEY = "nativekit.principal"


class Authenticator(Protocol):
    """Turns a bearer token into a :class:`Principal` or raises :class:`InvalidToken`."""

    async def authenticate(self, token: str) -> Principal:
        """The verified principal of ``token``."""


@dataclass(frozen=True)
class Access:
    """What a route asks of its caller.

    Attributes:
        scopes: scopes the token must grant (a non-empty list implies a token is required).
        required: True: a valid token is required; False: public even when the service
            protects its routes; None: as ``NATIVEKIT_AUTH_ROUTES`` says.
        optional_principal: the handler takes ``Principal | None``: a token, when sent,
            is verified.
        operator: an operator endpoint (always protected, its actions audited).
    """

    scopes: tuple[str, ...] = ()
    required: bool | None = None
    optional_principal: bool = False
    operator: bool = False


def _bearer(scope: Scope) -> str | None:
    """The bearer token of the request, or None; other schemes count as none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _challenge(realm: str, error: str | None = None, **params: str) -> dict[str, str]:
    parts = [f'realm="{realm}"']
    if error is not None:
        parts.append(f'error="{error}"')
    parts.extend(f'{k}="{v}"' for k, v in params.items())
    return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}


class AuthGuard:
    """Authenticates the caller of one route, checks its scopes, then calls the route.

    Args:
        app: the route's ASGI app.
        authenticator: verifies tokens.
        scopes: scopes the token must grant.
        required: whether a request without a token is refused.
        realm: the realm named in ``WWW-Authenticate`` (the service name).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        scopes: Sequence[str] = (),
        required: bool = True,
        realm: str = "nativekit",
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.scopes = tuple(scopes)
        self.required = required
        self.realm = realm.replace('"', "'")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            scope[PRINCIPAL_KEY] = await self.principal(scope)
        except HTTPError as exc:
            if scope["type"] == "http":
                raise
            await send({"type": "websocket.close", "code": 1008, "reason": exc.title})
            return
        await self.app(scope, receive, send)

    async def principal(self, scope: Scope) -> Principal | None:
        """The verified principal of the request (None when optional and absent).

        Raises:
            HTTPError: 401 without a valid token, 403 without the scopes, 503 when
                the signing keys cannot be fetched.
        """
        token = _bearer(scope)
        if token is None:
            if not self.required:
                return None
            raise HTTPError(
                401,
                "This endpoint needs a bearer token: send 'Authorization: Bearer <token>'.",
                title="Authentication required",
                headers=_challenge(self.realm),
            )
        try:
            principal = await self.authenticator.authenticate(token)
        except InvalidToken as exc:
            raise HTTPError(
                401,
                f"The bearer token was refused: {exc}.",
                title="Invalid token",
                headers=_challenge(self.realm, "invalid_token", error_description=str(exc)),
            ) from None
        except BackendUnavailable:
            raise HTTPError(
                503,
                "The token cannot be verified now: the identity provider's keys are "
                "unavailable. Try again shortly.",
                title="Authentication unavailable",
                headers={"Retry-After": "5"},
            ) from None
        missing = principal.missing(self.scopes)
        if missing:
            raise HTTPError(
                403,
                f"The token lacks the scope(s) {', '.join(missing)} this endpoint needs.",
                title="Insufficient scope",
                headers=_challenge(self.realm, "insufficient_scope", scope=" ".join(self.scopes)),
                extra={"missing_scopes": missing},
            )
        return principal


class AuditedGuard(AuthGuard):
    """An :class:`AuthGuard` that logs who did what: one line per operator action.

    Changes (any method but GET and HEAD) are logged with the principal, the
    path and the status; refused requests are logged whatever the method.
    """

    def __init__(self, app: ASGIApp, *, log: Any, **options: Any) -> None:
        super().__init__(app, **options)
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        try:
            principal = await self.principal(scope)
        except HTTPError as exc:
            self.log.warning(
                "operator.denied", method=method, path=scope["path"], status=exc.status
            )
            raise
        scope[PRINCIPAL_KEY] = principal
        if method in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def sender(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sender)
        except HTTPError as exc:  # rendered by the app's handlers, further out
            status = exc.status
            raise
        finally:
            self.log.info(
                "operator.action",
                principal=principal.subject if principal else "anonymous",
                auth=principal.method if principal else "none",
                method=method,
                path=scope["path"],
                status=status,
            )
