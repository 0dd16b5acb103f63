"""Who is using the console, and proof that a form came from the console itself.

A browser sends the operator's bearer token in an HttpOnly, ``SameSite=Strict``
cookie set by the login form (or an ingress sends ``Authorization: Bearer``);
it is verified on every request, so an expired JWT stops working at once.
Forms carry a CSRF token that must equal the ``nk_csrf`` cookie (double submit:
another site can neither read the cookie nor, with ``SameSite=Strict``, make the
browser send it), and a request whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from nativekit.auth import Authenticator, InvalidToken, Principal
from nativekit.errors import BackendUnavailable

SESSION_COOKIE = "nk_console"
CSRF_COOKIE = "nk_csrf"
#: Seconds the session cookie lives (the token's own expiry still applies).
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Gate:
    """The console's access rules.

    Attributes:
        authenticator: verifies tokens; None only in insecure development mode.
        scope: the scope an operator's token must grant.
        secure_cookie: force the cookie's Secure flag (None: when served over HTTPS).
    """

    authenticator: Authenticator | None
    scope: str
    secure_cookie: bool | None = None

    async def principal(self, request: Request) -> Principal | None:
        """The verified operator, or None when the request carries no valid token.

        Raises:
            PermissionError: the token is valid but lacks the operator scope.
            BackendUnavailable: the identity provider's keys cannot be fetched.
        """
        if self.authenticator is None:
            return Principal("anonymous", method="none")
        token = _bearer(request) or request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            principal = await self.authenticator.authenticate(token)
        except InvalidToken:
            return None
        if principal.missing([self.scope]):
            raise PermissionError(f"the token lacks the scope {self.scope!r}")
        return principal

    async def check_token(self, token: str) -> str | None:
        """None when ``token`` may use the console, else why not (shown on the login page)."""
        if self.authenticator is None:
            return None
        try:
            principal = await self.authenticator.authenticate(token)
        except InvalidToken as exc:
            return f"The token was refused: {exc}."
        except BackendUnavailable:
            return "The token cannot be verified now (the identity provider is unreachable)."
        if principal.missing([self.scope]):
            return f"The token lacks the scope {self.scope!r} the console needs."
        return None

    def sign_in(self, response: Response, request: Request, token: str, path: str) -> None:
        """Keep ``token`` in the session cookie (for ``path`` only)."""
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_SECONDS,
            path=path,
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )

    def sign_out(self, response: Response, request: Request, path: str) -> None:
        """Forget the session cookie."""
        response.delete_cookie(
            SESSION_COOKIE,
            path=path,
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )

    def _secure(self, request: Request) -> bool:
        if self.secure_cookie is not None:
            return self.secure_cookie
        return request.url.scheme == "https"

    def csrf_token(self, request: Request) -> str:
        """The request's CSRF token (a new one when the browser has none yet)."""
        token = request.cookies.get(CSRF_COOKIE)
        if not token or len(token) != 43:
            token = request.state.new_csrf = secrets.token_urlsafe(32)
        return token

    def keep_csrf(self, response: Response, request: Request, path: str) -> None:
        """Set the CSRF cookie when this request made a new token."""
        token: str | None = getattr(request.state, "new_csrf", None)
        if token is not None:
            response.set_cookie(
                CSRF_COOKIE,
                token,
                path=path,
                secure=self._secure(request),
                httponly=True,
                samesite="strict",
            )

    def form_is_genuine(self, request: Request, form: Any) -> bool:
        """True when the form's CSRF token matches the cookie and no other site sent it."""
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != host:
            return False
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = form.get("csrf", "")
        return bool(cookie) and isinstance(sent, str) and hmac.compare_digest(cookie, sent)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
